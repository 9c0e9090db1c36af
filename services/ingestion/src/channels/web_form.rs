//! Contact forms posted by the customer's browser: form-encoded fields, a
//! honeypot field that bots fill in, and an optional check of the
//! browser's `Origin`. There is no signature (the page is public): what
//! protects the endpoint is the honeypot, the origin check, the size limit
//! and validation.

use sha2::{Digest, Sha256};
use switchboard_core::identity::{IdentityKind, normalize_identity};
use switchboard_proto::common::v1::Channel;

use super::{InboundMessage, WebhookRefusal, check_size, safe_text};

/// The honeypot field when the channel names none.
pub const DEFAULT_HONEYPOT_FIELD: &str = "website";
const MAX_FIELD_CHARS: usize = 200;

/// What a form post is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// A person's message.
    Message(Box<InboundMessage>),
    /// The honeypot was filled in: answered like a success, stored nowhere.
    Spam,
}

/// Whether a browser's `Origin` may post: any when `allowed` is empty; a
/// request without `Origin` (not a browser's) is let through to the
/// honeypot and validation.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    match origin {
        _ if allowed.is_empty() => true,
        None => true,
        Some(origin) => allowed.iter().any(|allowed| allowed.trim_end_matches('/') == origin.trim_end_matches('/')),
    }
}

/// Reads a form post. Its provider message id is the page's
/// `submission_id`, or a digest of the fields, so a double submit is one
/// message.
pub fn parse(body: &[u8], honeypot_field: &str) -> Result<Submission, WebhookRefusal> {
    check_size(body)?;
    if std::str::from_utf8(body).is_err() {
        return Err(WebhookRefusal::malformed("the form body is not UTF-8"));
    }
    let fields: Vec<(String, String)> =
        form_urlencoded::parse(body).map(|(name, value)| (name.into_owned(), value.into_owned())).collect();
    let get = |name: &str| {
        fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.trim()).filter(|value| !value.is_empty())
    };
    let honeypot = if honeypot_field.is_empty() { DEFAULT_HONEYPOT_FIELD } else { honeypot_field };
    if get(honeypot).is_some() {
        return Ok(Submission::Spam);
    }
    let from = match (get("email"), get("phone")) {
        (Some(email), _) => normalize_identity(IdentityKind::Email, email, "email"),
        (None, Some(phone)) => normalize_identity(IdentityKind::Phone, phone, "phone"),
        (None, None) => return Err(WebhookRefusal::malformed("`email` or `phone` is required")),
    }
    .map_err(|error| {
        WebhookRefusal::malformed(format!(
            "{}: {}",
            error.field_violations.first().map_or("", |v| v.field.as_str()),
            error.message
        ))
    })?;
    let message = get("message").ok_or_else(|| WebhookRefusal::malformed("`message` is required"))?;
    let short = |name: &str| get(name).map(|value| safe_text(&value.chars().take(MAX_FIELD_CHARS).collect::<String>()));
    let subject = short("subject");
    let text = match &subject {
        Some(subject) => format!("{subject}\n\n{}", safe_text(message)),
        None => safe_text(message),
    };
    let provider_message_id = match get("submission_id") {
        Some(id) if id.len() <= 64 && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-') => {
            id.to_owned()
        }
        Some(_) => return Err(WebhookRefusal::malformed("`submission_id` must be at most 64 letters, digits and `-`")),
        None => {
            let mut sorted = fields.clone();
            sorted.sort();
            let digest = Sha256::digest(format!("{sorted:?}").as_bytes());
            format!("form-{}", &hex::encode(digest)[..32])
        }
    };
    let name = short("name").unwrap_or_default();
    let message = InboundMessage::text(Channel::WebForm, provider_message_id, from, name, text);
    Ok(Submission::Message(Box::new(InboundMessage { subject: subject.unwrap_or_default(), ..message })))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn form(fields: &[(&str, &str)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish().into_bytes()
    }

    #[test]
    fn a_filled_form_is_a_message_from_its_email() {
        let body = form(&[
            ("name", "Ann Example"),
            ("email", " Ann@Example.COM "),
            ("subject", "Refund"),
            ("message", "I was charged twice."),
            ("website", ""),
        ]);
        let Ok(Submission::Message(message)) = parse(&body, "") else { panic!("a message") };
        assert_eq!(message.from.value, "ann@example.com");
        assert_eq!(message.display_name, "Ann Example");
        assert_eq!(message.text, "Refund\n\nI was charged twice.");
        assert_eq!(message.channel, Channel::WebForm);
        let Ok(Submission::Message(again)) = parse(&body, "") else { panic!("a message") };
        assert_eq!(again.provider_message_id, message.provider_message_id, "a double submit is one message");
    }

    #[test]
    fn the_honeypot_catches_bots() {
        let body = form(&[("email", "bot@spam.example"), ("message", "cheap pills"), ("website", "http://spam")]);
        assert_eq!(parse(&body, ""), Ok(Submission::Spam));
        let custom = form(&[("email", "bot@spam.example"), ("message", "x"), ("fax", "1")]);
        assert_eq!(parse(&custom, "fax"), Ok(Submission::Spam));
    }

    #[test]
    fn forms_without_an_address_or_a_message_are_refused() {
        assert!(matches!(parse(&form(&[("message", "hi")]), ""), Err(WebhookRefusal::Malformed(_))));
        assert!(matches!(parse(&form(&[("email", "a@b.example")]), ""), Err(WebhookRefusal::Malformed(_))));
        assert!(matches!(
            parse(&form(&[("email", "not-an-address"), ("message", "x")]), ""),
            Err(WebhookRefusal::Malformed(_))
        ));
        let bad_id = form(&[("email", "a@b.example"), ("message", "x"), ("submission_id", "../../etc")]);
        assert!(matches!(parse(&bad_id, ""), Err(WebhookRefusal::Malformed(_))));
    }

    #[test]
    fn origins_are_checked_only_when_listed() {
        let allowed = vec!["https://www.example.com".to_owned()];
        assert!(origin_allowed(&allowed, Some("https://www.example.com")));
        assert!(!origin_allowed(&allowed, Some("https://evil.example")));
        assert!(origin_allowed(&[], Some("https://anywhere.example")));
        assert!(origin_allowed(&allowed, None), "not a browser: the honeypot and validation decide");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&body, "");
        }
    }
}
