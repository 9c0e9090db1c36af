//! Customer identities: the kinds of address a customer is known by, and the
//! normalisation that makes `Alice@Example.com ` and `alice@example.com` the
//! same person. One place for ingestion (which stores the address a contact
//! came from) and CRM (which resolves it to a customer), so both always
//! agree on what an address is.

use switchboard_proto::common::v1 as proto;

use crate::error::Error;

/// Longest normalised identity value, in bytes.
pub const MAX_IDENTITY_VALUE_BYTES: usize = 256;
/// Longest identity value a request may carry before normalisation.
pub const MAX_RAW_IDENTITY_VALUE_BYTES: usize = 1024;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// Fewest digits a phone number may have.
pub const MIN_PHONE_DIGITS: usize = 5;
/// Most digits a phone number may have: E.164's limit.
pub const MAX_PHONE_DIGITS: usize = 15;

/// The kind of address an identity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityKind {
    Phone,
    Email,
    ChatVisitor,
    Messenger,
    Social,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 5] = [
        IdentityKind::Phone,
        IdentityKind::Email,
        IdentityKind::ChatVisitor,
        IdentityKind::Messenger,
        IdentityKind::Social,
    ];

    /// The stable spelling used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Phone => "phone",
            IdentityKind::Email => "email",
            IdentityKind::ChatVisitor => "chat_visitor",
            IdentityKind::Messenger => "messenger",
            IdentityKind::Social => "social",
        }
    }

    /// The inverse of [`IdentityKind::as_str`].
    pub fn parse(value: &str) -> Option<IdentityKind> {
        IdentityKind::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// A normalised address of a customer; two identities are the same address
/// exactly when they are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub kind: IdentityKind,
    pub value: String,
}

/// Normalises `raw_value` as an address of `kind`:
/// - e-mail: trimmed and lower-cased; must be `local@domain` without spaces;
/// - phone: the digits only, behind a leading `+` (E.164); between
///   [`MIN_PHONE_DIGITS`] and [`MAX_PHONE_DIGITS`] digits, and nothing but
///   digits, spaces and `+-().` in the input;
/// - every other kind: trimmed, no control characters.
///
/// The result is at most [`MAX_IDENTITY_VALUE_BYTES`] long. Errors name
/// `value_field`. Normalising a normalised value returns it unchanged.
pub fn normalize_identity(kind: IdentityKind, raw_value: &str, value_field: &str) -> Result<Identity, Error> {
    if raw_value.trim().is_empty() {
        return Err(Error::missing_field(value_field));
    }
    let normalized = match kind {
        IdentityKind::Email => normalize_email(raw_value),
        IdentityKind::Phone => normalize_phone(raw_value),
        IdentityKind::ChatVisitor | IdentityKind::Messenger | IdentityKind::Social => normalize_opaque(raw_value),
    }
    .map_err(|problem| Error::invalid_field(value_field, problem))?;
    if normalized.len() > MAX_IDENTITY_VALUE_BYTES {
        return Err(Error::invalid_field(
            value_field,
            format!("must be at most {MAX_IDENTITY_VALUE_BYTES} bytes once normalised"),
        ));
    }
    Ok(Identity { kind, value: normalized })
}

fn normalize_email(raw_value: &str) -> Result<String, String> {
    let lowered = raw_value.trim().to_lowercase();
    if lowered.chars().any(|character| character.is_whitespace() || character.is_control()) {
        return Err("an e-mail address must not contain spaces or control characters".to_owned());
    }
    let Some((local_part, domain)) = lowered.rsplit_once('@') else {
        return Err("an e-mail address must look like `local@domain`".to_owned());
    };
    if local_part.is_empty() || domain.is_empty() {
        return Err("an e-mail address must look like `local@domain`".to_owned());
    }
    Ok(lowered)
}

fn normalize_phone(raw_value: &str) -> Result<String, String> {
    let mut normalized = String::with_capacity(raw_value.len() + 1);
    normalized.push('+');
    for character in raw_value.chars() {
        match character {
            '0'..='9' => normalized.push(character),
            '+' | '-' | '(' | ')' | '.' => {}
            _ if character.is_whitespace() => {}
            _ => return Err(format!("a phone number may contain only digits, spaces and `+-().`, not {character:?}")),
        }
    }
    let digit_count = normalized.len() - 1;
    if digit_count < MIN_PHONE_DIGITS {
        return Err(format!("a phone number needs at least {MIN_PHONE_DIGITS} digits"));
    }
    if digit_count > MAX_PHONE_DIGITS {
        return Err(format!("a phone number has at most {MAX_PHONE_DIGITS} digits (E.164)"));
    }
    Ok(normalized)
}

fn normalize_opaque(raw_value: &str) -> Result<String, String> {
    let trimmed = raw_value.trim();
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(trimmed.to_owned())
}

/// A provider-scoped handle, e.g. `telegram:12345` or `messenger:<PSID>`:
/// kind [`IdentityKind::Messenger`], the provider's lower-case name and the
/// provider's own id (trimmed, no control characters, no spaces). Errors
/// name `value_field`.
pub fn provider_handle(provider: &str, provider_id: &str, value_field: &str) -> Result<Identity, Error> {
    let valid_provider = !provider.is_empty()
        && provider.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if !valid_provider {
        return Err(Error::invalid_field(value_field, "the provider must be a lower-case name"));
    }
    let provider_id = provider_id.trim();
    if provider_id.is_empty() {
        return Err(Error::missing_field(value_field));
    }
    if provider_id.chars().any(char::is_whitespace) {
        return Err(Error::invalid_field(value_field, "a provider's id must not contain spaces"));
    }
    normalize_identity(IdentityKind::Messenger, &format!("{provider}:{provider_id}"), value_field)
}

/// The normalised identity of an API `CustomerIdentity`; errors name
/// `field` (e.g. `contact.from`) and its `.kind` and `.value`.
pub fn identity_from_proto(identity: Option<&proto::CustomerIdentity>, field: &str) -> Result<Identity, Error> {
    let Some(identity) = identity else {
        return Err(Error::missing_field(field));
    };
    let kind = match proto::IdentityKind::try_from(identity.kind) {
        Ok(proto::IdentityKind::Phone) => IdentityKind::Phone,
        Ok(proto::IdentityKind::Email) => IdentityKind::Email,
        Ok(proto::IdentityKind::ChatVisitor) => IdentityKind::ChatVisitor,
        Ok(proto::IdentityKind::Messenger) => IdentityKind::Messenger,
        Ok(proto::IdentityKind::Social) => IdentityKind::Social,
        Ok(proto::IdentityKind::Unspecified) => return Err(Error::missing_field(format!("{field}.kind"))),
        Err(_) => return Err(Error::invalid_field(format!("{field}.kind"), "is not a known identity kind")),
    };
    if identity.value.len() > MAX_RAW_IDENTITY_VALUE_BYTES {
        let problem = format!("must be at most {MAX_RAW_IDENTITY_VALUE_BYTES} bytes");
        return Err(Error::invalid_field(format!("{field}.value"), problem));
    }
    normalize_identity(kind, &identity.value, &format!("{field}.value"))
}

/// The API form of an identity.
pub fn identity_to_proto(identity: &Identity) -> proto::CustomerIdentity {
    let kind = match identity.kind {
        IdentityKind::Phone => proto::IdentityKind::Phone,
        IdentityKind::Email => proto::IdentityKind::Email,
        IdentityKind::ChatVisitor => proto::IdentityKind::ChatVisitor,
        IdentityKind::Messenger => proto::IdentityKind::Messenger,
        IdentityKind::Social => proto::IdentityKind::Social,
    };
    proto::CustomerIdentity { kind: kind.into(), value: identity.value.clone() }
}

/// Trims a display name; it may be empty and is at most
/// [`MAX_DISPLAY_NAME_CHARS`] characters without control characters.
pub fn normalize_display_name(raw_display_name: &str, field: &str) -> Result<String, Error> {
    let trimmed = raw_display_name.trim();
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(Error::invalid_field(field, format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::invalid_field(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn normalized(kind: IdentityKind, value: &str) -> String {
        normalize_identity(kind, value, "identity.value").expect("valid identity").value
    }

    fn rejected_field(kind: IdentityKind, value: &str) -> String {
        let error = normalize_identity(kind, value, "identity.value").expect_err(value);
        error.field_violations[0].field.clone()
    }

    #[test]
    fn email_variants_meet() {
        for variant in ["alice@example.com", "  Alice@Example.COM ", "ALICE@EXAMPLE.COM\n"] {
            assert_eq!(normalized(IdentityKind::Email, variant), "alice@example.com", "{variant:?}");
        }
        for bad in ["alice", "@example.com", "alice@", "al ice@example.com", "   "] {
            assert_eq!(rejected_field(IdentityKind::Email, bad), "identity.value", "{bad:?}");
        }
    }

    #[test]
    fn phone_numbers_keep_digits_behind_a_plus() {
        assert_eq!(normalized(IdentityKind::Phone, "+1 (555) 010-0000"), "+15550100000");
        assert_eq!(normalized(IdentityKind::Phone, "7 495 123.45.67"), "+74951234567");
        assert_eq!(normalized(IdentityKind::Phone, "+15550100000"), "+15550100000");
        for bad in ["1234", "+1-2-3", "call me", "555-0100 ext. 7", ""] {
            assert_eq!(rejected_field(IdentityKind::Phone, bad), "identity.value", "{bad:?}");
        }
    }

    #[test]
    fn opaque_identities_are_trimmed_only() {
        assert_eq!(normalized(IdentityKind::Messenger, " telegram:12345 "), "telegram:12345");
        assert_eq!(normalized(IdentityKind::ChatVisitor, "Visitor-AbC"), "Visitor-AbC");
        assert_eq!(rejected_field(IdentityKind::Social, "bad\u{7}value"), "identity.value");
    }

    #[test]
    fn values_and_display_names_are_bounded() {
        let longest = "a".repeat(MAX_IDENTITY_VALUE_BYTES);
        assert_eq!(normalized(IdentityKind::Social, &longest), longest);
        let too_long = "a".repeat(MAX_IDENTITY_VALUE_BYTES + 1);
        assert_eq!(rejected_field(IdentityKind::Social, &too_long), "identity.value");
        let email_too_long = format!("{}@example.com", "a".repeat(MAX_IDENTITY_VALUE_BYTES));
        assert_eq!(rejected_field(IdentityKind::Email, &email_too_long), "identity.value");

        assert_eq!(normalize_display_name("  Alice  ", "display_name").expect("valid"), "Alice");
        assert_eq!(normalize_display_name("", "display_name").expect("empty is fine"), "");
        let long_name = "я".repeat(MAX_DISPLAY_NAME_CHARS);
        assert!(normalize_display_name(&long_name, "display_name").is_ok());
        let error = normalize_display_name(&format!("{long_name}я"), "display_name").expect_err("too long");
        assert_eq!(error.field_violations[0].field, "display_name");
    }

    #[test]
    fn kinds_round_trip_their_storage_spelling() {
        for kind in IdentityKind::ALL {
            assert_eq!(IdentityKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(IdentityKind::parse("fax"), None);
    }

    fn any_kind() -> impl Strategy<Value = IdentityKind> {
        proptest::sample::select(IdentityKind::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(kind in any_kind(), raw in "[ -~\u{e9}\u{130}]{0,40}") {
            if let Ok(first) = normalize_identity(kind, &raw, "identity.value") {
                let second = normalize_identity(kind, &first.value, "identity.value");
                prop_assert_eq!(second, Ok(first.clone()));
                prop_assert!(first.value.len() <= MAX_IDENTITY_VALUE_BYTES);
                prop_assert!(!first.value.is_empty());
            }
        }

        #[test]
        fn email_case_and_padding_never_split_a_customer(
            local in "[a-zA-Z0-9._%+-]{1,20}",
            domain in "[a-zA-Z0-9-]{1,20}\\.[a-zA-Z]{2,6}",
            left_padding in " {0,3}",
            right_padding in "[ \t]{0,3}",
        ) {
            let plain = normalize_identity(IdentityKind::Email, &format!("{local}@{domain}"), "v");
            let shouted = format!("{left_padding}{}@{}{right_padding}", local.to_uppercase(), domain.to_uppercase());
            prop_assert_eq!(normalize_identity(IdentityKind::Email, &shouted, "v"), plain);
        }

        #[test]
        fn phone_punctuation_never_splits_a_customer(digits in "[0-9]{5,15}", separator in "[ .()-]") {
            let spaced: String = digits.chars().flat_map(|digit| [digit, separator.chars().next().unwrap_or(' ')]).collect();
            let expected = format!("+{digits}");
            prop_assert_eq!(normalized(IdentityKind::Phone, &spaced), expected.clone());
            prop_assert_eq!(normalized(IdentityKind::Phone, &format!("+{spaced}")), expected);
        }
    }

    #[test]
    fn phones_are_e164_at_most_fifteen_digits() {
        let longest = normalize_identity(IdentityKind::Phone, "+1 234 567 890 123 45", "v").expect("15 digits");
        assert_eq!(longest.value, "+123456789012345");
        let error = normalize_identity(IdentityKind::Phone, "+1234567890123456", "v").expect_err("16 digits");
        assert!(error.field_violations[0].description.contains("E.164"), "{error:?}");
    }

    #[test]
    fn provider_handles_are_scoped_by_provider() {
        let handle = provider_handle("telegram", " 12345 ", "from").expect("valid");
        assert_eq!((handle.kind, handle.value.as_str()), (IdentityKind::Messenger, "telegram:12345"));
        assert!(provider_handle("Telegram", "1", "from").is_err(), "the provider is a lower-case name");
        assert!(provider_handle("telegram", "  ", "from").is_err(), "the id is required");
        assert!(provider_handle("telegram", "1 2", "from").is_err(), "no spaces in an id");
        assert!(provider_handle("telegram", "1\u{0}", "from").is_err(), "no control characters");
    }
}
