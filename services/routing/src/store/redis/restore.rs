//! Detecting that Redis lost the pool's data, and putting journaled state
//! back. The pool's marker key is set when its state is whole; every
//! writing script checks it first, so nothing is written on a partial state.
//! Redis must not evict keys (`maxmemory-policy noeviction`): an evicted
//! marker reads as a loss.

use std::collections::BTreeMap;

use switchboard_core::{AgentId, Error};
use switchboard_platform::redis::redis_error;
use switchboard_proto::presence::v1::AgentState;

use super::scripts::RESTORE_CONTACT_SCRIPT;
use super::{RedisRoutingState, TERMINAL_RETENTION_MS};
use crate::domain::{ContactRecord, RoutingStatus};
use crate::store::codec;
use crate::store::journal::JournaledAgent;

impl RedisRoutingState {
    /// The marker's value, set by each restore: the state's generation.
    pub(super) async fn marker_value(&self) -> Result<Option<String>, Error> {
        let mut connection = self.connection.clone();
        redis::cmd("GET").arg(self.marker_key()).query_async(&mut connection).await.map_err(redis_error)
    }

    pub(super) async fn has_marker(&self) -> Result<bool, Error> {
        let mut connection = self.connection.clone();
        let exists: i64 =
            redis::cmd("EXISTS").arg(self.marker_key()).query_async(&mut connection).await.map_err(redis_error)?;
        Ok(exists == 1)
    }

    pub(super) async fn has_pending_rebuild(&self) -> Result<bool, Error> {
        let mut connection = self.connection.clone();
        let exists: i64 = redis::cmd("EXISTS")
            .arg(self.rebuild_pending_key())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(exists == 1)
    }

    pub(super) async fn end_rebuild(&self) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.rebuild_pending_key())
            .arg(self.rebuild_lease_key())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn take_rebuild_lease(&self, holder: &str, lease_ms: i64) -> Result<bool, Error> {
        let mut connection = self.connection.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.rebuild_lease_key())
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if taken.is_some() {
            return Ok(true);
        }
        let current: Option<String> =
            redis::cmd("GET").arg(self.rebuild_lease_key()).query_async(&mut connection).await.map_err(redis_error)?;
        Ok(current.as_deref() == Some(holder))
    }

    /// Writes every contact and agent back (each one idempotent step), then
    /// sets the marker and marks the rest of the rebuild pending.
    pub(super) async fn restore_state(
        &self,
        contacts: &[ContactRecord],
        agents: &[JournaledAgent],
        now_ms: i64,
    ) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        // Pipelined invocations run by hash: the script must be loaded.
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(RESTORE_CONTACT_SCRIPT)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        for chunk in contacts.chunks(500) {
            let mut pipeline = redis::pipe();
            for record in chunk {
                let member = format!("{}:{}", record.tenant, record.contact);
                let line = format!("{}:{}:{}", record.tenant, record.queue, record.channel);
                let agent = record.agent.as_ref().map_or("-", AgentId::as_str);
                let deadline = if record.status == RoutingStatus::Queued { record.rules.deadline_ms } else { 0 };
                let mut invocation = self.restore_contact.key(self.contact_key(&record.tenant, &record.contact));
                invocation
                    .key(self.waiting_key(&record.tenant, &record.queue, record.channel))
                    .key(self.queues_key())
                    .key(self.offers_key())
                    .key(self.agent_offers_key(agent))
                    .key(self.deadlines_key())
                    .key(self.changed_lines_key())
                    .key(self.change_counter_key())
                    .arg(record.status.as_str())
                    .arg(record.contact.as_str())
                    .arg(&member)
                    .arg(&line)
                    .arg(record.rank())
                    .arg(record.offer_expire_ms)
                    .arg(deadline)
                    .arg(TERMINAL_RETENTION_MS);
                for (field, value) in codec::record_fields(record, record.revision)? {
                    invocation.arg(field).arg(value);
                }
                pipeline.invoke_script(&invocation);
            }
            let _: Vec<i64> = pipeline.query_async(&mut connection).await.map_err(redis_error)?;
        }
        let mut loads: BTreeMap<&AgentId, BTreeMap<i32, i64>> = BTreeMap::new();
        for record in
            contacts.iter().filter(|record| matches!(record.status, RoutingStatus::Offered | RoutingStatus::Answered))
        {
            if let Some(agent) = &record.agent {
                *loads.entry(agent).or_default().entry(record.channel).or_insert(0) += 1;
            }
        }
        for agent in agents {
            let mut invocation = self.restore_agent.key(self.agent_key(agent.profile.agent.as_str()));
            invocation
                .key(self.available_key())
                .key(self.changed_agents_key())
                .key(self.change_counter_key())
                .arg(codec::profile_json(&agent.profile)?)
                .arg(if agent.state == AgentState::Available { "1" } else { "0" })
                .arg(now_ms)
                .arg(agent.profile.agent.as_str());
            for (channel, load) in loads.get(&agent.profile.agent).into_iter().flatten() {
                invocation.arg(channel).arg(load);
            }
            let _: i64 = invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
        }
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(self.marker_key())
            // A new generation (see `RoutingState::generation`).
            .arg(switchboard_core::event::new_event_id())
            .ignore()
            .cmd("SET")
            .arg(self.rebuild_pending_key())
            .arg("1")
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}
