//! The status of a request over the decoding limit. tonic rejects such a
//! request with OUT_OF_RANGE before any handler runs; the platform promises
//! RESOURCE_EXHAUSTED (`grpc.max_message_bytes`), the code gRPC itself uses
//! for a message over a size limit. This wrapper rewrites the one into the
//! other on the way out. The server bootstrap applies it to every route.

use std::task::{Context, Poll};

use tonic::codegen::{BoxFuture, Service, http};
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
            let out_of_range = response.headers().get("grpc-status").is_some_and(|status| status == OUT_OF_RANGE);
            if out_of_range {
                response.headers_mut().insert("grpc-status", http::HeaderValue::from_static(RESOURCE_EXHAUSTED));
            }
            Ok(response)
        })
    }
}

impl<S: NamedService> NamedService for OversizedAsResourceExhausted<S> {
    const NAME: &'static str = S::NAME;
}
