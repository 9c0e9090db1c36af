//! The pure rules of ingestion: what a `CreateContactRequest` must look like
//! and how its contact is normalised before anything is stored or published.
//! No IO here; every rule names the request field it is about.

use switchboard_core::error::FieldViolation;
use switchboard_core::identity::{identity_from_proto, identity_to_proto};
use switchboard_core::text::TextRule;
use switchboard_core::{Error, QueueId, TenantId, names};
use switchboard_proto::common::v1::{Channel, CustomerIdentity, Direction};
use switchboard_proto::ingestion::v1::{Contact, CreateContactRequest};

/// Longest `contact.from.value`, in bytes, once normalised.
pub const MAX_IDENTITY_VALUE_BYTES: usize = switchboard_core::identity::MAX_IDENTITY_VALUE_BYTES;
/// Longest `contact.subject`, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// Longest `contact.body`, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// `contact.subject`: one line.
const SUBJECT: TextRule = TextRule::line(MAX_SUBJECT_BYTES);
/// `contact.body`: paragraphs.
const BODY: TextRule = TextRule::paragraphs(MAX_BODY_BYTES);
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
/// Longest `contact.session_url`, in bytes.
pub const MAX_SESSION_URL_BYTES: usize = 2048;
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

    /// Records why `value` breaks `rule`, if it does.
    fn check_text(&mut self, field: &str, value: &str, rule: TextRule) {
        if let Some(problem) = rule.problem(value) {
            self.add(field, problem);
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
    violations.check_text("contact.subject", &contact.subject, SUBJECT);
    violations.check_text("contact.body", &contact.body, BODY);
    check_attributes(&mut violations, contact);
    if !(0..=MAX_PRIORITY).contains(&contact.priority) {
        violations.add("contact.priority", format!("must be between 0 and {MAX_PRIORITY}"));
    }
    violations.check_text(
        "contact.provider_message_id",
        &contact.provider_message_id,
        TextRule::line(MAX_PROVIDER_MESSAGE_ID_BYTES),
    );

    check_session_url(&mut violations, contact);
    if contact.ended_in_self_service && contact.channel != Channel::Voice as i32 {
        violations.add("contact.ended_in_self_service", "only a call ends in self-service (an IVR)");
    }

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
        session_url: contact.session_url.clone(),
        ended_in_self_service: contact.ended_in_self_service,
    };
    Ok(ValidatedContact { tenant, queue, request_id: request.request_id.clone(), contact: normalised })
}

/// A video contact carries its session's `https://` join link; no other
/// contact carries one.
fn check_session_url(violations: &mut Violations, contact: &Contact) {
    let url = &contact.session_url;
    if contact.channel != Channel::Video as i32 {
        if !url.is_empty() {
            violations.add("contact.session_url", "is for CHANNEL_VIDEO contacts only");
        }
        return;
    }
    if url.is_empty() {
        violations.add("contact.session_url", "is required for CHANNEL_VIDEO contacts");
        return;
    }
    let well_formed = url.strip_prefix("https://").is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && url.len() <= MAX_SESSION_URL_BYTES
        && url.bytes().all(|byte| byte.is_ascii_graphic());
    if !well_formed {
        violations
            .add("contact.session_url", format!("must be an https:// URL of at most {MAX_SESSION_URL_BYTES} bytes"));
    }
}

/// Checks the free-text reason of an abandon request (`reason`).
pub fn validate_abandon_reason(reason: &str) -> Result<(), Error> {
    let mut violations = Violations::default();
    violations.check_text("reason", reason, TextRule::line(MAX_ABANDON_REASON_BYTES));
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

/// The sender's address, normalised by the rules CRM resolves it by.
fn normalise_identity(violations: &mut Violations, from: Option<&CustomerIdentity>) -> Option<CustomerIdentity> {
    violations.take(identity_from_proto(from, "contact.from")).map(|identity| identity_to_proto(&identity))
}

fn check_attributes(violations: &mut Violations, contact: &Contact) {
    if contact.attributes.len() > MAX_ATTRIBUTES {
        violations.add("contact.attributes", format!("must have at most {MAX_ATTRIBUTES} entries"));
    }
    // One violation per rule, not per entry, and none depends on map order.
    if contact.attributes.keys().any(String::is_empty) {
        violations.add("contact.attributes", "keys must not be empty");
    }
    let key_rule = TextRule::line(MAX_ATTRIBUTE_KEY_BYTES);
    if let Some(problem) = contact.attributes.keys().find_map(|key| key_rule.problem(key)) {
        violations.add("contact.attributes", format!("keys {problem}"));
    }
    let value_rule = TextRule::paragraphs(MAX_ATTRIBUTE_VALUE_BYTES);
    if let Some(problem) = contact.attributes.values().find_map(|value| value_rule.problem(value)) {
        violations.add("contact.attributes", format!("values {problem}"));
    }
}

#[cfg(test)]
#[path = "domain_tests.rs"]
mod tests;
