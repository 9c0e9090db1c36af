//! The one error type every Switchboard crate returns, with a stable code.
//! `switchboard_platform::status` maps codes to `tonic::Code` in one table.

use std::fmt;

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
    /// The `ErrorInfo.reason` sent to clients: UPPER_SNAKE, stable.
    pub fn reason(self) -> &'static str {
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.reason(), self.message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), field_violations: Vec::new(), resource: None }
    }

    /// A bad field: INVALID_ARGUMENT naming the field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let field = field.into();
        let description = description.into();
        Error {
            code: ErrorCode::InvalidArgument,
            message: format!("invalid `{field}`: {description}"),
            field_violations: vec![FieldViolation { field, description }],
            resource: None,
        }
    }

    pub fn missing_field(field: impl Into<String>) -> Self {
        Self::invalid_field(field, "is required")
    }

    pub fn not_found(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        Error {
            code: ErrorCode::NotFound,
            message: format!("`{resource}` not found"),
            field_violations: Vec::new(),
            resource: Some(resource),
        }
    }

    pub fn already_exists(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        Error {
            code: ErrorCode::AlreadyExists,
            message: format!("`{resource}` already exists"),
            field_violations: Vec::new(),
            resource: Some(resource),
        }
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

    /// True for errors worth retrying (a backend was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self.code, ErrorCode::Unavailable | ErrorCode::Aborted)
    }
}
