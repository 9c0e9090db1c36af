//! What routing events do to an agent's live state: wrap-up after a
//! completed contact and its end when the timer runs out, and
//! NOT_RESPONDING after too many offers in a row timed out, and the work
//! each agent holds (offers ringing, contacts answered) for supervisors and
//! for a desktop that reconnects.
//!
//! Every replica also consumes routing events in its own group (to push
//! offers to the sessions it holds), but state changes are made once: by
//! the replicas sharing one consumer group ([`EFFECTS_GROUP`]), which
//! splits partitions between them and keeps each contact's events in order.
//! A redelivered event (after a crash or rebalance) is harmless: each
//! change is a compare-and-set that only applies while the state it was
//! decided on still holds, and a missed offer is counted by its event id,
//! so a redelivered miss counts once.

use std::time::Duration;

use switchboard_core::names::parse_agent;
use switchboard_core::time::{millis_from_duration, millis_from_timestamp};
use switchboard_core::{AgentId, Error};
use switchboard_platform::bus::Delivery;
use switchboard_proto::common::v1::ContactStatus;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::presence::v1::{ActiveContact, AgentState, StateChangeSource};
use switchboard_proto::routing::v1::{ContactCompleted, WithdrawReason, routing_event};

use crate::domain::{is_not_responding, wrap_up_until};
use crate::sessions::PresenceCore;
use crate::store::LiveState;

/// The consumer group all presence replicas share for state side effects.
pub const EFFECTS_GROUP: &str = "presence-effects";
/// How often each replica looks for wrap-ups that ran out.
pub const WRAP_UP_SWEEP_INTERVAL: Duration = Duration::from_millis(100);
const WRAP_UP_SWEEP_BATCH: usize = 1_000;

impl PresenceCore {
    /// The shared consumer's handler.
    pub async fn on_routing_effect(&self, delivery: Delivery) -> Result<(), Error> {
        let Some(Payload::Routing(event)) = delivery.envelope.payload else {
            return Ok(());
        };
        let occurred_ms =
            delivery.envelope.occurred_at.as_ref().map_or_else(|| self.clock.now_millis(), millis_from_timestamp);
        match event.kind {
            Some(routing_event::Kind::Offered(offered)) => {
                let agent = parse_agent(&offered.agent, "offered.agent")?;
                let ringing = ActiveContact {
                    contact: offered.contact,
                    queue: offered.queue,
                    channel: offered.channel,
                    customer: offered.customer,
                    subject: offered.subject,
                    status: ContactStatus::Offered as i32,
                    offer_time: offered.offer_time,
                    expire_time: offered.expire_time,
                    answer_time: None,
                    callback_number: offered.callback_number,
                    session_url: offered.session_url,
                    conversation: offered.conversation,
                };
                self.live.put_active_contact(&agent, &ringing).await
            }
            Some(routing_event::Kind::Answered(answered)) => {
                let agent = parse_agent(&answered.agent, "answered.agent")?;
                // The offer carried the subject; an answer whose offer this
                // group never saw (it started later) is recorded without it.
                let offered = self.live.active_contact(&agent, &answered.contact).await?;
                let handling = ActiveContact {
                    contact: answered.contact,
                    queue: answered.queue,
                    channel: answered.channel,
                    customer: answered.customer,
                    status: ContactStatus::Answered as i32,
                    expire_time: None,
                    answer_time: answered.answer_time,
                    ..offered.unwrap_or_default()
                };
                self.live.offer_answered(&agent, &handling).await
            }
            Some(routing_event::Kind::OfferWithdrawn(withdrawn)) => {
                let agent = parse_agent(&withdrawn.agent, "offer_withdrawn.agent")?;
                self.live.remove_active_contact(&agent, &withdrawn.contact).await?;
                let seen = self.live.take_offer_seen(&agent, &withdrawn.contact).await?;
                if withdrawn.reason != WithdrawReason::TimedOut as i32 {
                    return Ok(());
                }
                // An offer that never reached the desktop (presence or the
                // agent's connection was down) is not the agent's miss.
                if !seen {
                    tracing::info!(agent = %agent, contact = %withdrawn.contact, "offer timed out unseen, not counted as missed");
                    return Ok(());
                }
                self.count_missed_offer(&agent, &delivery.envelope.event_id, occurred_ms).await
            }
            Some(routing_event::Kind::Completed(completed)) => {
                let agent = parse_agent(&completed.agent, "completed.agent")?;
                self.live.remove_active_contact(&agent, &completed.contact).await?;
                self.begin_wrap_up(&agent, &completed, occurred_ms).await
            }
            // Transferred away from its agent: no longer the agent's work.
            Some(routing_event::Kind::Transferred(transferred)) if !transferred.from_agent.is_empty() => {
                let agent = parse_agent(&transferred.from_agent, "transferred.from_agent")?;
                self.live.remove_active_contact(&agent, &transferred.contact).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Counts a timed-out offer; at the threshold an AVAILABLE agent that
    /// has not chosen a state since goes NOT_RESPONDING, until it (or a
    /// supervisor) sets another state.
    async fn count_missed_offer(&self, agent_id: &AgentId, event_id: &str, occurred_ms: i64) -> Result<(), Error> {
        let missed = self.live.record_missed_offer(agent_id, event_id).await?;
        if !is_not_responding(missed, self.missed_offers_threshold) {
            return Ok(());
        }
        let next = LiveState::new(AgentState::NotResponding, "", self.clock.now_millis());
        let (previous, recorded) =
            match self.live.set_state_if(agent_id, AgentState::Available, occurred_ms, &next).await? {
                Some(previous) => (previous.state, next),
                None => {
                    // A retry after the change applied but its event was not
                    // published (a duplicate event is harmless).
                    let current = self.live.get_state(agent_id).await?;
                    if current.state != AgentState::NotResponding || current.since_ms < occurred_ms {
                        return Ok(());
                    }
                    (AgentState::Available, current)
                }
            };
        tracing::info!(agent = %agent_id, missed, "agent missed too many offers, not responding");
        let agent = self.agent_or_bare(agent_id).await?;
        self.publish_state(&agent, agent_id, &recorded, previous, StateChangeSource::Platform).await
    }

    /// Puts the agent that completed a contact into WRAP_UP for the queue's
    /// wrap-up time, if it is AVAILABLE and has not changed its state since
    /// the contact ended (choosing a state after that ends wrap-up early).
    async fn begin_wrap_up(
        &self,
        agent_id: &AgentId,
        completed: &ContactCompleted,
        occurred_ms: i64,
    ) -> Result<(), Error> {
        let wrap_up_ms = completed.wrap_up_time.as_ref().and_then(millis_from_duration).unwrap_or(0);
        let ended_ms = completed.end_time.as_ref().map_or(occurred_ms, millis_from_timestamp);
        let now = self.clock.now_millis();
        let Some(until) = wrap_up_until(ended_ms, wrap_up_ms, now) else {
            return Ok(());
        };
        let next = LiveState::wrap_up(now, until);
        let (previous, recorded) =
            match self.live.set_state_if(agent_id, AgentState::Available, ended_ms, &next).await? {
                Some(previous) => (previous.state, next),
                None => {
                    // A retry after the change applied but its event was not
                    // published: the wrap-up end is the same on every attempt.
                    let current = self.live.get_state(agent_id).await?;
                    if current.state != AgentState::WrapUp || current.wrap_up_until_ms != until {
                        return Ok(());
                    }
                    (AgentState::Available, current)
                }
            };
        let agent = self.agent_or_bare(agent_id).await?;
        tracing::info!(agent = %agent_id, contact = %completed.contact, wrap_up_ms, "wrap-up started");
        self.publish_state(&agent, agent_id, &recorded, previous, StateChangeSource::Platform).await
    }

    /// Returns agents whose wrap-up ran out to AVAILABLE, on whichever
    /// replica notices first: one sweep, run on a timer.
    pub async fn end_expired_wrap_ups(&self) -> Result<(), Error> {
        let expired = self.live.expired_wrap_ups(self.clock.now_millis(), WRAP_UP_SWEEP_BATCH).await?;
        for (agent, until) in expired {
            if let Err(error) = self.end_wrap_up(&agent, until).await {
                tracing::warn!(agent = %agent, error = %error, "failed to end wrap-up, retrying");
            }
        }
        Ok(())
    }

    /// Ends the wrap-up that was to end at `until_ms`, if it is still the
    /// agent's state: one the agent ended early, or a newer wrap-up (which
    /// began after `until_ms`), is left alone.
    async fn end_wrap_up(&self, agent_id: &AgentId, until_ms: i64) -> Result<(), Error> {
        let next = LiveState::new(AgentState::Available, "", self.clock.now_millis());
        let Some(previous) = self.live.set_state_if(agent_id, AgentState::WrapUp, until_ms, &next).await? else {
            return Ok(());
        };
        tracing::info!(agent = %agent_id, "wrap-up ended");
        let agent = self.agent_or_bare(agent_id).await?;
        // The change is recorded and no longer listed as a running wrap-up,
        // so its event is retried here rather than by the next sweep.
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.publish_state(&agent, agent_id, &next, previous.state, StateChangeSource::Platform).await {
                Ok(()) => return Ok(()),
                Err(error) if backoff > Duration::from_secs(5) => return Err(error),
                Err(error) => {
                    tracing::warn!(agent = %agent_id, error = %error, "publishing the end of wrap-up failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}
