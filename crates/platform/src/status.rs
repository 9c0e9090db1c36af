//! The one table from [`ErrorCode`] to `tonic::Code`, and the rich error
//! details (ErrorInfo, BadRequest, ResourceInfo) every error carries.

use std::collections::HashMap;

use switchboard_core::error::FieldViolation;
use switchboard_core::{Error, ErrorCode};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Switchboard error.
pub use switchboard_proto::codec::ERROR_DOMAIN;

pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::Aborted => Code::Aborted,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Internal => Code::Internal,
    }
}

fn error_code(code: Code) -> ErrorCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidArgument,
        Code::NotFound => ErrorCode::NotFound,
        Code::AlreadyExists => ErrorCode::AlreadyExists,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::FailedPrecondition => ErrorCode::FailedPrecondition,
        Code::ResourceExhausted => ErrorCode::ResourceExhausted,
        Code::Aborted => ErrorCode::Aborted,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

/// How long a client should wait before retrying a transient error.
pub const RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The gRPC status of an error, with details a client can act on:
/// `ErrorInfo` naming the reason, `BadRequest` naming each bad field,
/// `ResourceInfo` naming the resource, and `RetryInfo` on the codes a
/// client should retry. `Error::detail` (a database's own text) is never
/// part of it.
pub fn to_status(error: &Error) -> Status {
    let mut metadata = HashMap::new();
    if let Some(resource) = &error.resource {
        metadata.insert("resource".to_owned(), resource.clone());
    }
    let mut details = ErrorDetails::with_error_info(error.reason(), ERROR_DOMAIN, metadata);
    if error.is_transient() {
        details.set_retry_info(Some(RETRY_DELAY));
    }
    for violation in &error.field_violations {
        details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
    }
    if let Some(resource) = &error.resource {
        let kind = resource.rsplit('/').nth(1).unwrap_or_default().to_owned();
        details.set_resource_info(kind, resource.clone(), "", error.message.clone());
    }
    Status::with_error_details(grpc_code(error.code), error.message.clone(), details)
}

/// An error from another service's status, keeping its field violations, so
/// a client of the calling service still learns which field was wrong.
///
/// A failure that no Switchboard service answered (no `ErrorInfo` of ours:
/// the connection broke, a stream was reset) is UNAVAILABLE whatever code
/// the transport gave it: the call may or may not have happened, and the
/// client must retry it (every such call is idempotent), not give up.
pub fn from_status(status: &Status) -> Error {
    let details = status.get_error_details();
    let answered_by_a_service = details.error_info().is_some_and(|info| info.domain == ERROR_DOMAIN);
    let code = match status.code() {
        Code::Internal | Code::Unknown if !answered_by_a_service => ErrorCode::Unavailable,
        code => error_code(code),
    };
    let mut error = Error::new(code, status.message().to_owned());
    if let Some(info) = details.error_info() {
        error.explicit_reason = known_reason(&info.reason);
    }
    if let Some(bad_request) = details.bad_request() {
        error.field_violations = bad_request
            .field_violations
            .iter()
            .map(|violation| FieldViolation {
                field: violation.field.clone(),
                description: violation.description.clone(),
            })
            .collect();
    }
    if let Some(resource) = details.resource_info() {
        error.resource = Some(resource.resource_name.clone());
    }
    error
}

/// The reasons other Switchboard services send, kept when a status is
/// relayed (reasons are `&'static str`: only known ones survive).
fn known_reason(reason: &str) -> Option<&'static str> {
    RELAYED_REASONS.iter().copied().find(|known| *known == reason)
}

/// Reasons a service may receive from another and pass on to its client.
pub const RELAYED_REASONS: &[&str] = &[
    "OFFER_EXPIRED",
    "NOT_OFFERED_TO_AGENT",
    "CONTACT_ALREADY_ANSWERED",
    "CONTACT_ENDED",
    "CONTACT_NOT_ANSWERED",
    "NOT_ASSIGNED_TO_AGENT",
    "CONTACT_NOT_QUEUED",
    "CONTACT_STATE_CONFLICT",
    "QUEUE_CLOSED",
    "CHANNEL_NOT_ACCEPTED",
    "REQUEST_ID_REUSED",
    "UNSTORABLE_VALUE",
    "DATABASE_UNAVAILABLE",
    "STATE_STORE_UNAVAILABLE",
    "EVENT_BUS_UNAVAILABLE",
    "ROUTING_STATE_REBUILDING",
    switchboard_core::error::MESSAGE_TOO_LARGE,
    switchboard_proto::codec::MALFORMED_MESSAGE,
];

/// `.into_status()` on results of handlers.
pub trait IntoStatus<T> {
    fn into_status(self) -> Result<T, Status>;
}

impl<T> IntoStatus<T> for Result<T, Error> {
    fn into_status(self) -> Result<T, Status> {
        self.map_err(|error| {
            if error.code == ErrorCode::Internal || error.code == ErrorCode::Unavailable {
                tracing::warn!(code = error.code.name(), reason = %error.reason(), error = %error, "request failed");
            }
            to_status(&error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_violations_survive_a_round_trip() {
        let error = Error::invalid_field("contact.queue", "is required");
        let status = to_status(&error);
        assert_eq!(status.code(), Code::InvalidArgument);
        let back = from_status(&status);
        assert_eq!(back.field_violations, error.field_violations);
        assert_eq!(back.code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn transient_errors_carry_retry_info_and_no_backend_text() {
        let error = Error::unavailable("the database is unavailable").with_detail("postgres: connection refused");
        let status = to_status(&error);
        assert!(status.get_details_retry_info().is_some());
        assert!(!status.message().contains("postgres"), "{}", status.message());
        let info = status.get_details_error_info().expect("error info");
        assert_ne!(info.reason, "UNAVAILABLE");
        assert!(to_status(&Error::invalid_field("f", "bad")).get_details_retry_info().is_none());
    }

    #[test]
    fn a_broken_call_is_retried_and_a_services_internal_error_is_not() {
        // What tonic gives when a stream is reset mid-call: the request may
        // have been carried out.
        let reset = Status::internal("h2 protocol error: stream reset");
        assert_eq!(from_status(&reset).code, ErrorCode::Unavailable);
        assert_eq!(from_status(&Status::unknown("transport error")).code, ErrorCode::Unavailable);
        let answered = to_status(&Error::internal("a stored record does not decode"));
        assert_eq!(from_status(&answered).code, ErrorCode::Internal, "a service's own answer is kept");
    }

    #[test]
    fn not_found_names_the_resource() {
        let status = to_status(&Error::not_found("tenants/acme/queues/nope"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(from_status(&status).resource.as_deref(), Some("tenants/acme/queues/nope"));
    }
}
