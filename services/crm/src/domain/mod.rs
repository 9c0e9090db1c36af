//! The pure core of CRM: how customer identities are normalised so that one
//! person's spellings of an address meet, and how the events of one contact
//! merge into its timeline entry. Nothing here does IO.

pub mod timeline;

/// Identities are normalised in one place shared with ingestion.
pub use switchboard_core::identity::{
    Identity, IdentityKind, identity_from_proto, identity_to_proto, normalize_display_name, normalize_identity,
};
pub use timeline::{EntryStatus, TimelineCursor, TimelineEntry, TimelineUpdate, apply_update};
