//! tokio-postgres's TLS over rustls, for `sslmode=require`: the server's
//! certificate checked against the CA and its name against the host (what
//! libpq calls `verify-full`).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use tokio_postgres::Socket;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::wrapped::Wrapped;

/// Makes verified TLS connections to PostgreSQL.
#[derive(Clone)]
pub struct PostgresTls {
    config: Arc<ClientConfig>,
}

impl PostgresTls {
    /// Trusting `ca_file` (PEM), else the system's roots.
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<PostgresTls> {
        let config = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(super::roots(ca_file)?)
            .with_no_client_auth();
        Ok(PostgresTls { config: Arc::new(config) })
    }
}

impl MakeTlsConnect<Socket> for PostgresTls {
    type Stream = PostgresTlsStream;
    type TlsConnect = PostgresTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<PostgresTlsConnect> {
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("`{host}` is not a server name")))?;
        Ok(PostgresTlsConnect { connector: TlsConnector::from(Arc::clone(&self.config)), server_name })
    }
}

pub struct PostgresTlsConnect {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl TlsConnect<Socket> for PostgresTlsConnect {
    type Stream = PostgresTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PostgresTlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move { Ok(Wrapped(self.connector.connect(self.server_name, socket).await?)) })
    }
}

/// A TLS connection to PostgreSQL.
pub type PostgresTlsStream = Wrapped<TlsStream<Socket>>;

impl tokio_postgres::tls::TlsStream for PostgresTlsStream {
    /// No channel binding: SCRAM is used without `-PLUS`, the certificate
    /// check above is what binds the connection to the server.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
