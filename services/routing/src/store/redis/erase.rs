//! A deleted tenant's part of the routing state: its live contacts (to be
//! ended first) and then every key and member left of it. Keys are found
//! with `SCAN`, which never blocks Redis; every key of a pool shares its
//! hash tag, so the deletes are one slot's even on a cluster.

use switchboard_core::{ContactId, Error, TenantId};
use switchboard_platform::redis::{Scanned, delete_keys, remove_members, scan};

use super::RedisRoutingState;
use crate::store::codec::corrupt;

impl RedisRoutingState {
    pub(super) async fn read_live_contacts(&self, tenant: &TenantId) -> Result<Vec<ContactId>, Error> {
        let key_prefix = format!("{}:c:{tenant}:", self.prefix);
        let mut live = Vec::new();
        for key in scan(&self.connection, Scanned::Keys, &format!("{key_prefix}*")).await? {
            let Some(id) = key.strip_prefix(&key_prefix) else { continue };
            let contact = ContactId::parse(id, "contact").map_err(|_| corrupt("contact key"))?;
            if let Some(record) = self.read_contact(tenant, &contact).await?
                && !record.status.is_terminal()
            {
                live.push(contact);
            }
        }
        Ok(live)
    }

    pub(super) async fn erase_tenant_keys(&self, tenant: &TenantId) -> Result<(), Error> {
        let mut keys = Vec::new();
        for kind in ["c", "w", "pace", "last"] {
            keys.extend(scan(&self.connection, Scanned::Keys, &format!("{}:{kind}:{tenant}:*", self.prefix)).await?);
        }
        delete_keys(&self.connection, &keys).await?;
        // Shared sets name a tenant's lines and contacts `tenant:...`.
        let members = format!("{tenant}:*");
        let lines = scan(&self.connection, Scanned::SetMembers(&self.queues_key()), &members).await?;
        remove_members(&self.connection, "SREM", Some(&self.queues_key()), &lines).await?;
        // A replica's copy of the lines drops the tenant's with its next
        // whole read; the matcher routes no deleted tenant meanwhile.
        for key in [self.offers_key(), self.deadlines_key(), self.changed_lines_key()] {
            let found = scan(&self.connection, Scanned::SortedSetMembers(&key), &members).await?;
            remove_members(&self.connection, "ZREM", Some(&key), &found).await?;
        }
        self.forget_fair_share(tenant).await
    }
}
