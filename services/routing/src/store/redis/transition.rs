//! A contact's transitions in Redis: the pure domain decides on a view of
//! the record, and one atomic script (`lua/transition.lua`) swaps it in
//! only while the record's revision is the one the view had, with the
//! bookkeeping the transition implies and its events; a lost race reads
//! again and decides again.

use switchboard_core::event::encode;
use switchboard_core::{AgentId, ContactId, Error, TenantId};

use super::{MAX_TRANSITION_ATTEMPTS, RedisRoutingState, TERMINAL_RETENTION_MS, contact_not_found, state_error};
use crate::domain::{self, ContactRecord, RoutingStatus};
use crate::store::{EventsFor, codec};

impl RedisRoutingState {
    /// Applies `change` (a pure domain transition) with compare-and-set,
    /// retrying when another writer got there first.
    pub(super) async fn apply<T>(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        now_ms: i64,
        change: impl Fn(&mut ContactRecord) -> Result<T, Error>,
        events_for: EventsFor<'_>,
    ) -> Result<(T, ContactRecord), Error> {
        self.apply_from(tenant, contact, None, now_ms, change, events_for).await
    }

    /// [`Self::apply`], trying the change on `seen` first: the script swaps
    /// only while its revision is current, and a view the change refuses
    /// or leaves unchanged may be stale, so it is read again before the
    /// answer counts.
    pub(super) async fn apply_from<T>(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        mut seen: Option<&ContactRecord>,
        now_ms: i64,
        change: impl Fn(&mut ContactRecord) -> Result<T, Error>,
        events_for: EventsFor<'_>,
    ) -> Result<(T, ContactRecord), Error> {
        for _attempt in 0..MAX_TRANSITION_ATTEMPTS {
            let (before, fresh) = match seen.take() {
                Some(seen) => (seen.clone(), false),
                None => {
                    let read = self.read_contact(tenant, contact).await?;
                    (read.ok_or_else(|| contact_not_found(tenant, contact))?, true)
                }
            };
            let mut after = before.clone();
            let outcome = match change(&mut after) {
                Ok(outcome) => outcome,
                Err(_) if !fresh => continue,
                Err(error) => return Err(error),
            };
            if after == before {
                if !fresh {
                    continue;
                }
                return Ok((outcome, after));
            }
            let revision = before.revision;
            after.revision = revision + 1;
            let holds_load = |status: RoutingStatus| matches!(status, RoutingStatus::Offered | RoutingStatus::Answered);
            let queued = |record: &ContactRecord| record.status == RoutingStatus::Queued;
            let same_line = before.queue == after.queue && before.channel == after.channel;
            let leaves_line = queued(&before) && (!queued(&after) || !same_line);
            let joins_line =
                queued(&after) && (!queued(&before) || !same_line || before.rank().total_cmp(&after.rank()).is_ne());
            let offer_ended = before.status == RoutingStatus::Offered && after.status != RoutingStatus::Offered;
            let releases_agent = holds_load(before.status) && !holds_load(after.status);
            let deadline = if queued(&after) { after.rules.deadline_ms } else { 0 };
            let holder = before.agent.as_ref().map_or("-", AgentId::as_str);
            let member = format!("{tenant}:{contact}");
            let flag = |value: bool| if value { "1" } else { "0" };
            let events: Vec<Vec<u8>> = events_for(&before, &after).iter().map(encode).collect();
            let mut connection = self.connection.clone();
            let swapped: i32 = self
                .transition
                .key(self.contact_key(tenant, contact))
                .key(self.waiting_key(tenant, &before.queue, before.channel))
                .key(self.agent_key(holder))
                .key(self.offers_key())
                .key(self.agent_offers_key(holder))
                .key(self.queues_key())
                .key(self.outbox_key())
                .key(self.waiting_key(tenant, &after.queue, after.channel))
                .key(self.deadlines_key())
                .key(self.marker_key())
                .key(self.changed_agents_key())
                .key(self.change_counter_key())
                .key(self.changed_lines_key())
                .arg(before.status.as_str())
                .arg(before.agent.as_ref().map_or("", AgentId::as_str))
                .arg(revision)
                .arg(after.status.as_str())
                .arg(after.agent.as_ref().map_or("", AgentId::as_str))
                .arg(after.offer_expire_ms)
                .arg(after.answer_ms)
                .arg(after.end_ms)
                .arg(codec::record_json(&after)?)
                .arg(contact.as_str())
                .arg(after.rank())
                .arg(&member)
                .arg(format!("{tenant}:{}:{}", before.queue, before.channel))
                .arg(format!("{tenant}:{}:{}", after.queue, after.channel))
                .arg(flag(leaves_line))
                .arg(flag(joins_line))
                .arg(flag(offer_ended))
                .arg(flag(releases_agent))
                .arg(before.channel)
                .arg(now_ms)
                .arg(deadline)
                .arg(TERMINAL_RETENTION_MS)
                .arg(if releases_agent { domain::rules::wrap_up_hold_until(&after, now_ms) } else { 0 })
                .arg(codec::snapshot_json(&after, after.revision)?)
                .arg(&events)
                .invoke_async(&mut connection)
                .await
                .map_err(state_error)?;
            if swapped == 1 {
                return Ok((outcome, after));
            }
        }
        Err(Error::new(
            switchboard_core::ErrorCode::Aborted,
            format!("contact `{contact}` is changing too fast, retry"),
        ))
    }
}
