//! The routing engine: turns contact and presence events into queue
//! entries and agent availability, matches waiting contacts to agents,
//! sweeps expired offers, and relays every outcome to the routing topic.
//!
//! Every state change appends its events to the store's outbox in the same
//! atomic step (see `events.rs`); the relay publishes the outbox in order
//! and removes what the broker acknowledged. A crash between a change and
//! its publication therefore delays the event, never loses it, and a
//! change that already happened (a retry) appends nothing new.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use switchboard_core::clock::Clock;
use switchboard_core::event::{customer_resolved_names, envelope_tenant};
use switchboard_core::names::{parse_agent, parse_contact, parse_queue};
use switchboard_core::{AgentId, ContactId, Error, TenantId};
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::{Delivery, EventBus};
use switchboard_platform::credentials::TenantPolicy;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{Contact, contact_event};
use switchboard_proto::presence::v1::{AgentState, AgentStateChanged, presence_event};
use switchboard_proto::routing::v1::WithdrawReason;
use tokio::sync::Notify;

use crate::DEFAULT_OFFER_TIMEOUT_MS;
use crate::domain::rules::QueueEntry;
use crate::domain::{AgentProfile, Completion, ContactRecord, RoutingStatus};
use crate::events;
use crate::queue_config::queue_entry;
use crate::store::journal::RoutingJournal;
use crate::store::{QueueStore, RoutingState};

/// Expired offers returned to their queues per sweep.
const EXPIRED_OFFERS_PER_SWEEP: usize = 256;
pub struct Engine {
    pub state: Arc<dyn RoutingState>,
    pub queues: Arc<dyn QueueStore>,
    /// The durable copy of the state, written by the relay.
    pub journal: Arc<dyn RoutingJournal>,
    pub bus: Arc<dyn EventBus>,
    /// The bus the relay publishes on: deliveries bounded well inside the
    /// relay lease (see `relay.rs`).
    pub(crate) relay_bus: Arc<dyn EventBus>,
    /// Notified when a matching pass may find something to offer.
    pub match_requested: Arc<Notify>,
    /// Notified when the outbox has new events.
    pub relay_requested: Arc<Notify>,
    /// Notified (`notify_waiters`) when the state store is whole again
    /// after a loss, so the intake retries what it could not take in
    /// meanwhile at once, not a backoff step later.
    pub state_restored: Arc<Notify>,
    /// How many rounds this replica's relay has begun (see
    /// [`Engine::relay_once`]).
    pub(crate) relay_rounds_begun: AtomicU64,
    /// Outbox entries this replica's relay published and journaled and has
    /// not removed yet: they leave with its next read of the outbox (see
    /// [`Engine::relay_once`]).
    pub(crate) relayed_unremoved: std::sync::Mutex<Vec<String>>,
    /// The last round this replica's relay finished with the outbox
    /// drained, watched by callers waiting for their change.
    pub(crate) drained: tokio::sync::watch::Sender<crate::relay::Drained>,
    /// Whether the state store held its data at the last look (readiness).
    pub(crate) whole: AtomicBool,
    /// Whether this replica's relay held the outbox's lease at its last
    /// round: callers waiting for their change then need not poll.
    pub(crate) relay_leading: AtomicBool,
    /// Whether the outbox has changes whose relay waits for the matching
    /// pass asked for with them (see [`Engine::changed_then_match`]).
    pub(crate) relay_after_match: AtomicBool,
    /// The state's generation as read at some moment before now, so a
    /// transition need not read it first (see [`Engine::durably`]);
    /// forgotten when a transition or its wait fails.
    pub(crate) known_generation: std::sync::Mutex<Option<String>>,
    /// The clock every replica agrees on: offer expiry, wait deadlines and
    /// agents' wrap-up holds are written by one replica and judged by another.
    pub(crate) clock: Clock,
    pub(crate) reported_tenants: crate::gauges::ReportedTenants,
    /// Where the operator's tenant weights and limits come from; without
    /// it every tenant has weight 1 and no limits.
    pub(crate) access: Option<Arc<AccessControl>>,
}

/// An agent's per-tenant skill levels from its presence event.
fn tenant_skills(skills: &[switchboard_proto::common::v1::Skill]) -> Result<BTreeMap<(TenantId, String), i32>, Error> {
    let mut levels = BTreeMap::new();
    for skill in skills.iter().filter(|skill| !skill.tenant.is_empty()) {
        let tenant = switchboard_core::names::parse_tenant(&skill.tenant, "state_changed.skills.tenant")?;
        levels.insert((tenant, skill.name.clone()), skill.level);
    }
    Ok(levels)
}

impl Engine {
    pub fn new(
        state: Arc<dyn RoutingState>,
        queues: Arc<dyn QueueStore>,
        journal: Arc<dyn RoutingJournal>,
        bus: Arc<dyn EventBus>,
    ) -> Result<Engine, Error> {
        let relay_bus = bus.bounded(crate::relay::RELAY_DELIVERY_TIMEOUT)?.unwrap_or_else(|| bus.clone());
        Ok(Engine {
            state,
            queues,
            journal,
            bus,
            relay_bus,
            match_requested: Arc::new(Notify::new()),
            relay_requested: Arc::new(Notify::new()),
            state_restored: Arc::new(Notify::new()),
            relay_rounds_begun: AtomicU64::new(0),
            relayed_unremoved: std::sync::Mutex::new(Vec::new()),
            drained: tokio::sync::watch::Sender::new(crate::relay::Drained::default()),
            whole: AtomicBool::new(false),
            relay_leading: AtomicBool::new(false),
            relay_after_match: AtomicBool::new(false),
            known_generation: std::sync::Mutex::new(None),
            clock: Clock::system(),
            reported_tenants: crate::gauges::ReportedTenants::default(),
            access: None,
        })
    }

    /// The engine honouring the tenant weights and limits `access` knows.
    pub fn with_access(mut self, access: Arc<AccessControl>) -> Engine {
        self.access = Some(access);
        self
    }

    /// `entry` held to `tenant`'s caps on offer timeout and wrap-up.
    pub(crate) fn capped(&self, tenant: &TenantId, entry: QueueEntry) -> QueueEntry {
        let limits = self.tenant_policy(tenant).limits;
        entry.capped(limits.max_offer_timeout_ms, limits.max_wrap_up_ms)
    }

    /// The operator's weight and limits for `tenant`.
    pub fn tenant_policy(&self, tenant: &TenantId) -> TenantPolicy {
        self.access.as_ref().map(|access| access.tenant_policy(tenant)).unwrap_or_default()
    }

    /// The engine reading `clock` (the kit's, shared through Redis).
    pub fn with_clock(mut self, clock: Clock) -> Engine {
        self.clock = clock;
        self
    }

    pub fn request_match(&self) {
        self.match_requested.notify_one();
    }

    /// The outbox has new events.
    pub(crate) fn changed(&self) {
        self.relay_requested.notify_one();
    }

    /// The outbox has new events and a matching pass may offer because of
    /// them: the relay is woken once that pass is done, so a new contact's
    /// queued and offered events go out in one round (one produce and one
    /// journal write instead of two each), and the offer does not wait
    /// behind a round that carries only its contact's queueing.
    pub(crate) fn changed_then_match(&self) {
        self.relay_after_match.store(true, Ordering::Release);
        self.request_match();
    }

    /// The consumer's handler for contacts and presence events.
    pub async fn handle(&self, delivery: Delivery) -> Result<(), Error> {
        let tenant = envelope_tenant(&delivery.envelope)?;
        match delivery.envelope.payload {
            Some(Payload::Contact(event)) => {
                let tenant =
                    tenant.ok_or_else(|| Error::invalid_field("envelope.tenant", "contact events need a tenant"))?;
                match event.kind {
                    Some(contact_event::Kind::Created(created)) => {
                        let contact = created.contact.ok_or_else(|| Error::missing_field("created.contact"))?;
                        self.on_contact_created(&tenant, contact).await
                    }
                    Some(contact_event::Kind::Abandoned(abandoned)) => {
                        let (contact_tenant, contact) = parse_contact(&abandoned.contact, "abandoned.contact")?;
                        if contact_tenant != tenant {
                            return Err(Error::invalid_field("abandoned.contact", "belongs to another tenant"));
                        }
                        self.on_customer_left(&tenant, &contact).await
                    }
                    Some(contact_event::Kind::CustomerResolved(resolved)) => {
                        let (contact, _) = customer_resolved_names(&tenant, &resolved)?;
                        self.on_customer_resolved(&tenant, &contact, &resolved.customer).await
                    }
                    // A conversation's messages and a survey answer change
                    // nothing routing decides.
                    Some(
                        contact_event::Kind::MessageAdded(_)
                        | contact_event::Kind::MessageStatusChanged(_)
                        | contact_event::Kind::SurveyAnswered(_),
                    )
                    | None => Ok(()),
                }
            }
            Some(Payload::Presence(event)) => match event.kind {
                Some(presence_event::Kind::StateChanged(changed)) => self.on_agent_state(changed).await,
                None => Ok(()),
            },
            Some(Payload::Routing(_)) | None => Ok(()),
        }
    }

    async fn on_contact_created(&self, tenant: &TenantId, contact: Contact) -> Result<(), Error> {
        let (contact_tenant, contact_id) = parse_contact(&contact.name, "contact.name")?;
        let (queue_tenant, queue_id) = parse_queue(&contact.queue, "contact.queue")?;
        if contact_tenant != *tenant || queue_tenant != *tenant {
            return Err(Error::invalid_field("contact", "names another tenant than its envelope"));
        }
        // A call that ended in the IVR never reached a queue: there is
        // nothing to route (its abandon follows).
        if contact.ended_in_self_service {
            tracing::info!(tenant = %tenant, contact = %contact_id, "contact ended in self-service, not queued");
            return Ok(());
        }
        // Ingestion checks the queue, but accepts contacts while routing is
        // unreachable (intake stays open): a queue that does not exist, or
        // does not take the contact's channel, ends the contact here as
        // lost, with the reason, once it is recorded as queued (so every
        // reader sees one queued contact end).
        let found = self.queues.get_queue(tenant, &queue_id).await?;
        let refusal = match &found {
            None => Some(crate::domain::EndReason::QueueNotFound),
            Some(queue) if !queue.channels.is_empty() && !queue.channels.contains(&contact.channel) => {
                Some(crate::domain::EndReason::ChannelNotAccepted)
            }
            Some(_) => None,
        };
        let queue = found.unwrap_or_default();
        let now = self.clock.now_millis();
        let enqueue_ms = contact.create_time.as_ref().map_or(now, switchboard_core::time::millis_from_timestamp);
        // A contact routing does not know that was created before the
        // retention period ended long ago and expired (a non-terminal one is
        // never expired, and a lost one comes back from the journal): a
        // replay of such an old event must not bring it back.
        if enqueue_ms < now - crate::store::redis::TERMINAL_RETENTION_MS
            && self.state.get_contact(tenant, &contact_id).await?.is_none()
        {
            tracing::warn!(tenant = %tenant, contact = %contact_id, "replayed creation older than the retention, ignored");
            return Ok(());
        }
        let last_agent = if queue.preferred_agent_window.is_some() && !contact.customer.is_empty() {
            self.state.last_agent(tenant, &contact.customer).await?
        } else {
            None
        };
        let entry = self.capped(tenant, queue_entry(&queue_id, &queue, now, enqueue_ms, last_agent));
        let mut record = ContactRecord {
            tenant: tenant.clone(),
            contact: contact_id.clone(),
            queue: queue_id.clone(),
            channel: contact.channel,
            customer: contact.customer.clone(),
            subject: contact.subject.clone(),
            session_url: contact.session_url.clone(),
            conversation: contact.attributes.get("conversation").cloned().unwrap_or_default(),
            priority: contact.priority.clamp(0, 100),
            required_skills: Vec::new(),
            strategy: crate::domain::Strategy::LongestIdle,
            priority_step_ms: crate::domain::STRICT_PRIORITY_STEP_MS,
            enqueue_ms,
            offer_timeout_ms: DEFAULT_OFFER_TIMEOUT_MS,
            status: RoutingStatus::Queued,
            agent: None,
            last_offered: None,
            offer_expire_ms: 0,
            answer_ms: 0,
            end_ms: 0,
            rules: crate::domain::QueueRules::default(),
            revision: 0,
        };
        crate::domain::rules::move_to_queue(&mut record, entry)?;
        let added = self.state.enqueue(&record, &[events::queued(&record, &queue)]).await?;
        tracing::info!(tenant = %tenant, contact = %contact_id, queue = %queue_id, added, "contact queued");
        // Refused again on a redelivery too: a first attempt may have died
        // between the two steps (a contact that moved on is left alone).
        if let Some(reason) = refusal {
            self.reject_arrival(&record, reason, now).await?;
        } else if added && !self.refuse_over_waiting_limit(&record, now).await? {
            self.apply_opening_hours(&record, &queue, now).await?;
        }
        self.changed_then_match();
        Ok(())
    }

    async fn on_customer_left(&self, tenant: &TenantId, contact: &ContactId) -> Result<(), Error> {
        let abandoned = self.state.abandon(tenant, contact, self.clock.now_millis(), &events::abandoned).await;
        let (_, from, _) = match abandoned {
            Ok(outcome) => outcome,
            Err(error) if error.code == switchboard_core::ErrorCode::FailedPrecondition => {
                tracing::info!(tenant = %tenant, contact = %contact, "customer left after being answered, nothing to abandon");
                return Ok(());
            }
            Err(error) if error.code == switchboard_core::ErrorCode::NotFound => {
                tracing::warn!(tenant = %tenant, contact = %contact, "customer left a contact routing never queued");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        tracing::info!(tenant = %tenant, contact = %contact, from = ?from, "contact abandoned");
        self.changed_then_match();
        Ok(())
    }

    async fn on_agent_state(&self, changed: AgentStateChanged) -> Result<(), Error> {
        let agent = parse_agent(&changed.agent, "state_changed.agent")?;
        let mut tenants = Vec::new();
        for tenant in &changed.tenants {
            tenants.push(switchboard_core::names::parse_tenant(tenant, "state_changed.tenants")?);
        }
        let profile = AgentProfile {
            agent: agent.clone(),
            tenants,
            skills: changed
                .skills
                .iter()
                .filter(|skill| skill.tenant.is_empty())
                .map(|skill| (skill.name.clone(), skill.level))
                .collect(),
            tenant_skills: tenant_skills(&changed.skills)?,
            capacities: changed
                .capacities
                .iter()
                .map(|capacity| (capacity.channel, capacity.max_concurrent))
                .collect::<BTreeMap<_, _>>(),
        };
        // A state this build does not know (a newer presence's) only means
        // "takes no work": never Offline, which takes its answered work away.
        let state = AgentState::try_from(changed.state).unwrap_or_default();
        // Journaled first: a rebuild of the hot state knows every agent.
        self.journal.record_agent(&profile, state).await?;
        self.apply_agent_state(&profile, state).await
    }

    /// What an agent's state means for routing: whether it takes work, and
    /// what becomes of the work it holds.
    pub(crate) async fn apply_agent_state(&self, profile: &AgentProfile, state: AgentState) -> Result<(), Error> {
        let agent = &profile.agent;
        let available = state == AgentState::Available;
        self.state.upsert_agent(profile, available, self.clock.now_millis()).await?;
        tracing::info!(agent = %agent, available, "agent availability updated");
        // An agent in wrap-up takes no new work but may still answer what
        // was already ringing when it finished a contact; away, offline or
        // not responding, its ringing offers go back to their queues.
        let keeps_ringing_offers = state == AgentState::WrapUp;
        if !available && !keeps_ringing_offers {
            for offer in self.state.offers_of_agent(agent).await? {
                // Answered, withdrawn or ended since it was listed: not
                // ringing any more, which is all this wants.
                unless_resolved_meanwhile(
                    self.withdraw_offer(&offer.tenant, &offer.contact, agent, WithdrawReason::AgentUnavailable).await,
                )?;
            }
        }
        if state == AgentState::Offline {
            self.recover_handled(agent).await?;
        }
        self.request_match();
        Ok(())
    }

    async fn withdraw_offer(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
        reason: WithdrawReason,
    ) -> Result<ContactRecord, Error> {
        let now = self.clock.now_millis();
        // A timeout is decided on an earlier view: it may only end an offer
        // that has really expired, never a newer offer of the same contact.
        let expired_by = (reason == WithdrawReason::TimedOut).then_some(now);
        let events_for = |before: &ContactRecord, _after: &ContactRecord| events::withdrawn(before, reason);
        let (holder, record) = self.state.withdraw(tenant, contact, Some(agent), expired_by, now, &events_for).await?;
        tracing::info!(tenant = %tenant, contact = %contact, agent = %holder, reason = ?reason, "offer withdrawn");
        self.changed();
        self.request_match();
        Ok(record)
    }

    /// Returns expired offers to their queue: one sweep, run on a timer.
    pub async fn sweep_offers(&self) -> Result<(), Error> {
        let expired = self.state.expired_offers(self.clock.now_millis(), EXPIRED_OFFERS_PER_SWEEP).await?;
        for offer in expired {
            // Another replica or the agent may have resolved it first.
            let withdrawn =
                self.withdraw_offer(&offer.tenant, &offer.contact, &offer.agent, WithdrawReason::TimedOut).await;
            if let Err(error) = unless_resolved_meanwhile(withdrawn) {
                tracing::warn!(tenant = %offer.tenant, contact = %offer.contact, error = %error, "offer timeout failed");
            }
        }
        Ok(())
    }

    /// Accepts the offer of the contact `seen` shows (as the caller just
    /// read it; see [`RoutingState::accept_seen`]). For [`Engine::durably`],
    /// which wakes the relay once the change is made (a wake here as well
    /// would start a round that the caller cannot count on, and so one
    /// more).
    pub async fn accept(&self, seen: &ContactRecord, agent: &AgentId) -> Result<ContactRecord, Error> {
        let (tenant, contact) = (&seen.tenant, &seen.contact);
        let events_for = |_before: &ContactRecord, after: &ContactRecord| events::answered(after);
        let (applied, record) = self.state.accept_seen(seen, agent, self.clock.now_millis(), &events_for).await?;
        tracing::info!(tenant = %tenant, contact = %contact, agent = %agent, "offer accepted");
        if applied == crate::domain::Applied::Changed {
            // Only for estimates and preferences: a lost update must not
            // fail the answer. Both go out together.
            let remember_agent = async {
                if record.customer.is_empty() {
                    return Ok(());
                }
                // The customer's next contact prefers this agent.
                self.state.remember_agent(tenant, &record.customer, agent).await
            };
            let (paced, remembered) = futures::join!(
                self.state.record_answer(tenant, &record.queue, record.channel, record.answer_ms),
                remember_agent
            );
            if let Err(error) = paced {
                tracing::warn!(tenant = %tenant, contact = %contact, error = %error, "answer pace not recorded");
            }
            if let Err(error) = remembered {
                tracing::warn!(tenant = %tenant, contact = %contact, error = %error, "last agent not remembered");
            }
        }
        Ok(record)
    }

    pub async fn reject(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        agent: &AgentId,
    ) -> Result<ContactRecord, Error> {
        self.withdraw_offer(tenant, contact, agent, WithdrawReason::Rejected).await
    }

    /// Completes the contact; the event carries its queue's wrap-up time (a
    /// rule the record took from its queue), so presence can start the
    /// agent's wrap-up without a queue lookup, and the same step holds the
    /// agent for it, so no offer reaches the agent before presence reports
    /// the wrap-up. For [`Engine::durably`], which wakes the relay.
    pub async fn complete(
        &self,
        seen: &ContactRecord,
        agent: &AgentId,
        disposition: &str,
        resolved: bool,
    ) -> Result<ContactRecord, Error> {
        let (tenant, contact) = (&seen.tenant, &seen.contact);
        let events_for =
            |_before: &ContactRecord, after: &ContactRecord| events::completed(after, disposition, resolved);
        let completion = Completion { disposition: disposition.to_owned(), resolved };
        let now = self.clock.now_millis();
        let (_, record) = self.state.complete_seen(seen, agent, &completion, now, &events_for).await?;
        tracing::info!(tenant = %tenant, contact = %contact, agent = %agent, disposition, resolved, "contact completed");
        self.request_match();
        Ok(record)
    }
}

/// `outcome` of a change decided on an earlier view (a listed offer, an
/// expired wait), with FAILED_PRECONDITION, the contact moved on meanwhile
/// (another replica or an agent got there first), as `None`.
pub(crate) fn unless_resolved_meanwhile<T>(outcome: Result<T, Error>) -> Result<Option<T>, Error> {
    match outcome {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.code == switchboard_core::ErrorCode::FailedPrecondition => Ok(None),
        Err(error) => Err(error),
    }
}
