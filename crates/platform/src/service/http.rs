//! The HTTP server beside each service's gRPC server: `/metrics`
//! (Prometheus), `/healthz` (liveness), `/readyz` (readiness), and the
//! routes the service adds ([`super::Kit::http`]).

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use switchboard_core::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::metrics::metrics;
use crate::readiness::ReadyFlag;
use crate::tls::{Tls, TlsListener, accept_tls};

/// The service's routes plus the probes and metrics every service has.
pub(super) fn router(service_routes: Router, ready: ReadyFlag) -> Router {
    service_routes
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

async fn render_metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics().render())
}

/// Serves until `shutdown`, then lets in-flight requests finish. With
/// `tls` serving certificates, only HTTPS.
pub(super) async fn serve(
    service: &'static str,
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    tls: Option<Arc<Tls>>,
) -> Result<(), Error> {
    let local_addr = listener.local_addr().map_err(|error| Error::internal(format!("http listener: {error}")))?;
    let tls = tls.filter(|tls| tls.http_server_config().is_some());
    tracing::info!(service, %local_addr, tls = tls.is_some(), "http server listening");
    let served = match tls {
        Some(tls) => {
            let accepted = accept_tls(listener, move || tls.http_server_config(), shutdown.clone());
            let listener = TlsListener { accepted, local_addr };
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
        }
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await,
    };
    served.map_err(|error| Error::internal(format!("http server: {error}")))
}
