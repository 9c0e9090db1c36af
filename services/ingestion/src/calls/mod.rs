//! Calls of `cti` channels: a call's stages (IVR → queued → answered ⇄ on
//! hold → ended) as the PBX reports them, the contact each needs, and the
//! agent routing chose. [`apply`] is the pure state machine: stages only
//! move forward, so a repeated or late event changes nothing, and each step
//! says what must happen to the call's contact ([`Effect`]) before the new
//! state is stored. The store ([`CallStore`]) keeps calls by (tenant,
//! channel, call id), with a revision for compare-and-set, and the voice
//! endpoints of agents as presence announces them.

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod memory;
pub mod postgres;

use async_trait::async_trait;
use switchboard_core::identity::Identity;
use switchboard_core::names::{agent_name, contact_name};
use switchboard_core::time::timestamp_from_millis;
use switchboard_core::{AgentId, ChannelId, ContactId, Error, QueueId, TenantId};
use switchboard_proto::ingestion::v1 as proto;

use crate::channels::cti::{CallEvent, CallEventKind, HangupCause};

/// Where a call has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Ivr,
    Queued,
    Answered,
    /// On hold since this instant.
    OnHold {
        since_ms: i64,
    },
    Ended {
        at_ms: i64,
        cause: HangupCause,
    },
}

/// One call as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub tenant: TenantId,
    pub channel_id: ChannelId,
    pub call_id: String,
    pub from: Identity,
    pub to: String,
    pub stage: Stage,
    /// The contact, once the call was queued (or ended in the IVR).
    pub contact: Option<ContactId>,
    /// The agent routing offered the call to, or that answered it.
    pub agent: Option<AgentId>,
    pub created_ms: i64,
    pub answered_ms: Option<i64>,
    pub held_ms: i64,
    /// The caller hung up in the IVR, before any queue.
    pub ended_in_ivr: bool,
    /// Transfers, in order: (target, when).
    pub transfers: Vec<(String, i64)>,
}

/// What must happen to the call's contact before a step is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The caller reached a queue: create the contact (routing queues it);
    /// `None` is the channel's queue.
    Enqueue {
        queue: Option<QueueId>,
    },
    /// The caller left a queue unanswered: abandon the contact.
    AbandonInQueue,
    /// The caller left the IVR: record a contact that ended in
    /// self-service (never queued) and abandon it.
    EndInIvr,
}

/// The outcome of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Already applied, or too late for the call's stage.
    Unchanged,
    Changed {
        next: Box<CallRecord>,
        effect: Effect,
    },
}

/// A call's first record, from its NEW_CALL event; `None` for any other.
pub fn new_call(tenant: &TenantId, channel_id: &ChannelId, event: &CallEvent, now_ms: i64) -> Option<CallRecord> {
    let CallEventKind::NewCall { from, to } = &event.kind else { return None };
    Some(CallRecord {
        tenant: tenant.clone(),
        channel_id: channel_id.clone(),
        call_id: event.call_id.clone(),
        from: from.clone(),
        to: to.clone(),
        stage: Stage::Ivr,
        contact: None,
        agent: None,
        created_ms: event.at_ms.unwrap_or(now_ms),
        answered_ms: None,
        held_ms: 0,
        ended_in_ivr: false,
        transfers: Vec::new(),
    })
}

/// Applies `event` to `call`.
pub fn apply(call: &CallRecord, event: &CallEvent, now_ms: i64) -> Step {
    let at_ms = event.at_ms.unwrap_or(now_ms);
    let changed = |next: CallRecord, effect: Effect| Step::Changed { next: Box::new(next), effect };
    match (&event.kind, call.stage) {
        (CallEventKind::Queued { queue }, Stage::Ivr) => {
            changed(CallRecord { stage: Stage::Queued, ..call.clone() }, Effect::Enqueue { queue: queue.clone() })
        }
        (CallEventKind::Answered, Stage::Ivr | Stage::Queued) => {
            changed(CallRecord { stage: Stage::Answered, answered_ms: Some(at_ms), ..call.clone() }, Effect::None)
        }
        (CallEventKind::Hold, Stage::Answered) => {
            changed(CallRecord { stage: Stage::OnHold { since_ms: at_ms }, ..call.clone() }, Effect::None)
        }
        (CallEventKind::Unhold, Stage::OnHold { since_ms }) => changed(
            CallRecord { stage: Stage::Answered, held_ms: call.held_ms + (at_ms - since_ms).max(0), ..call.clone() },
            Effect::None,
        ),
        (CallEventKind::Transfer { target }, Stage::Answered | Stage::OnHold { .. }) => {
            let transfer = (target.clone(), at_ms);
            if call.transfers.contains(&transfer) {
                return Step::Unchanged;
            }
            let mut transfers = call.transfers.clone();
            transfers.push(transfer);
            changed(CallRecord { transfers, ..call.clone() }, Effect::None)
        }
        (CallEventKind::Hangup { cause }, stage) => {
            let ended = Stage::Ended { at_ms, cause: *cause };
            match stage {
                Stage::Ended { .. } => Step::Unchanged,
                Stage::Ivr => {
                    changed(CallRecord { stage: ended, ended_in_ivr: true, ..call.clone() }, Effect::EndInIvr)
                }
                Stage::Queued => changed(CallRecord { stage: ended, ..call.clone() }, Effect::AbandonInQueue),
                Stage::Answered => changed(CallRecord { stage: ended, ..call.clone() }, Effect::None),
                Stage::OnHold { since_ms } => changed(
                    CallRecord { stage: ended, held_ms: call.held_ms + (at_ms - since_ms).max(0), ..call.clone() },
                    Effect::None,
                ),
            }
        }
        _ => Step::Unchanged,
    }
}

impl CallRecord {
    /// The call as the API answers, with the agent's endpoint if known.
    pub fn to_proto(&self, agent_endpoint: &str) -> proto::Call {
        let (stage, end_time, end_cause) = match self.stage {
            Stage::Ivr => (proto::CallStage::Ivr, None, HangupCause::Unspecified),
            Stage::Queued => (proto::CallStage::Queued, None, HangupCause::Unspecified),
            Stage::Answered => (proto::CallStage::Answered, None, HangupCause::Unspecified),
            Stage::OnHold { .. } => (proto::CallStage::OnHold, None, HangupCause::Unspecified),
            Stage::Ended { at_ms, cause } => (proto::CallStage::Ended, Some(timestamp_from_millis(at_ms)), cause),
        };
        proto::Call {
            name: call_name(&self.tenant, &self.channel_id, &self.call_id),
            call_id: self.call_id.clone(),
            stage: stage as i32,
            from: self.from.value.clone(),
            to: self.to.clone(),
            contact: self.contact.as_ref().map(|contact| contact_name(&self.tenant, contact)).unwrap_or_default(),
            agent: self.agent.as_ref().map(agent_name).unwrap_or_default(),
            agent_endpoint: agent_endpoint.to_owned(),
            create_time: Some(timestamp_from_millis(self.created_ms)),
            answer_time: self.answered_ms.map(timestamp_from_millis),
            end_time,
            end_cause: end_cause.to_proto() as i32,
            hold_duration: Some(prost_types::Duration {
                seconds: self.held_ms / 1000,
                nanos: i32::try_from((self.held_ms % 1000) * 1_000_000).unwrap_or(0),
            }),
            ended_in_ivr: self.ended_in_ivr,
            transfers: self.transfers.iter().map(|(target, _)| target.clone()).collect(),
        }
    }
}

/// `tenants/{tenant}/channels/{channel}/calls/{call_id}`.
pub fn call_name(tenant: &TenantId, channel_id: &ChannelId, call_id: &str) -> String {
    format!("tenants/{tenant}/channels/{channel_id}/calls/{call_id}")
}

/// A call as stored, with the revision an update must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCall {
    pub call: CallRecord,
    pub revision: i64,
}

/// Calls by (tenant, channel, call id), and agents' voice endpoints.
#[async_trait]
pub trait CallStore: Send + Sync + 'static {
    /// Stores a new call at revision 1; false when the call exists.
    async fn insert(&self, call: &CallRecord) -> Result<bool, Error>;
    async fn get(&self, tenant: &TenantId, channel_id: &ChannelId, call_id: &str) -> Result<Option<StoredCall>, Error>;
    /// Replaces the call if it is still at `revision`; false when another
    /// update came first.
    async fn update(&self, call: &CallRecord, revision: i64) -> Result<bool, Error>;
    /// Records (empty: forgets) the agent's voice endpoint.
    async fn set_endpoint(&self, agent: &AgentId, endpoint: &str) -> Result<(), Error>;
    /// The agent's voice endpoint, empty when unknown.
    async fn endpoint(&self, agent: &AgentId) -> Result<String, Error>;

    /// Removes every call of `tenant` (a deleted tenant); idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}

#[cfg(test)]
mod tests;
