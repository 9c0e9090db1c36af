//! RED metrics of every gRPC call: a tower layer the server bootstrap puts
//! in front of every route. The status of a call that failed before or in
//! its handler is in the response headers (a trailers-only response); a
//! response without `grpc-status` there is a success whose status follows
//! in the trailers.

use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use crate::metrics::{labels, metrics, seconds};

#[derive(Debug, Clone)]
pub struct RecordMetrics<S> {
    service: &'static str,
    inner: S,
}

impl<S> RecordMetrics<S> {
    pub fn new(service: &'static str, inner: S) -> Self {
        RecordMetrics { service, inner }
    }
}

/// The gRPC status name of a numeric `grpc-status`.
fn code_name(status: &str) -> &'static str {
    let code = status.parse::<i32>().map(tonic::Code::from).unwrap_or(tonic::Code::Unknown);
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for RecordMetrics<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResponseBody>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let service = self.service;
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let code =
                response.headers().get("grpc-status").and_then(|status| status.to_str().ok()).map_or("OK", code_name);
            // Any path reaches this layer: only served methods get a label
            // of their own, so no caller can grow the series without bound.
            let method = if code == "UNIMPLEMENTED" { "unknown".to_owned() } else { method };
            metrics()
                .grpc_requests
                .get_or_create(&labels([("service", service), ("method", &method), ("code", code)]))
                .inc();
            metrics()
                .grpc_duration
                .get_or_create(&labels([("service", service), ("method", &method)]))
                .observe(seconds(started.elapsed()));
            Ok(response)
        })
    }
}

impl<S: NamedService> NamedService for RecordMetrics<S> {
    const NAME: &'static str = S::NAME;
}
