//! gRPC server bootstrap shared by every service: health, reflection, the
//! tower stack (timeout, concurrency limit, tracing with remote parents) and
//! graceful shutdown; plus clients for service-to-service calls.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};

use crate::config::GrpcConfig;
use crate::grpc_metrics::RecordMetrics;
use crate::message_limit::OversizedAsResourceExhausted;
use crate::status::IntoStatus;
use crate::telemetry::{current_traceparent, set_remote_parent};
use crate::tls::{Tls, Wrapped, accept_tls, tls_channel};

pub use tonic_health::server::HealthReporter;

/// How long a stopping server waits for in-flight calls and for callers to
/// close their connections before it closes them itself: inside
/// Kubernetes' default 30 s grace period.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// Everything a service needs to expose its API.
pub struct GrpcServer {
    pub service_name: &'static str,
    pub listener: TcpListener,
    pub routes: RoutesBuilder,
    /// The fully-qualified names of the APIs in `routes`: the only ones
    /// reflection lists on this port.
    pub grpc_service_names: Vec<&'static str>,
}

/// A health service and its reporter. Every service name starts
/// NOT_SERVING until readiness checks pass.
pub fn health()
-> (HealthReporter, tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>) {
    tonic_health::server::health_reporter()
}

/// Serves until `shutdown` fires, then stops accepting and drains in-flight
/// calls before returning. With `tls` serving certificates, only TLS.
pub async fn serve(
    server: GrpcServer,
    config: &GrpcConfig,
    health_service: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    shutdown: CancellationToken,
    tls: Option<Arc<Tls>>,
) -> anyhow::Result<()> {
    let mut routes = server.routes;
    routes
        .add_service(health_service)
        .add_service(reflection(&server.grpc_service_names, "grpc.reflection.v1.ServerReflection").build_v1()?)
        .add_service(
            reflection(&server.grpc_service_names, "grpc.reflection.v1alpha.ServerReflection").build_v1alpha()?,
        );
    let service_name = server.service_name;
    let local_addr = server.listener.local_addr()?;
    let tls = tls.filter(|tls| tls.grpc_server_config().is_some());
    tracing::info!(service = service_name, %local_addr, tls = tls.is_some(), "grpc server listening");
    let router = Server::builder()
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .concurrency_limit_per_connection(config.concurrency_limit)
        .max_concurrent_streams(Some(config.max_concurrent_streams))
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        // Outermost first: metrics see the status the client sees.
        .layer(tower::layer::layer_fn(move |inner| RecordMetrics::new(service_name, inner)))
        .layer(tower::layer::layer_fn(OversizedAsResourceExhausted::new))
        .trace_fn(move |request| {
            let span = tracing::info_span!("grpc", service = service_name, path = %request.uri().path());
            let traceparent = request.headers().get("traceparent").and_then(|value| value.to_str().ok());
            set_remote_parent(&span, traceparent);
            span
        })
        .add_routes(routes.routes());
    let stopping = shutdown.clone();
    let serving = async move {
        match tls {
            Some(tls) => {
                let accepted = accept_tls(server.listener, move || tls.grpc_server_config(), stopping.clone());
                let incoming = tokio_stream::wrappers::ReceiverStream::new(accepted)
                    .map(|(stream, _)| Ok::<_, std::io::Error>(Wrapped(stream)));
                router.serve_with_incoming_shutdown(incoming, stopping.cancelled()).await
            }
            None => router.serve_with_incoming_shutdown(incoming(server.listener), stopping.cancelled()).await,
        }
    };
    // A caller that never reads the server's goodbye (a stalled process)
    // must not hold the shutdown past the orchestrator's grace period.
    let drain_limit = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    tokio::select! {
        served = serving => served?,
        () = drain_limit => {
            tracing::warn!(service = service_name, "callers kept connections open past the drain limit, closing them");
        }
    }
    tracing::info!(service = service_name, "grpc server drained");
    Ok(())
}

/// The connections a server accepts, with `TCP_NODELAY`: small frames (an
/// offer, an ack) must not wait for the peer's delayed ACK, which added up
/// to ~40 ms to a push (docs/benchmarks.md). Set here because the server
/// builder's `tcp_nodelay` does not apply to a listener of our own.
fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The thin adapter of a unary RPC: the caller's principal and the request
/// body go to `handler` (one inherent method per RPC), its error becomes
/// the status with details.
pub async fn answer<Body, Answer, Handler>(
    request: Request<Body>,
    handler: impl FnOnce(switchboard_core::Principal, Body) -> Handler,
) -> Result<tonic::Response<Answer>, tonic::Status>
where
    Handler: std::future::Future<Output = Result<Answer, switchboard_core::Error>>,
{
    let principal = crate::auth::principal(&request)?;
    handler(principal, request.into_inner()).await.into_status().map(tonic::Response::new)
}

/// Reflection (v1 or v1alpha: older tools and Python's grpcio-reflection
/// speak only v1alpha) over every Switchboard file, listing only `served`
/// plus health and reflection themselves.
fn reflection(served: &[&'static str], itself: &'static str) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(switchboard_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name(itself);
    for name in served {
        builder = builder.with_service_name(*name);
    }
    builder
}

/// A channel to another service that connects on first use and reconnects
/// on failure: over TLS for an `https://` URL (which needs `tls`; never a
/// plaintext connection to it).
pub fn lazy_channel(url: &str, tls: Option<&Arc<Tls>>) -> anyhow::Result<Channel> {
    let endpoint =
        Endpoint::from_shared(url.to_owned())?.connect_timeout(Duration::from_secs(3)).timeout(Duration::from_secs(15));
    if url.starts_with("https://") {
        let Some(tls) = tls else {
            anyhow::bail!("{url} is https://, but this process has no [tls] settings to call it with");
        };
        return Ok(tls_channel(endpoint, Arc::clone(tls)));
    }
    Ok(endpoint.tcp_nodelay(true).connect_lazy())
}

/// Credentials and trace context of an incoming call, forwarded on the
/// calls a service makes on its behalf, so the callee authorizes the
/// original caller (never a more powerful service identity).
#[derive(Debug, Clone)]
pub struct CallContext {
    authorization: Option<AsciiMetadataValue>,
}

impl CallContext {
    pub fn from_metadata(metadata: &MetadataMap) -> CallContext {
        CallContext { authorization: metadata.get("authorization").cloned() }
    }

    pub fn with_authorization(authorization: AsciiMetadataValue) -> CallContext {
        CallContext { authorization: Some(authorization) }
    }

    /// Wraps `message` with the forwarded credential and the current span's
    /// `traceparent`.
    pub fn request<M>(&self, message: M) -> Request<M> {
        let mut request = Request::new(message);
        if let Some(authorization) = &self.authorization {
            request.metadata_mut().insert("authorization", authorization.clone());
        }
        if let Some(traceparent) = current_traceparent()
            && let Ok(value) = traceparent.parse()
        {
            request.metadata_mut().insert("traceparent", value);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_delayed_acks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let connection = accepted.next().await.unwrap().unwrap();
        assert!(connection.nodelay().unwrap(), "TCP_NODELAY on the server's side of the connection");
    }
}
