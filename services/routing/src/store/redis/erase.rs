//! A deleted tenant's part of the routing state: its live contacts (to be
//! ended first) and then every key and member left of it. Keys are found
//! with `SCAN`, which never blocks Redis; every key of a pool shares its
//! hash tag, so the deletes are one slot's even on a cluster.

use switchboard_core::{ContactId, Error, TenantId};
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use crate::store::codec::corrupt;

/// Keys deleted per `DEL`.
const DELETE_CHUNK: usize = 500;

impl RedisRoutingState {
    /// Every key matching `pattern`.
    async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, Error> {
        let mut connection = self.connection.clone();
        let (mut cursor, mut keys) = (0_u64, Vec::new());
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Members of the set or sorted set `key` matching `pattern`.
    async fn scan_members(&self, command: &str, key: &str, pattern: &str) -> Result<Vec<String>, Error> {
        let mut connection = self.connection.clone();
        let (mut cursor, mut members) = (0_u64, Vec::new());
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd(command)
                .arg(key)
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            // ZSCAN answers member, score, member, score...
            let step = if command == "ZSCAN" { 2 } else { 1 };
            members.extend(batch.into_iter().step_by(step));
            if next == 0 {
                return Ok(members);
            }
            cursor = next;
        }
    }

    pub(super) async fn read_live_contacts(&self, tenant: &TenantId) -> Result<Vec<ContactId>, Error> {
        let key_prefix = format!("{}:c:{tenant}:", self.prefix);
        let mut live = Vec::new();
        for key in self.scan_keys(&format!("{key_prefix}*")).await? {
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
            keys.extend(self.scan_keys(&format!("{}:{kind}:{tenant}:*", self.prefix)).await?);
        }
        // Shared sets name a tenant's lines and contacts `tenant:...`.
        let members = format!("{tenant}:*");
        let lines = self.scan_members("SSCAN", &self.queues_key(), &members).await?;
        let offers = self.scan_members("ZSCAN", &self.offers_key(), &members).await?;
        let deadlines = self.scan_members("ZSCAN", &self.deadlines_key(), &members).await?;
        let mut pipeline = redis::pipe();
        let mut commands = 0;
        for chunk in keys.chunks(DELETE_CHUNK) {
            commands += 1;
            pipeline.cmd("DEL").arg(chunk).ignore();
        }
        for (command, key, members) in [
            ("SREM", self.queues_key(), lines),
            ("ZREM", self.offers_key(), offers),
            ("ZREM", self.deadlines_key(), deadlines),
        ] {
            for chunk in members.chunks(DELETE_CHUNK) {
                commands += 1;
                pipeline.cmd(command).arg(&key).arg(chunk).ignore();
            }
        }
        if commands > 0 {
            let mut connection = self.connection.clone();
            let _: () = pipeline.query_async(&mut connection).await.map_err(redis_error)?;
        }
        self.forget_fair_share(tenant).await
    }
}
