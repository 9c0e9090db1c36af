//! The call state machine: every stage, and that stages only move forward
//! whatever the order and repetition of events (property test).

use proptest::prelude::*;
use switchboard_core::identity::{Identity, IdentityKind};
use switchboard_core::{ChannelId, QueueId, TenantId};

use super::*;

fn event(kind: CallEventKind, at_ms: i64) -> CallEvent {
    CallEvent { call_id: "c-1".to_owned(), kind, at_ms: Some(at_ms) }
}

fn started() -> CallRecord {
    let from = Identity { kind: IdentityKind::Phone, value: "+15550100042".to_owned() };
    let tenant = TenantId::parse("acme", "tenant").unwrap_or_else(|_| unreachable!());
    let channel = ChannelId::parse("pbx", "channel").unwrap_or_else(|_| unreachable!());
    new_call(&tenant, &channel, &event(CallEventKind::NewCall { from, to: "+15550100".to_owned() }, 1_000), 0)
        .unwrap_or_else(|| unreachable!())
}

fn step(call: &CallRecord, kind: CallEventKind, at_ms: i64) -> (CallRecord, Effect) {
    match apply(call, &event(kind, at_ms), 0) {
        Step::Changed { next, effect } => (*next, effect),
        Step::Unchanged => panic!("expected a change from {:?}", call.stage),
    }
}

#[test]
fn a_call_through_ivr_queue_answer_hold_and_hangup() {
    let call = started();
    assert_eq!((call.stage, call.created_ms), (Stage::Ivr, 1_000));
    let billing = QueueId::parse("billing", "queue").ok();
    let (call, effect) = step(&call, CallEventKind::Queued { queue: billing.clone() }, 2_000);
    assert_eq!((call.stage, effect), (Stage::Queued, Effect::Enqueue { queue: billing }));
    let (call, _) = step(&call, CallEventKind::Answered, 3_000);
    assert_eq!((call.stage, call.answered_ms), (Stage::Answered, Some(3_000)));
    let (call, _) = step(&call, CallEventKind::Hold, 4_000);
    let (call, _) = step(&call, CallEventKind::Unhold, 6_500);
    assert_eq!((call.stage, call.held_ms), (Stage::Answered, 2_500));
    let (call, _) = step(&call, CallEventKind::Transfer { target: "204".to_owned() }, 7_000);
    assert_eq!(apply(&call, &event(CallEventKind::Transfer { target: "204".to_owned() }, 7_000), 0), Step::Unchanged);
    let (call, _) = step(&call, CallEventKind::Hold, 8_000);
    let (call, effect) = step(&call, CallEventKind::Hangup { cause: HangupCause::Normal }, 9_000);
    assert_eq!(effect, Effect::None, "an answered call ends with its contact in the agent's hands");
    assert_eq!(call.stage, Stage::Ended { at_ms: 9_000, cause: HangupCause::Normal });
    assert_eq!(call.held_ms, 3_500, "a hold open at the hang-up counts");
    assert!(!call.ended_in_ivr);
}

#[test]
fn hanging_up_in_the_ivr_or_in_the_queue_are_told_apart() {
    let (in_ivr, effect) = step(&started(), CallEventKind::Hangup { cause: HangupCause::Cancel }, 2_000);
    assert_eq!(effect, Effect::EndInIvr);
    assert!(in_ivr.ended_in_ivr);
    let (queued, _) = step(&started(), CallEventKind::Queued { queue: None }, 2_000);
    let (in_queue, effect) = step(&queued, CallEventKind::Hangup { cause: HangupCause::Cancel }, 3_000);
    assert_eq!(effect, Effect::AbandonInQueue);
    assert!(!in_queue.ended_in_ivr);
}

#[test]
fn late_and_repeated_events_change_nothing() {
    let (queued, _) = step(&started(), CallEventKind::Queued { queue: None }, 2_000);
    for late in [CallEventKind::Ivr, CallEventKind::Queued { queue: None }, CallEventKind::Unhold] {
        assert_eq!(apply(&queued, &event(late, 2_500), 0), Step::Unchanged);
    }
    let (ended, _) = step(&queued, CallEventKind::Hangup { cause: HangupCause::Normal }, 3_000);
    assert_eq!(apply(&ended, &event(CallEventKind::Answered, 4_000), 0), Step::Unchanged);
    assert_eq!(apply(&ended, &event(CallEventKind::Hangup { cause: HangupCause::Busy }, 4_000), 0), Step::Unchanged);
}

fn any_kind() -> impl Strategy<Value = CallEventKind> {
    prop_oneof![
        Just(CallEventKind::Ivr),
        Just(CallEventKind::Queued { queue: None }),
        Just(CallEventKind::Answered),
        Just(CallEventKind::Hold),
        Just(CallEventKind::Unhold),
        Just(CallEventKind::Transfer { target: "204".to_owned() }),
        Just(CallEventKind::Hangup { cause: HangupCause::Normal }),
    ]
}

fn rank(stage: Stage) -> u8 {
    match stage {
        Stage::Ivr => 0,
        Stage::Queued => 1,
        Stage::Answered | Stage::OnHold { .. } => 2,
        Stage::Ended { .. } => 3,
    }
}

proptest! {
    #[test]
    fn stages_only_move_forward_and_each_contact_effect_happens_at_most_once(
        kinds in proptest::collection::vec(any_kind(), 0..30)
    ) {
        let mut call = started();
        let mut enqueues = 0;
        let mut ends = 0;
        for (index, kind) in kinds.into_iter().enumerate() {
            let at_ms = 2_000 + i64::try_from(index).unwrap_or(0) * 100;
            if let Step::Changed { next, effect } = apply(&call, &event(kind, at_ms), 0) {
                prop_assert!(rank(next.stage) >= rank(call.stage), "{:?} -> {:?}", call.stage, next.stage);
                prop_assert!(next.held_ms >= call.held_ms);
                match effect {
                    Effect::Enqueue { .. } => enqueues += 1,
                    Effect::AbandonInQueue | Effect::EndInIvr => ends += 1,
                    Effect::None => {}
                }
                call = *next;
            }
        }
        prop_assert!(enqueues <= 1 && ends <= 1);
        prop_assert!(!(call.ended_in_ivr && enqueues == 1), "a call that was queued did not end in the IVR");
    }
}
