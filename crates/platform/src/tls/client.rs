//! Calls to `https://` services: tonic channels whose connections are made
//! by rustls with the process's current client settings (CA, and this
//! service's certificate under mutual TLS).

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

use super::Tls;

/// A channel to the `https://` `endpoint` that connects on first use (and
/// again after a failure) over TLS, checking the service's certificate
/// against `tls`'s CA and its name against the URL's host.
pub fn tls_channel(endpoint: Endpoint, tls: Arc<Tls>) -> Channel {
    let connector = tower::service_fn(move |uri: Uri| {
        let tls = Arc::clone(&tls);
        async move {
            let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
            let host = uri.host().ok_or_else(|| invalid("the URL has no host"))?.trim_matches(['[', ']']).to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let server_name = ServerName::try_from(host).map_err(|_| invalid("the URL's host is not a server name"))?;
            let stream = TlsConnector::from(tls.client_config()).connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    endpoint.connect_with_connector_lazy(connector)
}
