//! Pure building blocks shared by every Switchboard crate: typed ids and
//! resource names, principals and their permissions, the error-code table,
//! and the event envelope. Nothing here does IO.

pub mod clock;
pub mod error;
pub mod event;
pub mod identity;
pub mod ids;
pub mod names;
pub mod principal;
pub mod sync;
pub mod text;
pub mod time;

pub use error::{Error, ErrorCode, Result};
pub use ids::{AgentId, ChannelId, ContactId, ConversationId, CustomerId, MessageId, QueueId, TenantId};
pub use principal::{Principal, Role};
