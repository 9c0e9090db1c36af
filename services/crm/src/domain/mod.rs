//! The pure core of CRM: how customer identities are normalised so that one
//! person's spellings of an address meet, and how the events of one contact
//! merge into its timeline entry. Nothing here does IO.

pub mod identity;
pub mod timeline;

pub use identity::{Identity, IdentityKind, normalize_display_name, normalize_identity};
pub use timeline::{EntryStatus, TimelineCursor, TimelineEntry, TimelineUpdate, apply_update};
