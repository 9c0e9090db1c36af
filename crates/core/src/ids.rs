//! Typed ids. Caller-chosen ids (tenant, queue, agent) are slugs; ids the
//! platform mints (contact, customer) carry a type prefix and a UUIDv7, so an
//! id in a log line says what it is and sorts by creation time.

use std::fmt;

use crate::error::Error;

/// Longest slug or prefixed id accepted anywhere.
pub const MAX_ID_LEN: usize = 63;

/// Checks a caller-chosen id: 1-63 of `[a-z0-9-]`, starting with a letter,
/// not ending with `-`.
pub fn validate_slug(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("must not be empty");
    }
    if value.len() > MAX_ID_LEN {
        return Err("must be at most 63 characters");
    }
    if !value.starts_with(|first: char| first.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter");
    }
    if value.ends_with('-') {
        return Err("must not end with '-'");
    }
    if !value.chars().all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-')
    {
        return Err("may contain only a-z, 0-9 and '-'");
    }
    Ok(())
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates; `field` names the request field in the error.
            pub fn parse(value: &str, field: &str) -> Result<Self, Error> {
                validate_slug(value).map_err(|problem| Error::invalid_field(field, problem))?;
                Ok($name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Mints a new id: the prefix and a UUIDv7 in lowercase hex.
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Parses an id minted by [`Self::generate`].
            pub fn parse(value: &str, field: &str) -> Result<Self, Error> {
                let Some(rest) = value.strip_prefix($prefix) else {
                    return Err(Error::invalid_field(field, concat!("must start with '", $prefix, "'")));
                };
                let well_formed = (1..=MAX_ID_LEN - $prefix.len()).contains(&rest.len())
                    && rest.chars().all(|character| character.is_ascii_lowercase() || character.is_ascii_digit());
                if !well_formed {
                    return Err(Error::invalid_field(field, "is not a well-formed id"));
                }
                Ok($name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_id!(
    /// A client business served by the operator, e.g. `acme`.
    TenantId
);
slug_id!(
    /// A queue, unique within its tenant.
    QueueId
);
slug_id!(
    /// An agent (operator-wide).
    AgentId
);
slug_id!(
    /// A channel (a provider account), unique within its tenant.
    ChannelId
);
prefixed_id!(
    /// A customer contact on any channel.
    ContactId,
    "ct_"
);
prefixed_id!(
    /// A customer of a tenant.
    CustomerId,
    "cu_"
);
prefixed_id!(
    /// A conversation: one customer's thread with a tenant on one channel.
    ConversationId,
    "cv_"
);
prefixed_id!(
    /// A message of a conversation.
    MessageId,
    "ms_"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs_are_validated() {
        assert!(TenantId::parse("acme", "parent").is_ok());
        assert!(TenantId::parse("acme-2", "parent").is_ok());
        for bad in ["", "Acme", "2acme", "acme-", "ac me", "acme/x", &"a".repeat(64)] {
            let error = TenantId::parse(bad, "parent").expect_err(bad);
            assert_eq!(error.field_violations[0].field, "parent");
        }
    }

    #[test]
    fn prefixed_ids_round_trip_and_sort_by_time() {
        let first = ContactId::generate();
        let second = ContactId::generate();
        assert!(first < second, "uuidv7 ids sort by creation");
        assert_eq!(ContactId::parse(first.as_str(), "name"), Ok(first));
        assert!(ContactId::parse("cu_0123", "name").is_err());
        assert!(ContactId::parse("ct_", "name").is_err());
        assert!(ContactId::parse("ct_ABC", "name").is_err());
    }

    proptest! {
        #[test]
        fn valid_slugs_never_contain_separators(value in "[a-z][a-z0-9-]{0,70}") {
            if let Ok(id) = QueueId::parse(&value, "queue_id") {
                prop_assert!(!id.as_str().contains('/'));
                prop_assert!(id.as_str().len() <= MAX_ID_LEN);
            }
        }
    }
}
