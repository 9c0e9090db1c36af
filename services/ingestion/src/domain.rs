//! The pure rules of ingestion: what a `CreateContactRequest` must look like
//! and how its contact is normalised before anything is stored or published.
//! No IO here; every rule names the request field it is about.

use switchboard_core::error::FieldViolation;
use switchboard_core::{Error, QueueId, TenantId, names};
use switchboard_proto::common::v1::{Channel, CustomerIdentity, Direction, IdentityKind};
use switchboard_proto::ingestion::v1::{Contact, CreateContactRequest};

/// Longest `contact.from.value`, in bytes, before normalisation.
pub const MAX_IDENTITY_VALUE_BYTES: usize = 256;
/// Longest `contact.subject`, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// Longest `contact.body`, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most entries in `contact.attributes`.
pub const MAX_ATTRIBUTES: usize = 50;
/// Longest attribute key, in bytes.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 64;
/// Longest attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Highest `contact.priority`; the lowest is 0.
pub const MAX_PRIORITY: i32 = 100;
/// Longest `contact.provider_message_id`, in bytes.
pub const MAX_PROVIDER_MESSAGE_ID_BYTES: usize = 256;
/// Longest `request_id`, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// Longest abandon `reason`, in bytes.
pub const MAX_ABANDON_REASON_BYTES: usize = 1024;

/// A create request that passed validation, with its contact normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedContact {
    /// The tenant of `parent`, which is also the tenant of the queue.
    pub tenant: TenantId,
    pub queue: QueueId,
    pub request_id: String,
    /// The contact to store: identity normalised, direction defaulted to
    /// inbound, and every output-only field (name, customer, create_time,
    /// abandon_time) cleared whatever the client sent.
    pub contact: Contact,
}

/// Collects every field violation of a request, so a client fixes all of
/// them in one round trip instead of one per call.
#[derive(Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation { field: field.to_owned(), description: description.into() });
    }

    /// Keeps the value of `outcome`, or records its violations.
    fn take<T>(&mut self, outcome: Result<T, Error>) -> Option<T> {
        match outcome {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.extend(error.field_violations);
                None
            }
        }
    }

    fn check_max_bytes(&mut self, field: &str, value: &str, max_bytes: usize) {
        if value.len() > max_bytes {
            self.add(field, format!("must be at most {max_bytes} bytes, got {}", value.len()));
        }
    }

    fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(self.into_error())
    }

    fn into_error(self) -> Error {
        Error::invalid_fields(self.0)
    }
}

/// Validates and normalises a create request. Fails with INVALID_ARGUMENT
/// listing every bad field (`parent`, `contact`, `contact.channel`,
/// `contact.direction`, `contact.from`, `contact.from.kind`,
/// `contact.from.value`, `contact.queue`, `contact.subject`, `contact.body`,
/// `contact.attributes`, `contact.priority`, `contact.provider_message_id`,
/// `request_id`). Deterministic: the same request always gives the same
/// answer.
pub fn validate_create_contact(request: &CreateContactRequest) -> Result<ValidatedContact, Error> {
    let mut violations = Violations::default();
    let tenant = violations.take(names::parse_tenant(&request.parent, "parent"));
    check_request_id(&mut violations, &request.request_id);
    let Some(contact) = &request.contact else {
        violations.add("contact", "is required");
        return Err(violations.into_error());
    };

    check_channel(&mut violations, contact.channel);
    let direction = normalise_direction(&mut violations, contact.direction);
    let from = normalise_identity(&mut violations, contact.from.as_ref());
    let queue = violations.take(names::parse_queue(&contact.queue, "contact.queue"));
    if let (Some(tenant), Some((queue_tenant, _))) = (&tenant, &queue)
        && tenant != queue_tenant
    {
        violations.add("contact.queue", format!("must be a queue of the parent tenant `{tenant}`"));
    }
    violations.check_max_bytes("contact.subject", &contact.subject, MAX_SUBJECT_BYTES);
    violations.check_max_bytes("contact.body", &contact.body, MAX_BODY_BYTES);
    check_attributes(&mut violations, contact);
    if !(0..=MAX_PRIORITY).contains(&contact.priority) {
        violations.add("contact.priority", format!("must be between 0 and {MAX_PRIORITY}"));
    }
    violations.check_max_bytes(
        "contact.provider_message_id",
        &contact.provider_message_id,
        MAX_PROVIDER_MESSAGE_ID_BYTES,
    );

    violations.into_result()?;
    let (Some(tenant), Some((_, queue)), Some(direction), Some(from)) = (tenant, queue, direction, from) else {
        // Every `None` above recorded a violation, so this is unreachable;
        // still, answer like a validation failure rather than panic.
        return Err(Error::invalid_field("contact", "is not a valid contact"));
    };
    let normalised = Contact {
        name: String::new(),
        channel: contact.channel,
        direction: direction as i32,
        from: Some(from),
        queue: contact.queue.clone(),
        customer: String::new(),
        subject: contact.subject.clone(),
        body: contact.body.clone(),
        attributes: contact.attributes.clone(),
        priority: contact.priority,
        provider_message_id: contact.provider_message_id.clone(),
        create_time: None,
        abandon_time: None,
    };
    Ok(ValidatedContact { tenant, queue, request_id: request.request_id.clone(), contact: normalised })
}

/// Checks the free-text reason of an abandon request (`reason`).
pub fn validate_abandon_reason(reason: &str) -> Result<(), Error> {
    let mut violations = Violations::default();
    violations.check_max_bytes("reason", reason, MAX_ABANDON_REASON_BYTES);
    violations.into_result()
}

fn check_request_id(violations: &mut Violations, request_id: &str) {
    if request_id.is_empty() {
        violations.add("request_id", "is required");
        return;
    }
    if request_id.len() > MAX_REQUEST_ID_BYTES {
        violations.add("request_id", format!("must be at most {MAX_REQUEST_ID_BYTES} bytes"));
        return;
    }
    // Request ids end up in logs and unique indexes: keep them to what a
    // terminal prints as-is.
    if !request_id.bytes().all(|byte| (b' '..=b'~').contains(&byte)) {
        violations.add("request_id", "must be printable ASCII");
    }
}

fn check_channel(violations: &mut Violations, channel: i32) {
    match Channel::try_from(channel) {
        Ok(Channel::Unspecified) => violations.add("contact.channel", "is required"),
        Ok(_) => {}
        Err(_) => violations.add("contact.channel", format!("{channel} is not a channel")),
    }
}

/// Unspecified means inbound: the customer reaching out is the common case.
fn normalise_direction(violations: &mut Violations, direction: i32) -> Option<Direction> {
    match Direction::try_from(direction) {
        Ok(Direction::Unspecified) => Some(Direction::Inbound),
        Ok(direction) => Some(direction),
        Err(_) => {
            violations.add("contact.direction", format!("{direction} is not a direction"));
            None
        }
    }
}

fn normalise_identity(violations: &mut Violations, from: Option<&CustomerIdentity>) -> Option<CustomerIdentity> {
    let Some(from) = from else {
        violations.add("contact.from", "is required");
        return None;
    };
    let kind = match IdentityKind::try_from(from.kind) {
        Ok(IdentityKind::Unspecified) => {
            violations.add("contact.from.kind", "is required");
            None
        }
        Ok(kind) => Some(kind),
        Err(_) => {
            violations.add("contact.from.kind", format!("{} is not an identity kind", from.kind));
            None
        }
    };
    if from.value.len() > MAX_IDENTITY_VALUE_BYTES {
        violations.add("contact.from.value", format!("must be at most {MAX_IDENTITY_VALUE_BYTES} bytes"));
        return None;
    }
    let trimmed = from.value.trim();
    if trimmed.is_empty() {
        violations.add("contact.from.value", "is required");
        return None;
    }
    let kind = kind?;
    match normalise_identity_value(kind, trimmed) {
        // Lower-casing can lengthen some characters: bound the stored form too.
        Ok(value) if value.len() > MAX_IDENTITY_VALUE_BYTES => {
            violations.add("contact.from.value", format!("must be at most {MAX_IDENTITY_VALUE_BYTES} bytes"));
            None
        }
        Ok(value) => Some(CustomerIdentity { kind: kind as i32, value }),
        Err(problem) => {
            violations.add("contact.from.value", problem);
            None
        }
    }
}

/// The canonical form of an address, so the same customer reached twice is
/// recognised by CRM: `+` and digits for phones, lower case for e-mail,
/// trimmed otherwise.
pub fn normalise_identity_value(kind: IdentityKind, trimmed_value: &str) -> Result<String, &'static str> {
    match kind {
        IdentityKind::Phone => {
            let digits: String = trimmed_value.chars().filter(char::is_ascii_digit).collect();
            if digits.is_empty() {
                return Err("a phone number needs at least one digit");
            }
            Ok(format!("+{digits}"))
        }
        IdentityKind::Email => {
            let lowered = trimmed_value.to_lowercase();
            let well_formed = lowered
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
            if !well_formed {
                return Err("must be an e-mail address like `name@example.com`");
            }
            Ok(lowered)
        }
        IdentityKind::Unspecified | IdentityKind::ChatVisitor | IdentityKind::Messenger | IdentityKind::Social => {
            Ok(trimmed_value.to_owned())
        }
    }
}

fn check_attributes(violations: &mut Violations, contact: &Contact) {
    if contact.attributes.len() > MAX_ATTRIBUTES {
        violations.add("contact.attributes", format!("must have at most {MAX_ATTRIBUTES} entries"));
    }
    // One violation per rule, not per entry, and none depends on map order.
    if contact.attributes.keys().any(String::is_empty) {
        violations.add("contact.attributes", "keys must not be empty");
    }
    if contact.attributes.keys().any(|key| key.len() > MAX_ATTRIBUTE_KEY_BYTES) {
        violations.add("contact.attributes", format!("keys must be at most {MAX_ATTRIBUTE_KEY_BYTES} bytes"));
    }
    if contact.attributes.values().any(|value| value.len() > MAX_ATTRIBUTE_VALUE_BYTES) {
        violations.add("contact.attributes", format!("values must be at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes"));
    }
}

#[cfg(test)]
#[path = "domain_tests.rs"]
mod tests;
