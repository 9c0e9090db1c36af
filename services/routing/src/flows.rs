//! The engine's queue flows beyond offers: opening hours on arrival, the
//! wait deadline (overflow or lost), transfers and queued callbacks. Each
//! is one compare-and-set transition of the store, with its events in the
//! same atomic step, so replicas racing on one contact apply it once.

use switchboard_core::time::millis_from_duration;
use switchboard_core::{AgentId, ContactId, Error, ErrorCode, QueueId, TenantId};
use switchboard_proto::routing::v1::{Queue, TransferReason};

use crate::domain::rules::{
    attach_customer, end_unanswered, expire_wait, move_to_queue, pin_to_agent, reject_arrival, request_callback,
};
use crate::domain::{ContactRecord, EndReason, QueueEntry, RoutingStatus, WaitOutcome};
use crate::engine::{Engine, unless_resolved_meanwhile};
use crate::events;
use crate::queue_config::{Arrival, arrival, queue_entry};
use crate::store::no_events;

/// Contacts past their wait handled per sweep.
const EXPIRED_WAITS_PER_SWEEP: usize = 256;

fn moved_or_ended(
    reason: TransferReason,
) -> impl Fn(&ContactRecord, &ContactRecord) -> Vec<switchboard_proto::events::v1::EventEnvelope> {
    move |before, after| {
        if after.status == RoutingStatus::Abandoned {
            events::abandoned(before, after)
        } else {
            events::transferred(before, after, reason)
        }
    }
}

impl Engine {
    /// What a contact that just entered `queue` at `now_ms` meets when the
    /// queue is closed: it ends as lost, overflows, or simply waits.
    pub(crate) async fn apply_opening_hours(
        &self,
        record: &ContactRecord,
        queue: &Queue,
        now_ms: i64,
    ) -> Result<(), Error> {
        match arrival(queue, now_ms) {
            Arrival::Open | Arrival::ClosedQueue => Ok(()),
            Arrival::ClosedReject => self.reject_arrival(record, EndReason::Closed, now_ms).await,
            Arrival::ClosedOverflow(target) => {
                let moved = self.move_to(&record.tenant, &record.contact, &target, TransferReason::Closed).await;
                match moved {
                    Ok(_) => Ok(()),
                    Err(error) if error.code == ErrorCode::FailedPrecondition => Ok(()),
                    // The overflow queue was deleted: a retry could never
                    // succeed (and would hold up the partition), so the
                    // contact ends as at a closed queue without overflow.
                    Err(error) if error.code == ErrorCode::NotFound => {
                        tracing::warn!(tenant = %record.tenant, queue = %record.queue, overflow = %target, "overflow queue of a closed queue is missing, contact rejected");
                        self.reject_arrival(record, EndReason::Closed, now_ms).await
                    }
                    Err(error) => Err(error),
                }
            }
        }
    }

    /// Ends a contact that arrived where it may not wait: at a closed
    /// queue (reason CLOSED) or past its tenant's limit on waiting contacts
    /// (TENANT_QUEUE_FULL).
    pub(crate) async fn reject_arrival(
        &self,
        record: &ContactRecord,
        reason: EndReason,
        now_ms: i64,
    ) -> Result<(), Error> {
        let reject = |record: &mut ContactRecord| reject_arrival(record, reason, now_ms);
        let ended = self.state.change(&record.tenant, &record.contact, now_ms, &reject, &events::abandoned).await;
        // Already offered or ended by a faster replica: nothing to do.
        if unless_resolved_meanwhile(ended)?.is_some() {
            tracing::info!(tenant = %record.tenant, contact = %record.contact, queue = %record.queue, reason = ?reason, "arrival refused, contact ended");
        }
        Ok(())
    }

    /// Ends `record` (just queued) if more of its tenant's contacts now wait
    /// than the operator's `max_waiting_contacts` allows; true if it did.
    pub(crate) async fn refuse_over_waiting_limit(&self, record: &ContactRecord, now_ms: i64) -> Result<bool, Error> {
        let Some(limit) = self.tenant_policy(&record.tenant).limits.max_waiting_contacts else {
            return Ok(false);
        };
        let waiting = self.state.gauges().await?.waiting_by_tenant.get(&record.tenant).copied().unwrap_or(0);
        if waiting <= i64::from(limit) {
            return Ok(false);
        }
        tracing::warn!(tenant = %record.tenant, contact = %record.contact, waiting, limit, "tenant's waiting limit reached, contact refused");
        self.reject_arrival(record, EndReason::TenantQueueFull, now_ms).await?;
        Ok(true)
    }

    async fn entry_for(
        &self,
        tenant: &TenantId,
        queue_id: &QueueId,
        record: &ContactRecord,
    ) -> Result<Option<QueueEntry>, Error> {
        let Some(queue) = self.queues.get_queue(tenant, queue_id).await? else {
            return Ok(None);
        };
        let last_agent = if queue.preferred_agent_window.is_some() && !record.customer.is_empty() {
            self.state.last_agent(tenant, &record.customer).await?
        } else {
            None
        };
        let entry = queue_entry(queue_id, &queue, self.clock.now_millis(), record.enqueue_ms, last_agent);
        Ok(Some(self.capped(tenant, entry)))
    }

    /// CRM resolved the customer of a contact that arrived without one: the
    /// contact takes it (its later events name it), a waiting one prefers
    /// the customer's last agent as it would have on arrival, and an
    /// answered one's agent becomes the customer's last. A contact routing
    /// no longer holds is left alone.
    pub(crate) async fn on_customer_resolved(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        customer: &str,
    ) -> Result<(), Error> {
        let Some(current) = self.state.get_contact(tenant, contact).await? else {
            tracing::info!(tenant = %tenant, contact = %contact, "customer resolved for a contact routing does not hold");
            return Ok(());
        };
        if !current.customer.is_empty() {
            return Ok(());
        }
        let preference = if current.status == RoutingStatus::Queued {
            self.preference_of(tenant, &current.queue, customer, current.enqueue_ms).await?
        } else {
            None
        };
        let record = self
            .state
            .change(
                tenant,
                contact,
                self.clock.now_millis(),
                &|record| {
                    attach_customer(record, customer, preference.clone());
                    Ok(())
                },
                &no_events,
            )
            .await?;
        tracing::info!(tenant = %tenant, contact = %contact, customer = %record.customer, preferred_agent = ?record.rules.preferred_agent, "customer attached to a contact");
        if let (RoutingStatus::Answered | RoutingStatus::Completed, Some(agent)) = (record.status, &record.agent) {
            // The customer's next contact prefers this agent.
            self.state.remember_agent(tenant, &record.customer, agent).await?;
        }
        // The change's snapshot goes to the journal with the next round.
        self.changed();
        if record.rules.preferred_agent.is_some() {
            self.request_match();
        }
        Ok(())
    }

    /// The customer's last agent and when the preference for it ends (the
    /// queue's window from `arrival_ms`), if the queue prefers it and the
    /// window is still open.
    async fn preference_of(
        &self,
        tenant: &TenantId,
        queue_id: &QueueId,
        customer: &str,
        arrival_ms: i64,
    ) -> Result<Option<(AgentId, i64)>, Error> {
        let Some(queue) = self.queues.get_queue(tenant, queue_id).await? else {
            return Ok(None);
        };
        let window_ms = queue.preferred_agent_window.as_ref().and_then(millis_from_duration).unwrap_or(0);
        let until_ms = arrival_ms.saturating_add(window_ms);
        if window_ms <= 0 || until_ms <= self.clock.now_millis() {
            return Ok(None);
        }
        Ok(self.state.last_agent(tenant, customer).await?.map(|agent| (agent, until_ms)))
    }

    /// Moves a contact into `target` (same tenant), keeping its age. Fails
    /// with NOT_FOUND when the queue does not exist and FAILED_PRECONDITION
    /// when the contact already ended.
    pub async fn move_to(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        target: &QueueId,
        reason: TransferReason,
    ) -> Result<ContactRecord, Error> {
        let current = self
            .state
            .get_contact(tenant, contact)
            .await?
            .ok_or_else(|| Error::not_found(switchboard_core::names::contact_name(tenant, contact)))?;
        let entry = self
            .entry_for(tenant, target, &current)
            .await?
            .ok_or_else(|| Error::not_found(switchboard_core::names::queue_name(tenant, target)))?;
        let now = self.clock.now_millis();
        let events_for = moved_or_ended(reason);
        let record = self
            .state
            .change(tenant, contact, now, &|record| move_to_queue(record, entry.clone()), &events_for)
            .await?;
        tracing::info!(tenant = %tenant, contact = %contact, queue = %target, reason = ?reason, "contact moved to another queue");
        self.changed();
        self.request_match();
        Ok(record)
    }

    /// Hands a contact to one agent, in its current queue.
    pub async fn transfer_to_agent(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
    ) -> Result<ContactRecord, Error> {
        let events_for = moved_or_ended(TransferReason::Requested);
        let record = self
            .state
            .change(tenant, contact, self.clock.now_millis(), &|record| pin_to_agent(record, agent), &events_for)
            .await?;
        tracing::info!(tenant = %tenant, contact = %contact, agent = %agent, "contact transferred to an agent");
        self.changed();
        self.request_match();
        Ok(record)
    }

    /// Marks a waiting contact as a queued callback to `number`.
    pub async fn request_callback(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        number: &str,
    ) -> Result<ContactRecord, Error> {
        let no_events = crate::store::no_events;
        let record = self
            .state
            .change(tenant, contact, self.clock.now_millis(), &|record| request_callback(record, number), &no_events)
            .await?;
        tracing::info!(tenant = %tenant, contact = %contact, "queued callback requested");
        self.changed();
        Ok(record)
    }

    /// Returns the non-voice contacts an agent who went offline was
    /// handling to their queues, keeping their age, so another agent takes
    /// over. A voice call stays with its agent: the telephony leg, not the
    /// desktop, decides whether it is still connected.
    pub(crate) async fn recover_handled(&self, agent: &AgentId) -> Result<(), Error> {
        for held in self.state.handled_by_agent(agent).await? {
            let Some(record) = self.state.get_contact(&held.tenant, &held.contact).await? else {
                continue;
            };
            if record.channel == crate::domain::CHANNEL_VOICE {
                continue;
            }
            match self.move_to(&held.tenant, &held.contact, &record.queue, TransferReason::AgentLost).await {
                Ok(_) => {
                    tracing::info!(tenant = %held.tenant, contact = %held.contact, agent = %agent, "handled contact returned to its queue")
                }
                // Completed or moved meanwhile.
                Err(error) if error.code == ErrorCode::FailedPrecondition => {}
                // Its queue was deleted: it waits with default settings
                // rather than staying with an agent who is gone.
                Err(error) if error.code == ErrorCode::NotFound => {
                    let requeue = |record: &mut ContactRecord| {
                        let entry = queue_entry(
                            &record.queue,
                            &Queue::default(),
                            self.clock.now_millis(),
                            record.enqueue_ms,
                            None,
                        );
                        let entry = self.capped(&record.tenant, entry);
                        move_to_queue(record, entry)
                    };
                    let events_for = moved_or_ended(TransferReason::AgentLost);
                    self.state
                        .change(&held.tenant, &held.contact, self.clock.now_millis(), &requeue, &events_for)
                        .await?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Ends or overflows one contact whose wait ran out.
    async fn expire_one(&self, tenant: &TenantId, contact: &ContactId) -> Result<(), Error> {
        let Some(current) = self.state.get_contact(tenant, contact).await? else {
            return Ok(());
        };
        let target = current.rules.overflow_queue.clone().filter(|target| *target != current.queue);
        let entry = match &target {
            Some(target) => self.entry_for(tenant, target, &current).await?,
            None => None,
        };
        let now = self.clock.now_millis();
        let change = |record: &mut ContactRecord| match (expire_wait(record, now)?, &entry) {
            (WaitOutcome::Overflow(target), Some(entry)) if target == entry.queue => {
                move_to_queue(record, entry.clone())
            }
            // Moved meanwhile to a queue with another overflow: the next
            // sweep decides on what it is now.
            (WaitOutcome::Overflow(_), Some(_)) => {
                Err(Error::failed_precondition(format!("contact `{}` changed its overflow queue", record.contact)))
            }
            // The overflow queue was deleted: the contact is lost rather
            // than stranded.
            (WaitOutcome::Overflow(_), None) => {
                end_unanswered(record, EndReason::MaxWait, now);
                Ok(())
            }
            (WaitOutcome::Lost, _) => Ok(()),
        };
        let record = self.state.change(tenant, contact, now, &change, &moved_or_ended(TransferReason::MaxWait)).await?;
        tracing::info!(tenant = %tenant, contact = %contact, queue = %record.queue, status = record.status.as_str(), "wait deadline reached");
        self.changed();
        self.request_match();
        Ok(())
    }

    /// Ends or overflows every contact whose allowed wait ran out: one
    /// sweep, run on a timer. A contact another replica or an agent got to
    /// first is skipped.
    pub async fn sweep_waits(&self) -> Result<(), Error> {
        let expired = self.state.expired_waits(self.clock.now_millis(), EXPIRED_WAITS_PER_SWEEP).await?;
        for (tenant, contact) in expired {
            // Offered, answered or ended meanwhile, or another replica was first.
            if let Err(error) = unless_resolved_meanwhile(self.expire_one(&tenant, &contact).await) {
                tracing::warn!(tenant = %tenant, contact = %contact, error = %error, "wait expiry failed");
            }
        }
        Ok(())
    }
}
