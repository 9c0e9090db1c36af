//! The one error type every Switchboard crate returns, with a stable code.
//! `switchboard_platform::status` maps codes to `tonic::Code` in one table.

use std::fmt;

/// The reason of a message over the size limit (RESOURCE_EXHAUSTED, and
/// not worth retrying: unlike a rate limit, it never passes).
pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";

/// Stable error codes; each maps to exactly one gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    FailedPrecondition,
    ResourceExhausted,
    Aborted,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The code's name, UPPER_SNAKE as gRPC spells it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorCode::Aborted => "ABORTED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// A field of a request that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, e.g. `contact.from.value`.
    pub field: String,
    pub description: String,
}

/// An error with a code, a message for humans and optional details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub field_violations: Vec<FieldViolation>,
    /// The resource the error is about (`tenants/acme/queues/sales`), if any.
    pub resource: Option<String>,
    /// The `ErrorInfo.reason` naming the cause (`OFFER_EXPIRED`); when
    /// unset, [`Error::reason`] derives one from the code and resource.
    pub explicit_reason: Option<&'static str>,
    /// What only operators may read (a database's own error text, a
    /// backend address): logged, never sent to clients.
    pub detail: Option<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            field_violations: Vec::new(),
            resource: None,
            explicit_reason: None,
            detail: None,
        }
    }

    /// INVALID_ARGUMENT naming every field in `field_violations`.
    pub fn invalid_fields(field_violations: Vec<FieldViolation>) -> Self {
        let message = field_violations
            .iter()
            .map(|violation| format!("invalid `{}`: {}", violation.field, violation.description))
            .collect::<Vec<_>>()
            .join("; ");
        Error { field_violations, ..Error::new(ErrorCode::InvalidArgument, message) }
    }

    /// A bad field: INVALID_ARGUMENT naming the field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let field = field.into();
        let description = description.into();
        Error::invalid_fields(vec![FieldViolation { field, description }])
    }

    pub fn missing_field(field: impl Into<String>) -> Self {
        Self::invalid_field(field, "is required")
    }

    pub fn not_found(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        let message = format!("`{resource}` not found");
        Error::new(ErrorCode::NotFound, message).with_resource(resource)
    }

    pub fn already_exists(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        let message = format!("`{resource}` already exists");
        Error::new(ErrorCode::AlreadyExists, message).with_resource(resource)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedPrecondition, message)
    }

    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceExhausted, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Adds a field violation to any error, e.g. a NOT_FOUND caused by a
    /// request field naming something that does not exist.
    pub fn with_field_violation(mut self, field: impl Into<String>, description: impl Into<String>) -> Self {
        self.field_violations.push(FieldViolation { field: field.into(), description: description.into() });
        self
    }

    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Adds text for operators only (logs), never for clients.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Names the cause in `ErrorInfo.reason` (UPPER_SNAKE, stable).
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.explicit_reason = Some(reason);
        self
    }

    /// The `ErrorInfo.reason` clients see: the explicit one, or one derived
    /// from the code and the resource (`QUEUE_NOT_FOUND` for a missing
    /// `tenants/acme/queues/x`), never just the status code again.
    pub fn reason(&self) -> String {
        if let Some(reason) = self.explicit_reason {
            return reason.to_owned();
        }
        let kind = self.resource.as_deref().and_then(resource_kind);
        match (self.code, kind) {
            (ErrorCode::NotFound, Some(kind)) => format!("{kind}_NOT_FOUND"),
            (ErrorCode::AlreadyExists, Some(kind)) => format!("{kind}_ALREADY_EXISTS"),
            _ => default_reason(self.code, !self.field_violations.is_empty()).to_owned(),
        }
    }

    /// True for errors worth retrying: a backend was unreachable or busy,
    /// or another writer got there first. Everything else is deterministic
    /// and fails the same way every time.
    pub fn is_transient(&self) -> bool {
        // A message over the size limit is refused the same way however
        // often it is sent.
        let too_large = self.explicit_reason == Some(MESSAGE_TOO_LARGE);
        matches!(self.code, ErrorCode::Unavailable | ErrorCode::Aborted | ErrorCode::ResourceExhausted) && !too_large
    }
}

/// `QUEUE` for `tenants/acme/queues/x`, `AGENT` for `agents/alice`: the
/// collection segment before the last, singular and upper case.
fn resource_kind(resource: &str) -> Option<String> {
    let collection = resource.rsplit('/').nth(1)?;
    let singular = collection.strip_suffix('s').unwrap_or(collection);
    if singular.is_empty() || !singular.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return None;
    }
    Some(singular.to_ascii_uppercase())
}

fn default_reason(code: ErrorCode, has_field_violations: bool) -> &'static str {
    match code {
        ErrorCode::InvalidArgument if has_field_violations => "INVALID_FIELD",
        ErrorCode::InvalidArgument => "INVALID_REQUEST",
        ErrorCode::NotFound => "RESOURCE_NOT_FOUND",
        ErrorCode::AlreadyExists => "RESOURCE_ALREADY_EXISTS",
        ErrorCode::PermissionDenied => "ACCESS_DENIED",
        ErrorCode::Unauthenticated => "INVALID_CREDENTIAL",
        ErrorCode::FailedPrecondition => "STATE_CONFLICT",
        ErrorCode::ResourceExhausted => "LIMIT_EXCEEDED",
        ErrorCode::Aborted => "CONCURRENT_CHANGE",
        ErrorCode::Unavailable => "BACKEND_UNAVAILABLE",
        ErrorCode::Internal => "INTERNAL_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_cause_not_the_code() {
        assert_eq!(Error::not_found("tenants/acme/queues/support").reason(), "QUEUE_NOT_FOUND");
        assert_eq!(Error::not_found("agents/alice").reason(), "AGENT_NOT_FOUND");
        assert_eq!(Error::already_exists("tenants/acme/queues/support").reason(), "QUEUE_ALREADY_EXISTS");
        assert_eq!(Error::invalid_field("parent", "bad").reason(), "INVALID_FIELD");
        assert_eq!(Error::failed_precondition("late").with_reason("OFFER_EXPIRED").reason(), "OFFER_EXPIRED");
        for code in [ErrorCode::Unavailable, ErrorCode::Internal, ErrorCode::PermissionDenied] {
            assert_ne!(Error::new(code, "x").reason(), code.name());
        }
    }

    #[test]
    fn only_backend_trouble_is_transient() {
        assert!(Error::unavailable("down").is_transient());
        assert!(!Error::invalid_field("f", "bad").is_transient());
        assert!(!Error::internal("bug").is_transient());
        assert!(!Error::failed_precondition("no").is_transient());
    }
}
