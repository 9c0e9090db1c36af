//! What ingestion erases of a deleted tenant: its contacts (with their
//! unpublished events), channels (with their secrets and mailbox leases),
//! conversations, messages (with pending deliveries) and calls.

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_core::{Error, TenantId};
use switchboard_platform::service::{Erased, TenantEraser};

use crate::calls::CallStore;
use crate::conversations::ConversationStore;
use crate::store::ContactStore;
use crate::store::channels::ChannelStore;

pub struct IngestionEraser {
    pub contacts: Arc<dyn ContactStore>,
    pub channels: Arc<dyn ChannelStore>,
    pub conversations: Arc<dyn ConversationStore>,
    pub calls: Arc<dyn CallStore>,
}

#[async_trait]
impl TenantEraser for IngestionEraser {
    async fn erase(&self, tenant: &TenantId) -> Result<Erased, Error> {
        // Channels first: no webhook or mailbox of the tenant takes in a
        // message while the rest goes.
        self.channels.erase_tenant(tenant).await?;
        self.conversations.erase_tenant(tenant).await?;
        self.calls.erase_tenant(tenant).await?;
        self.contacts.erase_tenant(tenant).await?;
        Ok(Erased::Done)
    }
}
