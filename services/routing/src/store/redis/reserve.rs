//! Offers made in Redis: each planned offer one atomic script that
//! re-checks what may have changed since the plan (see `lua/reserve.lua`),
//! a batch of them in one pipeline.

use std::collections::HashMap;

use switchboard_core::event::encode;
use switchboard_core::{AgentId, Error};
use switchboard_platform::redis::redis_error;
use switchboard_proto::events::v1::EventEnvelope;

use super::scripts::RESERVE_SCRIPT;
use super::{RedisRoutingState, state_error};
use crate::domain::{self, ContactRecord};
use crate::store::Reservation;
use crate::store::codec;

impl RedisRoutingState {
    /// Offers `record` to `agent` as its live state is now.
    pub(super) async fn reserve_one(
        &self,
        record: &ContactRecord,
        agent: &AgentId,
        expire_ms: i64,
        events: &[EventEnvelope],
    ) -> Result<bool, Error> {
        let mut connection = self.connection.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.agent_key(agent.as_str()))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if fields.is_empty() {
            return Ok(false);
        }
        let live = codec::decode_agent(agent.as_str(), &fields)?;
        let reservation = Reservation { record, agent: &live, expire_ms, events: events.to_vec() };
        let reserved = self.reserve_planned(std::slice::from_ref(&reservation)).await?;
        Ok(reserved.first().copied().unwrap_or(false))
    }

    /// Makes each planned offer that still holds; returns which did.
    pub(super) async fn reserve_planned(&self, batch: &[Reservation<'_>]) -> Result<Vec<bool>, Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for reservation in batch {
            let (record, agent) = (reservation.record, &reservation.agent.profile);
            // A planned offer is for a tenant the agent serves; capacity is
            // re-checked against live load inside the script.
            let capacity = if agent.tenants.contains(&record.tenant) {
                agent.capacities.get(&record.channel).copied().unwrap_or(0)
            } else {
                0
            };
            let mut offered = record.clone();
            domain::reserve(&mut offered, &agent.agent, reservation.expire_ms)?;
            offered.revision = record.revision + 1;
            pipeline
                .cmd("EVALSHA")
                .arg(self.reserve.get_hash())
                .arg(12)
                .arg(self.contact_key(&record.tenant, &record.contact))
                .arg(self.waiting_key(&record.tenant, &record.queue, record.channel))
                .arg(self.agent_key(agent.agent.as_str()))
                .arg(self.offers_key())
                .arg(self.agent_offers_key(agent.agent.as_str()))
                .arg(self.queues_key())
                .arg(self.outbox_key())
                .arg(self.deadlines_key())
                .arg(self.marker_key())
                .arg(self.changed_agents_key())
                .arg(self.change_counter_key())
                .arg(self.changed_lines_key())
                .arg(record.contact.as_str())
                .arg(agent.agent.as_str())
                .arg(record.channel)
                .arg(capacity)
                .arg(reservation.expire_ms)
                .arg(format!("{}:{}", record.tenant, record.contact))
                .arg(format!("{}:{}:{}", record.tenant, record.queue, record.channel))
                .arg(reservation.expire_ms - record.offer_timeout_ms)
                .arg(record.revision)
                .arg(codec::snapshot_json(&offered, offered.revision)?)
                .arg(reservation.events.iter().map(encode).collect::<Vec<_>>());
        }
        let mut connection = self.connection.clone();
        let outcome: Result<Vec<i32>, redis::RedisError> = pipeline.query_async(&mut connection).await;
        let reserved = match outcome {
            Ok(reserved) => reserved,
            // The server lost its script cache (restart, SCRIPT FLUSH): load
            // it and run the batch again; a failed script call changed nothing.
            Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(RESERVE_SCRIPT)
                    .query_async(&mut connection)
                    .await
                    .map_err(redis_error)?;
                pipeline.query_async(&mut connection).await.map_err(state_error)?
            }
            Err(error) => return Err(state_error(error)),
        };
        if reserved.iter().any(|reserved| *reserved != 1) {
            // A plan made on this replica's copy of the lines and agents lost
            // a race: the next pass reads everything, whatever the copy missed.
            self.copy_stale.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(reserved.into_iter().map(|reserved| reserved == 1).collect())
    }
}
