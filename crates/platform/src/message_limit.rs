//! The status of a request over the decoding limit. tonic rejects such a
//! request with OUT_OF_RANGE (or RESOURCE_EXHAUSTED) and no details before
//! any handler runs; the platform promises RESOURCE_EXHAUSTED
//! (`grpc.max_message_bytes`), the code gRPC itself uses for a message over
//! a size limit, with `ErrorInfo` reason `MESSAGE_TOO_LARGE` and no
//! `RetryInfo` (the same message is refused however often it is sent). This
//! wrapper rewrites such a rejection on the way out. The server bootstrap
//! applies it to every route.

use std::task::{Context, Poll};

use switchboard_core::error::MESSAGE_TOO_LARGE;
use switchboard_core::{Error, ErrorCode};
use tonic::codegen::{BoxFuture, Service, http};

use crate::status::to_status;
use tonic::server::NamedService;

/// `grpc-status` of OUT_OF_RANGE and RESOURCE_EXHAUSTED.
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Wraps gRPC services whose handlers never answer OUT_OF_RANGE
/// themselves (Switchboard's error-code table maps nothing to it), so
/// every OUT_OF_RANGE is tonic's oversized-message rejection.
#[derive(Debug, Clone)]
pub struct OversizedAsResourceExhausted<S> {
    inner: S,
}

impl<S> OversizedAsResourceExhausted<S> {
    pub fn new(inner: S) -> Self {
        OversizedAsResourceExhausted { inner }
    }
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for OversizedAsResourceExhausted<S>
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
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            // A rejection before the handler is a trailers-only response:
            // its status is in the headers.
            let headers = response.headers();
            let status = headers.get("grpc-status");
            let out_of_range = status.is_some_and(|status| status == OUT_OF_RANGE);
            // tonic's own rejection carries no details; a handler's does.
            let undetailed_exhaustion = status.is_some_and(|status| status == RESOURCE_EXHAUSTED)
                && !headers.contains_key("grpc-status-details-bin");
            if out_of_range || undetailed_exhaustion {
                let message = tonic::Status::from_header_map(headers).map(|status| status.message().to_owned());
                let message = message.unwrap_or_default();
                let error = Error::new(ErrorCode::ResourceExhausted, message).with_reason(MESSAGE_TOO_LARGE);
                // The status's own headers: code, message and details.
                let _ = to_status(&error).add_header(response.headers_mut());
            }
            Ok(response)
        })
    }
}

impl<S: NamedService> NamedService for OversizedAsResourceExhausted<S> {
    const NAME: &'static str = S::NAME;
}
