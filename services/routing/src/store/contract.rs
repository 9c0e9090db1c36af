//! The contract both routing-state stores pass, and (re-exported from
//! `differential.rs`) the check that replays one random operation sequence
//! on two stores and demands identical decisions. Run against memory in
//! unit tests and against Redis in `tests/redis_store.rs`.

use std::collections::BTreeMap;

use switchboard_core::{AgentId, ContactId, Error, ErrorCode, QueueId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::routing::v1::Queue;

pub use super::differential::differential;
pub use super::erasure_contract::{erasure_contract, queue_store_erasure_contract};
pub use super::shared_view_contract::shared_view_contract;
pub use super::statistics_contract::{answer_pace_contract, fair_shares_contract};
use super::{QueueStore, RoutingState, no_events};
use crate::domain::{AbandonedFrom, AgentProfile, Applied, CHANNEL_VOICE, Completion, ContactRecord, RoutingStatus};

const CHAT: i32 = 3;

pub(super) fn check(condition: bool, what: &str) -> Result<(), Error> {
    if condition { Ok(()) } else { Err(Error::internal(format!("routing store contract broken: {what}"))) }
}

fn id<T>(parsed: Result<T, Error>) -> Result<T, Error> {
    parsed
}

/// How the contract's agents complete contacts.
pub fn sample_completion() -> Completion {
    Completion { disposition: "resolved".to_owned(), resolved: true }
}

pub fn sample_record(
    tenant: &TenantId,
    queue: &QueueId,
    channel: i32,
    priority: i32,
    enqueue_ms: i64,
) -> ContactRecord {
    ContactRecord {
        tenant: tenant.clone(),
        contact: ContactId::generate(),
        queue: queue.clone(),
        channel,
        customer: format!("tenants/{tenant}/customers/cu_1"),
        subject: "order status".to_owned(),
        session_url: String::new(),
        conversation: String::new(),
        priority,
        required_skills: Vec::new(),
        strategy: crate::domain::Strategy::LongestIdle,
        priority_step_ms: crate::domain::STRICT_PRIORITY_STEP_MS,
        enqueue_ms,
        offer_timeout_ms: 30_000,
        status: RoutingStatus::Queued,
        agent: None,
        last_offered: None,
        offer_expire_ms: 0,
        answer_ms: 0,
        end_ms: 0,
        rules: crate::domain::QueueRules::default(),
        revision: 0,
    }
}

pub fn sample_profile(agent: &AgentId, tenants: &[&TenantId], chat: i32, voice: i32) -> AgentProfile {
    AgentProfile {
        agent: agent.clone(),
        tenants: tenants.iter().map(|tenant| (*tenant).clone()).collect(),
        skills: BTreeMap::new(),
        tenant_skills: BTreeMap::new(),
        capacities: BTreeMap::from([(CHAT, chat), (CHANNEL_VOICE, voice)]),
    }
}

/// The life of contacts through one store: idempotent enqueue, ordering,
/// capacity, offers and their end, terminal states.
pub async fn routing_state_contract(state: &dyn RoutingState) -> Result<(), Error> {
    let acme = id(TenantId::parse("acme", "t"))?;
    let globex = id(TenantId::parse("globex", "t"))?;
    let support = id(QueueId::parse("support", "q"))?;
    let alice = id(AgentId::parse("alice", "a"))?;
    let bob = id(AgentId::parse("bob", "a"))?;

    let old = sample_record(&acme, &support, CHAT, 0, 1_000);
    let young = sample_record(&acme, &support, CHAT, 0, 2_000);
    let urgent = sample_record(&acme, &support, CHAT, 50, 3_000);
    for record in [&old, &young, &urgent] {
        check(state.enqueue(record, &[]).await?, "a new contact is enqueued")?;
    }
    check(!state.enqueue(&old, &[]).await?, "enqueue is idempotent")?;
    check(state.position(&urgent).await? == 1, "higher priority waits first")?;
    check(state.position(&old).await? == 2 && state.position(&young).await? == 3, "older waits before younger")?;

    state.upsert_agent(&sample_profile(&alice, &[&acme], 1, 1), true, 10).await?;
    let mut bob_profile = sample_profile(&bob, &[&globex], 2, 0);
    bob_profile.skills.insert("billing".to_owned(), 2);
    bob_profile.tenant_skills.insert((globex.clone(), "billing".to_owned()), 5);
    state.upsert_agent(&bob_profile, true, 5).await?;
    let snapshot = state.snapshot(10).await?;
    let stored_bob = snapshot.agents.iter().find(|agent| agent.profile.agent == bob);
    check(stored_bob.is_some_and(|agent| agent.profile == bob_profile), "profiles with tenant skills round-trip")?;
    check(snapshot.waiting.len() == 3 && snapshot.agents.len() == 2, "snapshot holds waiting contacts and agents")?;

    check(!state.reserve(&urgent, &bob, 40_000, &[]).await?, "an agent never gets another tenant's contact")?;
    check(state.reserve(&urgent, &alice, 40_000, &[]).await?, "reservation succeeds")?;
    check(!state.reserve(&urgent, &alice, 40_000, &[]).await?, "a contact is offered to one agent at a time")?;
    check(!state.reserve(&old, &alice, 40_000, &[]).await?, "chat capacity 1 is never exceeded")?;
    check(state.position(&old).await? == 1, "an offered contact leaves the waiting line")?;

    let error = state.accept(&acme, &urgent.contact, &bob, 20, &no_events).await.err();
    check(error.is_some_and(|error| error.code == ErrorCode::FailedPrecondition), "only the offered agent accepts")?;
    let (holder, withdrawn) = state.withdraw(&acme, &urgent.contact, Some(&alice), None, 25, &no_events).await?;
    check(holder == alice && withdrawn.status == RoutingStatus::Queued, "a withdrawn offer returns to the queue")?;
    check(state.position(&urgent).await? == 1, "a withdrawn contact keeps its original place")?;
    let stored = state.get_contact(&acme, &urgent.contact).await?;
    check(
        stored.is_some_and(|stored| stored.agent.is_none() && stored.last_offered.as_ref() == Some(&alice)),
        "a withdrawn contact remembers whom it was last offered to",
    )?;

    check(state.reserve(&withdrawn, &alice, 50, &[]).await?, "re-offer after withdrawal")?;
    let early = state.withdraw(&acme, &urgent.contact, Some(&alice), Some(49), 49, &no_events).await.err();
    check(
        early.is_some_and(|error| error.code == ErrorCode::FailedPrecondition),
        "an unexpired offer does not time out",
    )?;
    let expired = state.expired_offers(60, 10).await?;
    check(expired.len() == 1 && expired[0].contact == urgent.contact, "expired offers are found")?;
    check(state.offers_of_agent(&alice).await?.len() == 1, "offers of an agent are found")?;
    let (applied, record) = state.accept(&acme, &urgent.contact, &alice, 55, &no_events).await?;
    check(applied == Applied::Changed && record.answer_ms == 55, "accept answers the contact")?;
    check(state.offers_of_agent(&alice).await?.is_empty(), "an answered contact is no offer")?;
    let handled = state.handled_by_agent(&alice).await?;
    check(handled.len() == 1 && handled[0].contact == urgent.contact, "handled contacts of an agent are found")?;
    let (applied, _) = state.accept(&acme, &urgent.contact, &alice, 56, &no_events).await?;
    check(applied == Applied::AlreadyDone, "a retried accept changes nothing")?;
    check(state.expired_offers(1_000_000, 10).await?.is_empty(), "an answered contact has no offer")?;
    let abandon_answered = state.abandon(&acme, &urgent.contact, 57, &no_events).await.err();
    check(
        abandon_answered.is_some_and(|error| error.code == ErrorCode::FailedPrecondition),
        "answered is not abandoned",
    )?;
    check(!state.reserve(&old, &alice, 90_000, &[]).await?, "an agent at capacity gets nothing more")?;
    let (applied, record) =
        state.complete(&acme, &urgent.contact, &alice, &sample_completion(), 70, &no_events).await?;
    check(applied == Applied::Changed && record.status == RoutingStatus::Completed, "complete ends the contact")?;
    check(state.handled_by_agent(&alice).await?.is_empty(), "a completed contact is no longer handled")?;
    check(state.reserve(&old, &alice, 90_000, &[]).await?, "completion frees the agent's capacity")?;

    let (applied, from, record) = state.abandon(&acme, &old.contact, 80, &no_events).await?;
    check(applied == Applied::Changed && from == Some(AbandonedFrom::Offer(alice.clone())), "abandon while ringing")?;
    check(record.status == RoutingStatus::Abandoned, "abandoned is terminal")?;
    check(state.offers_of_agent(&alice).await?.is_empty(), "abandon ends the offer")?;
    let (_, from, _) = state.abandon(&acme, &young.contact, 81, &no_events).await?;
    check(from == Some(AbandonedFrom::Queue), "abandon from the queue")?;
    check(state.position(&young).await? == 0, "an abandoned contact leaves the queue")?;
    let (applied, _, _) = state.abandon(&acme, &young.contact, 82, &no_events).await?;
    check(applied == Applied::AlreadyDone, "a repeated abandon changes nothing")?;
    check(state.snapshot(10).await?.waiting.is_empty(), "nothing waits any more")?;

    let voice = sample_record(&acme, &support, CHANNEL_VOICE, 0, 4_000);
    let chat = sample_record(&acme, &support, CHAT, 0, 5_000);
    state.enqueue(&voice, &[]).await?;
    state.enqueue(&chat, &[]).await?;
    check(state.reserve(&voice, &alice, 100_000, &[]).await?, "voice offered to a free agent")?;
    check(!state.reserve(&chat, &alice, 100_000, &[]).await?, "a voice contact blocks other work")?;
    state.upsert_agent(&sample_profile(&alice, &[&acme], 1, 1), false, 90).await?;
    check(
        state.snapshot(10).await?.agents.iter().all(|agent| agent.profile.agent != alice),
        "unavailable agents are not offered",
    )?;
    // A line of voice contacts longer than the matching window must not
    // hide a chat contact of the same queue from matching.
    let mixed = id(QueueId::parse("mixed", "q"))?;
    for index in 0..5 {
        state.enqueue(&sample_record(&acme, &mixed, CHANNEL_VOICE, 0, 6_000 + index), &[]).await?;
    }
    let late_chat = sample_record(&acme, &mixed, CHAT, 0, 7_000);
    state.enqueue(&late_chat, &[]).await?;
    let window = state.snapshot(2).await?;
    check(window.waiting.iter().any(|record| record.contact == late_chat.contact), "each channel has its own line")?;
    check(state.position(&late_chat).await? == 1, "position counts the contact's own line")?;

    // A batch of planned offers: each entry is its own atomic check, so the
    // batch cannot push an agent over capacity either.
    let carol = id(AgentId::parse("carol", "a"))?;
    state.upsert_agent(&sample_profile(&carol, &[&acme], 1, 0), true, 95).await?;
    let batch_queue = id(QueueId::parse("batch", "q"))?;
    let (first, second) =
        (sample_record(&acme, &batch_queue, CHAT, 0, 8_000), sample_record(&acme, &batch_queue, CHAT, 0, 8_001));
    state.enqueue(&first, &[]).await?;
    state.enqueue(&second, &[]).await?;
    let snapshot = state.snapshot(10).await?;
    let carol_live =
        snapshot.agents.iter().find(|agent| agent.profile.agent == carol).ok_or_else(|| Error::internal("carol"))?;
    let batch = [
        super::Reservation {
            record: &first,
            agent: carol_live,
            expire_ms: 200_000,
            events: vec![crate::events::offered(&first, &carol, 0, 200_000)],
        },
        super::Reservation {
            record: &second,
            agent: carol_live,
            expire_ms: 200_000,
            events: vec![crate::events::offered(&second, &carol, 0, 200_000)],
        },
    ];
    check(state.reserve_batch(&batch).await? == vec![true, false], "a batch respects capacity entry by entry")?;
    check(state.reserve_batch(&[]).await?.is_empty(), "an empty batch is fine")?;

    let missing = state.accept(&acme, &ContactId::generate(), &alice, 1, &no_events).await.err();
    check(missing.is_some_and(|error| error.code == ErrorCode::NotFound), "unknown contacts are NOT_FOUND")?;
    let other_tenant = state.get_contact(&globex, &voice.contact).await?;
    check(other_tenant.is_none(), "a contact is invisible under another tenant")?;
    Ok(())
}

/// Queue rules kept by the store: rules round-trip, the wait-deadline
/// index follows waiting, moves between lines keep one place in one line,
/// a queued callback survives the customer leaving, last agents are
/// remembered per tenant.
pub async fn queue_rules_contract(state: &dyn RoutingState) -> Result<(), Error> {
    use crate::domain::rules::{expire_wait, move_to_queue, request_callback};
    use crate::domain::{EscalationStep, QueueEntry, QueueRules, SkillRequirement, WaitOutcome};

    let acme = id(TenantId::parse("acme", "t"))?;
    let globex = id(TenantId::parse("globex", "t"))?;
    let front = id(QueueId::parse("rules-front", "q"))?;
    let back = id(QueueId::parse("rules-back", "q"))?;
    let dana = id(AgentId::parse("dana", "a"))?;
    let mut record = sample_record(&acme, &front, CHAT, 0, 1_000);
    record.rules = QueueRules {
        escalations: vec![EscalationStep {
            after_ms: 2_000,
            required_skills: vec![SkillRequirement { name: "billing".to_owned(), min_level: 2 }],
        }],
        preferred_agent: Some(dana.clone()),
        preferred_until_ms: 3_000,
        pinned: false,
        deadline_ms: 5_000,
        overflow_queue: Some(back.clone()),
        callback_number: None,
        end_reason: None,
        wrap_up_ms: 45_000,
        completion: None,
    };
    check(state.enqueue(&record, &[]).await?, "enqueue with rules")?;
    let stored = state.get_contact(&acme, &record.contact).await?;
    check(stored.as_ref() == Some(&record), "rules round-trip through the store")?;
    check(state.expired_waits(4_999, 10).await?.is_empty(), "no wait expired before the deadline")?;
    let expired = state.expired_waits(5_000, 10).await?;
    check(expired == vec![(acme.clone(), record.contact.clone())], "the deadline is found")?;

    state.upsert_agent(&sample_profile(&dana, &[&acme], 2, 0), true, 10).await?;
    check(state.agent(&dana).await?.is_some_and(|live| live.available), "an agent is found")?;
    check(state.agent(&id(AgentId::parse("nobody", "a"))?).await?.is_none(), "an unknown agent is not")?;
    check(state.reserve(&record, &dana, 90_000, &[]).await?, "reserve")?;
    check(state.expired_waits(10_000, 10).await?.is_empty(), "a ringing contact is not waiting")?;
    state.withdraw(&acme, &record.contact, Some(&dana), None, 20, &no_events).await?;
    check(state.expired_waits(10_000, 10).await?.len() == 1, "back in line, its deadline counts again")?;

    let failing = state.change(&acme, &record.contact, 30, &|_| Err(Error::failed_precondition("no")), &no_events);
    check(failing.await.is_err(), "a failing change fails")?;
    let overflow = |record: &mut ContactRecord| match expire_wait(record, 6_000)? {
        WaitOutcome::Overflow(target) => move_to_queue(
            record,
            QueueEntry {
                queue: target,
                priority: 0,
                required_skills: Vec::new(),
                strategy: crate::domain::Strategy::LongestIdle,
                priority_step_ms: crate::domain::STRICT_PRIORITY_STEP_MS,
                offer_timeout_ms: 30_000,
                rules: QueueRules::default(),
            },
        ),
        WaitOutcome::Lost => Ok(()),
    };
    let moved = state.change(&acme, &record.contact, 6_000, &overflow, &no_events).await?;
    check(moved.queue == back && moved.enqueue_ms == 1_000, "overflow moves it and keeps its age")?;
    check(state.get_contact(&acme, &record.contact).await?.as_ref() == Some(&moved), "the move is stored")?;
    check(state.position(&moved).await? == 1, "first in its new line")?;
    check(state.line_status(&acme, &front, CHAT).await?.waiting == 0, "gone from the old line")?;
    let back_line = state.line_status(&acme, &back, CHAT).await?;
    check(back_line.waiting == 1 && back_line.head.as_ref() == Some(&moved), "the new line has it at its head")?;
    check(state.expired_waits(i64::MAX, 10).await?.is_empty(), "the new queue has no deadline")?;
    check(state.snapshot(10).await?.waiting.iter().any(|waiting| waiting.queue == back), "matching sees the new line")?;

    // An answered contact moved back to a queue releases its agent.
    check(state.reserve(&moved, &dana, 90_000, &[]).await?, "reserve in the new queue")?;
    state.accept(&acme, &moved.contact, &dana, 40, &no_events).await?;
    let to_front = |record: &mut ContactRecord| {
        move_to_queue(
            record,
            QueueEntry {
                queue: front.clone(),
                priority: 0,
                required_skills: Vec::new(),
                strategy: crate::domain::Strategy::LongestIdle,
                priority_step_ms: crate::domain::STRICT_PRIORITY_STEP_MS,
                offer_timeout_ms: 30_000,
                rules: QueueRules::default(),
            },
        )
    };
    state.change(&acme, &moved.contact, 50, &to_front, &no_events).await?;
    check(state.agent(&dana).await?.is_some_and(|live| live.total_load() == 0), "the transfer released the agent")?;
    check(state.line_status(&acme, &front, CHAT).await?.waiting == 1, "waiting in the target line")?;

    state.change(&acme, &moved.contact, 60, &|record| request_callback(record, "+4915112345678"), &no_events).await?;
    let (applied, _, kept) = state.abandon(&acme, &moved.contact, 70, &no_events).await?;
    check(applied == Applied::AlreadyDone && kept.status == RoutingStatus::Queued, "a callback survives hanging up")?;
    check(kept.rules.callback_number.as_deref() == Some("+4915112345678"), "the callback number is stored")?;

    let customer = "tenants/acme/customers/cu_9";
    check(state.last_agent(&acme, customer).await?.is_none(), "no last agent yet")?;
    state.remember_agent(&acme, customer, &dana).await?;
    check(state.last_agent(&acme, customer).await?.as_ref() == Some(&dana), "the last agent is remembered")?;
    check(state.last_agent(&globex, customer).await?.is_none(), "per tenant")?;

    // Wrap-up held by routing: the completion that frees the agent holds it
    // in the same step; presence reporting AVAILABLE ends the hold.
    let erin = id(AgentId::parse("erin", "a"))?;
    let hold_queue = id(QueueId::parse("rules-hold", "q"))?;
    state.upsert_agent(&sample_profile(&erin, &[&acme], 1, 0), true, 10).await?;
    let mut first = sample_record(&acme, &hold_queue, CHAT, 0, 1_000);
    first.rules.wrap_up_ms = 128_000;
    let second = sample_record(&acme, &hold_queue, CHAT, 0, 1_001);
    state.enqueue(&first, &[]).await?;
    state.enqueue(&second, &[]).await?;
    check(state.reserve(&first, &erin, 100_000, &[]).await?, "offer to erin")?;
    state.accept(&acme, &first.contact, &erin, 71_000, &no_events).await?;
    state.complete(&acme, &first.contact, &erin, &sample_completion(), 72_000, &no_events).await?;
    check(
        state.agent(&erin).await?.is_some_and(|live| live.hold_until_ms == 200_000),
        "the queue's wrap-up holds the agent from the completion",
    )?;
    check(!state.reserve(&second, &erin, 150_000, &[]).await?, "no offer during the hold")?;
    state.upsert_agent(&sample_profile(&erin, &[&acme], 1, 0), true, 80_000).await?;
    check(state.agent(&erin).await?.is_some_and(|live| live.hold_until_ms == 0), "AVAILABLE ends the hold")?;
    check(state.reserve(&second, &erin, 150_000, &[]).await?, "offers again after the hold")?;
    Ok(())
}

/// The outbox's pending entries, `relay` being the only relay.
async fn lead(state: &dyn RoutingState, relay: &str, limit: usize) -> Result<Vec<super::PendingEntry>, Error> {
    let batch =
        state.pending_outbox(relay, 5_000, limit, &[]).await?.ok_or_else(|| Error::internal("the only relay leads"))?;
    check(
        batch.generation.as_deref() == Some(state.generation().await?.as_str()),
        "a batch carries the generation it was read in",
    )?;
    Ok(batch.entries)
}

/// The outbox: every change appends its events, then the changed
/// contact's snapshot, in the same step; a retry that changes nothing
/// appends nothing; acknowledged entries leave, and the tail tells a caller
/// when its change has been relayed.
pub async fn outbox_contract(state: &dyn RoutingState, relay: &str) -> Result<(), Error> {
    let acme = id(TenantId::parse("acme", "t"))?;
    let support = id(QueueId::parse("outbox", "q"))?;
    let alice = id(AgentId::parse("alice", "a"))?;
    let drain = |pending: Vec<super::PendingEntry>| pending.into_iter().map(|entry| entry.id).collect::<Vec<_>>();
    state.acknowledge_outbox(&drain(lead(state, relay, 10_000).await?)).await?;
    let generation = state.generation().await?;
    check(state.outbox_tail(&generation).await?.is_none(), "an empty outbox has no tail")?;

    let record = sample_record(&acme, &support, CHAT, 0, 1_000);
    let queued = crate::events::queued(&record, &Queue::default());
    check(state.enqueue(&record, std::slice::from_ref(&queued)).await?, "enqueue")?;
    check(!state.enqueue(&record, std::slice::from_ref(&queued)).await?, "a repeated enqueue changes nothing")?;
    state.upsert_agent(&sample_profile(&alice, &[&acme], 1, 0), true, 10).await?;
    let offered = crate::events::offered(&record, &alice, 20, 60_000);
    check(state.reserve(&record, &alice, 60_000, std::slice::from_ref(&offered)).await?, "reserve")?;
    let answered = |_before: &ContactRecord, after: &ContactRecord| crate::events::answered(after);
    state.accept(&acme, &record.contact, &alice, 30, &answered).await?;
    state.accept(&acme, &record.contact, &alice, 31, &answered).await?;

    let pending = lead(state, relay, 100).await?;
    let kinds: Vec<&str> = pending
        .iter()
        .map(|entry| match &entry.item {
            super::OutboxItem::Event(_) => "event",
            super::OutboxItem::Snapshot(_) => "snapshot",
        })
        .collect();
    check(
        kinds == ["event", "snapshot", "event", "snapshot", "event", "snapshot"],
        "each change appends its events then its snapshot; repeats append nothing",
    )?;
    let event = |index: usize| match &pending[index].item {
        super::OutboxItem::Event(envelope) => Some((**envelope).clone()),
        super::OutboxItem::Snapshot(_) => None,
    };
    let snapshot = |index: usize| match &pending[index].item {
        super::OutboxItem::Snapshot(record) => Some((**record).clone()),
        super::OutboxItem::Event(_) => None,
    };
    check(event(0) == Some(queued) && event(2) == Some(offered), "events keep the order of the changes")?;
    check(
        matches!(
            event(4).and_then(|envelope| envelope.payload),
            Some(switchboard_proto::events::v1::event_envelope::Payload::Routing(event))
                if matches!(event.kind, Some(switchboard_proto::routing::v1::routing_event::Kind::Answered(_)))
        ),
        "the transition's own event is appended",
    )?;
    let revisions: Vec<(RoutingStatus, i64)> =
        [1, 3, 5].into_iter().filter_map(snapshot).map(|record| (record.status, record.revision)).collect();
    check(
        revisions == [(RoutingStatus::Queued, 0), (RoutingStatus::Offered, 1), (RoutingStatus::Answered, 2)],
        "snapshots hold the record after each change, at its new revision",
    )?;
    check(snapshot(5) == state.get_contact(&acme, &record.contact).await?, "the last snapshot is the stored record")?;

    let tail = state.outbox_tail(&generation).await?.ok_or_else(|| Error::internal("a tail"))?;
    state.acknowledge_outbox(&[pending[0].id.clone()]).await?;
    check(!state.relayed_through(&tail, &generation).await?, "the tail is not relayed while entries remain")?;
    let rest = lead(state, relay, 100).await?;
    check(rest.len() == 5, "acknowledged entries leave the outbox")?;
    let relayed = drain(rest[..2].to_vec());
    let after_relayed = state
        .pending_outbox(relay, 5_000, 100, &relayed)
        .await?
        .ok_or_else(|| Error::internal("the only relay leads"))?;
    check(
        drain(after_relayed.entries) == drain(rest[2..].to_vec()),
        "the entries a relay says it relayed leave before its next batch is read",
    )?;
    state.acknowledge_outbox(&drain(lead(state, relay, 100).await?)).await?;
    check(lead(state, relay, 100).await?.is_empty(), "the outbox drains")?;
    check(state.relayed_through(&tail, &generation).await?, "once drained, the tail is relayed")?;
    Ok(())
}

/// A reservation is carried out only on the revision the plan was made
/// on: a change in between (a callback, a pin) voids it.
pub async fn stale_reservation_contract(state: &dyn RoutingState) -> Result<(), Error> {
    use crate::domain::rules::request_callback;
    let acme = id(TenantId::parse("acme", "t"))?;
    let queue = id(QueueId::parse("stale", "q"))?;
    let frank = id(AgentId::parse("frank", "a"))?;
    state.upsert_agent(&sample_profile(&frank, &[&acme], 1, 0), true, 10).await?;
    let record = sample_record(&acme, &queue, CHAT, 0, 1_000);
    state.enqueue(&record, &[]).await?;
    let planned = state.get_contact(&acme, &record.contact).await?.ok_or_else(|| Error::internal("stored"))?;
    state
        .change(&acme, &record.contact, 20, &|record| request_callback(record, "+15550100"), &super::no_events)
        .await?;
    check(!state.reserve(&planned, &frank, 60_000, &[]).await?, "a plan on an older revision is void")?;
    let current = state.get_contact(&acme, &record.contact).await?.ok_or_else(|| Error::internal("stored"))?;
    check(current.revision == planned.revision + 1, "the change bumped the revision")?;
    check(state.reserve(&current, &frank, 60_000, &[]).await?, "a plan on the current revision is carried out")?;
    Ok(())
}

/// A transition tried on a view the caller read earlier decides on the
/// contact as it is now: a stale view never refuses, repeats or undoes
/// what happened since.
pub async fn seen_view_contract(state: &dyn RoutingState) -> Result<(), Error> {
    let acme = id(TenantId::parse("acme", "t"))?;
    let queue = id(QueueId::parse("seen", "q"))?;
    let (gina, hugo) = (id(AgentId::parse("gina", "a"))?, id(AgentId::parse("hugo", "a"))?);
    state.upsert_agent(&sample_profile(&gina, &[&acme], 2, 0), true, 10).await?;
    state.upsert_agent(&sample_profile(&hugo, &[&acme], 2, 0), true, 10).await?;
    let stored = |record: &ContactRecord| {
        let (tenant, contact) = (record.tenant.clone(), record.contact.clone());
        async move { state.get_contact(&tenant, &contact).await?.ok_or_else(|| Error::internal("stored")) }
    };

    let record = sample_record(&acme, &queue, CHAT, 0, 1_000);
    state.enqueue(&record, &[]).await?;
    let queued_view = stored(&record).await?;
    check(state.reserve(&queued_view, &gina, 60_000, &[]).await?, "offered to gina")?;
    let (applied, answered) = state.accept_seen(&queued_view, &gina, 30, &no_events).await?;
    check(
        applied == Applied::Changed && answered.status == RoutingStatus::Answered,
        "an accept on a view from before the offer answers the offer made since",
    )?;
    let (applied, _) = state.accept_seen(&queued_view, &gina, 31, &no_events).await?;
    check(applied == Applied::AlreadyDone, "a repeated accept on a stale view changes nothing")?;
    let (applied, completed) = state.complete_seen(&answered, &gina, &sample_completion(), 40, &no_events).await?;
    check(applied == Applied::Changed && completed.status == RoutingStatus::Completed, "complete ends it")?;
    let (applied, _) = state.complete_seen(&answered, &gina, &sample_completion(), 41, &no_events).await?;
    check(applied == Applied::AlreadyDone, "a complete on the view from before it changes nothing")?;
    check(
        stored(&record).await?.rules.completion == Some(sample_completion()),
        "the completion is kept with the contact",
    )?;
    let other_outcome = Completion { disposition: "sale".to_owned(), resolved: false };
    let refused = state.complete_seen(&answered, &gina, &other_outcome, 42, &no_events).await.err();
    check(
        refused.is_some_and(|error| error.reason() == "CONTACT_ENDED"),
        "completing it again with another outcome is refused, not taken as a retry",
    )?;

    let other = sample_record(&acme, &queue, CHAT, 0, 2_000);
    state.enqueue(&other, &[]).await?;
    check(state.reserve(&stored(&other).await?, &gina, 60_000, &[]).await?, "offered to gina")?;
    let offered_to_gina = stored(&other).await?;
    state.withdraw(&acme, &other.contact, Some(&gina), None, 50, &no_events).await?;
    let late = state.accept_seen(&offered_to_gina, &gina, 51, &no_events).await.err();
    check(
        late.is_some_and(|error| error.code == ErrorCode::FailedPrecondition),
        "an accept on a view of a withdrawn offer is refused",
    )?;
    check(state.reserve(&stored(&other).await?, &hugo, 60_000, &[]).await?, "re-offered to hugo")?;
    let wrong = state.accept_seen(&offered_to_gina, &gina, 52, &no_events).await.err();
    check(
        wrong.is_some_and(|error| error.code == ErrorCode::FailedPrecondition),
        "a view showing gina's old offer does not let gina take hugo's",
    )?;
    check(stored(&other).await?.agent.as_ref() == Some(&hugo), "the contact stays offered to hugo")?;
    Ok(())
}

/// What a rebuild relies on: a restore puts journaled contacts and agents
/// back with their indexes and loads, idempotently, and the store is whole
/// after it.
pub async fn restore_contract(state: &dyn RoutingState) -> Result<(), Error> {
    use crate::store::journal::JournaledAgent;
    use switchboard_proto::presence::v1::AgentState;
    let acme = id(TenantId::parse("acme", "t"))?;
    let queue = id(QueueId::parse("restored", "q"))?;
    let gina = id(AgentId::parse("gina", "a"))?;
    let waiting = ContactRecord { revision: 4, ..sample_record(&acme, &queue, CHAT, 0, 1_000) };
    let mut ringing = sample_record(&acme, &queue, CHAT, 0, 2_000);
    crate::domain::reserve(&mut ringing, &gina, 90_000)?;
    ringing.revision = 7;
    let agents = [JournaledAgent { profile: sample_profile(&gina, &[&acme], 2, 0), state: AgentState::Available }];
    for _ in 0..2 {
        state.restore(&[waiting.clone(), ringing.clone()], &agents, 50).await?;
    }
    check(state.is_whole().await?, "whole after a restore")?;
    state.finish_rebuild().await?;
    check(!state.rebuild_pending().await?, "nothing pending once the rebuild finished")?;
    check(state.get_contact(&acme, &waiting.contact).await? == Some(waiting.clone()), "the waiting contact is back")?;
    check(state.position(&waiting).await? == 1, "it waits in its line again")?;
    check(state.get_contact(&acme, &ringing.contact).await? == Some(ringing.clone()), "the offer is back")?;
    let expired = state.expired_offers(100_000, 10).await?;
    check(expired.iter().any(|offer| offer.contact == ringing.contact), "the offer expires on schedule")?;
    let live = state.agent(&gina).await?.ok_or_else(|| Error::internal("gina"))?;
    check(live.available && live.load.get(&CHAT) == Some(&1), "the agent is back with the offer's load, once")?;
    Ok(())
}

/// Queue definitions: create once, get, list in pages, update, delete.
/// Gauges: the outbox's depth and the contacts waiting, by tenant (a
/// fresh state's).
pub async fn gauges_contract(state: &dyn RoutingState, relay: &str) -> Result<(), Error> {
    let drain = |pending: Vec<super::PendingEntry>| pending.into_iter().map(|entry| entry.id).collect::<Vec<_>>();
    state.acknowledge_outbox(&drain(lead(state, relay, 10_000).await?)).await?;
    check(state.gauges().await? == super::StateGauges::default(), "an empty state shows nothing")?;
    let acme = id(TenantId::parse("acme", "t"))?;
    let globex = id(TenantId::parse("globex", "t"))?;
    let (sales, help) = (id(QueueId::parse("sales", "q"))?, id(QueueId::parse("help", "q"))?);
    let mut answered = sample_record(&acme, &sales, CHAT, 0, 3);
    for record in [sample_record(&acme, &sales, CHAT, 0, 1), sample_record(&acme, &sales, 2, 0, 2), answered.clone()] {
        state.enqueue(&record, &[crate::events::queued(&record, &Queue::default())]).await?;
    }
    let waiting = sample_record(&globex, &help, CHAT, 0, 4);
    state.enqueue(&waiting, &[]).await?;
    let zoe = id(AgentId::parse("zoe", "a"))?;
    state.upsert_agent(&sample_profile(&zoe, &[&acme], 1, 0), true, 10).await?;
    answered.revision = 0;
    check(state.reserve(&answered, &zoe, 60_000, &[]).await?, "reserve")?;
    let gauges = state.gauges().await?;
    check(gauges.waiting_by_tenant.get(&acme) == Some(&2), "acme's two waiting, on two lines; the offered one not")?;
    check(gauges.waiting_by_tenant.get(&globex) == Some(&1), "globex's one")?;
    // Three enqueues with an event each, one without, a reservation without:
    // every change appends its events and its snapshot.
    check(gauges.outbox_depth == 3 * 2 + 1 + 1, "the outbox holds what the changes appended")?;
    state.acknowledge_outbox(&drain(lead(state, relay, 10_000).await?)).await?;
    check(state.gauges().await?.outbox_depth == 0, "a drained outbox")?;
    Ok(())
}

pub async fn queue_store_contract(store: &dyn QueueStore) -> Result<(), Error> {
    let acme = id(TenantId::parse("acme", "t"))?;
    let globex = id(TenantId::parse("globex", "t"))?;
    for name in ["billing", "sales", "support"] {
        let queue_id = id(QueueId::parse(name, "q"))?;
        let queue = Queue { name: format!("tenants/acme/queues/{name}"), ..Queue::default() };
        store.create_queue(&acme, &queue_id, &queue).await?;
    }
    let sales = id(QueueId::parse("sales", "q"))?;
    let duplicate = store.create_queue(&acme, &sales, &Queue::default()).await.err();
    check(duplicate.is_some_and(|error| error.code == ErrorCode::AlreadyExists), "duplicate create is ALREADY_EXISTS")?;
    check(store.get_queue(&globex, &sales).await?.is_none(), "queues are per tenant")?;
    let first_page = store.list_queues(&acme, &PageRequest::resume_after(2, None)).await?;
    check(first_page.len() == 3, "a page returns size + 1 to detect more")?;
    let after_billing = PageRequest::resume_after(2, Some("billing"));
    let second = store.list_queues(&acme, &after_billing).await?;
    check(second.first().is_some_and(|queue| queue.name.ends_with("/sales")), "pages continue after the token")?;
    let renamed = Queue { display_name: "Sales".to_owned(), ..Queue::default() };
    check(store.update_queue(&acme, &sales, &renamed).await?, "update an existing queue")?;
    check(store.get_queue(&acme, &sales).await?.is_some_and(|queue| queue.display_name == "Sales"), "update persists")?;
    check(store.delete_queue(&acme, &sales).await?, "delete an existing queue")?;
    check(!store.delete_queue(&acme, &sales).await?, "delete twice reports absence")?;
    check(!store.update_queue(&acme, &sales, &renamed).await?, "update of a deleted queue reports absence")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::{MemoryQueueStore, MemoryRoutingState};

    #[tokio::test]
    async fn memory_state_passes_the_contract() {
        routing_state_contract(&MemoryRoutingState::default()).await.expect("contract");
        queue_rules_contract(&MemoryRoutingState::default()).await.expect("queue rules contract");
    }

    #[tokio::test]
    async fn memory_answer_pace_passes_the_contract() {
        answer_pace_contract(&MemoryRoutingState::default()).await.expect("pace");
        fair_shares_contract(&MemoryRoutingState::default()).await.expect("fair shares");
    }

    #[tokio::test]
    async fn memory_outbox_passes_the_contract() {
        outbox_contract(&MemoryRoutingState::default(), "relay").await.expect("outbox");
    }

    #[tokio::test]
    async fn memory_gauges_pass_the_contract() {
        gauges_contract(&MemoryRoutingState::default(), "relay").await.expect("gauges");
    }

    #[tokio::test]
    async fn memory_state_voids_stale_reservations_and_restores() {
        stale_reservation_contract(&MemoryRoutingState::default()).await.expect("stale reservations");
        seen_view_contract(&MemoryRoutingState::default()).await.expect("seen views");
        restore_contract(&MemoryRoutingState::default()).await.expect("restore");
    }

    #[tokio::test]
    async fn memory_queue_store_passes_the_contract() {
        queue_store_contract(&MemoryQueueStore::default()).await.expect("contract");
        queue_store_erasure_contract(&MemoryQueueStore::default()).await.expect("erasure");
    }

    #[tokio::test]
    async fn memory_snapshots_show_agents_as_they_are() {
        let state = MemoryRoutingState::default();
        shared_view_contract(&state, &state).await.expect("shared view");
    }

    #[tokio::test]
    async fn memory_state_erases_a_deleted_tenant() {
        erasure_contract(&MemoryRoutingState::default()).await.expect("erasure");
    }

    #[tokio::test]
    async fn two_memory_stores_agree_with_each_other() {
        differential(&MemoryRoutingState::default(), &MemoryRoutingState::default(), 7, 300).await.expect("agree");
    }
}
