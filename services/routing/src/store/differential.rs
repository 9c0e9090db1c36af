//! The differential check: one random operation sequence replayed on two
//! routing-state stores (memory and Redis in `tests/redis_store.rs`), which
//! must take identical decisions at every step.

use switchboard_core::{AgentId, Error, QueueId, TenantId};

use super::contract::{check, sample_completion, sample_profile, sample_record};
use super::{RoutingState, no_events};
use crate::domain::{CHANNEL_VOICE, ContactRecord};

const CHAT: i32 = 3;

/// A small deterministic generator, so a failing sequence can be replayed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (mixed ^ (mixed >> 31)) % bound.max(1)
    }
}

/// Replays `steps` random operations on both stores and fails at the first
/// decision on which they differ.
pub async fn differential(
    left: &dyn RoutingState,
    right: &dyn RoutingState,
    seed: u64,
    steps: usize,
) -> Result<(), Error> {
    let acme = (TenantId::parse("acme", "t"))?;
    let queues = [(QueueId::parse("one", "q"))?, (QueueId::parse("two", "q"))?];
    let agents = [(AgentId::parse("a1", "a"))?, (AgentId::parse("a2", "a"))?, (AgentId::parse("a3", "a"))?];
    let mut random = SplitMix(seed);
    let mut contacts: Vec<ContactRecord> = Vec::new();
    for step in 0..steps {
        let now = 1_000 + i64::try_from(step).unwrap_or(0) * 10;
        let agent = &agents[random.next(3) as usize];
        let picked = (!contacts.is_empty()).then(|| contacts[random.next(contacts.len() as u64) as usize].clone());
        let operation = random.next(11);
        let outcome = |result: Result<String, Error>| match result {
            Ok(value) => value,
            Err(error) => format!("error {:?}", error.code),
        };
        let (left_outcome, right_outcome) = match (operation, picked) {
            (0 | 1, _) | (_, None) => {
                let channel = if random.next(4) == 0 { CHANNEL_VOICE } else { CHAT };
                let queue = &queues[random.next(2) as usize];
                let mut record = sample_record(&acme, queue, channel, random.next(3) as i32, now);
                record.rules.wrap_up_ms = 30 * i64::try_from(random.next(2)).unwrap_or(0);
                contacts.push(record.clone());
                (
                    outcome(left.enqueue(&record, &[]).await.map(|added| added.to_string())),
                    outcome(right.enqueue(&record, &[]).await.map(|added| added.to_string())),
                )
            }
            (2, _) => {
                let profile = sample_profile(agent, &[&acme], 1 + random.next(2) as i32, random.next(2) as i32);
                let available = random.next(3) != 0;
                left.upsert_agent(&profile, available, now).await?;
                right.upsert_agent(&profile, available, now).await?;
                (String::new(), String::new())
            }
            (3, Some(record)) => (
                outcome(left.reserve(&record, agent, now + 50, &[]).await.map(|reserved| reserved.to_string())),
                outcome(right.reserve(&record, agent, now + 50, &[]).await.map(|reserved| reserved.to_string())),
            ),
            (4, Some(record)) => (
                outcome(
                    left.accept(&acme, &record.contact, agent, now, &no_events)
                        .await
                        .map(|(applied, r)| format!("{applied:?} {r:?}")),
                ),
                outcome(
                    right
                        .accept(&acme, &record.contact, agent, now, &no_events)
                        .await
                        .map(|(applied, r)| format!("{applied:?} {r:?}")),
                ),
            ),
            (5, Some(record)) => (
                outcome(
                    left.withdraw(&acme, &record.contact, None, None, now, &no_events)
                        .await
                        .map(|(holder, r)| format!("{holder} {r:?}")),
                ),
                outcome(
                    right
                        .withdraw(&acme, &record.contact, None, None, now, &no_events)
                        .await
                        .map(|(holder, r)| format!("{holder} {r:?}")),
                ),
            ),
            (6, Some(record)) => (
                outcome(
                    left.complete(&acme, &record.contact, agent, &sample_completion(), now, &no_events)
                        .await
                        .map(|(applied, r)| format!("{applied:?} {r:?}")),
                ),
                outcome(
                    right
                        .complete(&acme, &record.contact, agent, &sample_completion(), now, &no_events)
                        .await
                        .map(|(applied, r)| format!("{applied:?} {r:?}")),
                ),
            ),
            (8, Some(record)) => {
                // A transfer (or overflow) to the other queue, with a
                // deadline there.
                let target = queues[random.next(2) as usize].clone();
                let deadline_ms = now + 10 * i64::try_from(random.next(20)).unwrap_or(0);
                let entry = crate::domain::QueueEntry {
                    queue: target,
                    priority: random.next(3) as i32,
                    required_skills: Vec::new(),
                    strategy: crate::domain::Strategy::LongestIdle,
                    priority_step_ms: crate::domain::STRICT_PRIORITY_STEP_MS,
                    offer_timeout_ms: 30_000,
                    rules: crate::domain::QueueRules { deadline_ms, ..Default::default() },
                };
                let change = |record: &mut ContactRecord| crate::domain::rules::move_to_queue(record, entry.clone());
                (
                    outcome(
                        left.change(&acme, &record.contact, now, &change, &no_events).await.map(|r| format!("{r:?}")),
                    ),
                    outcome(
                        right.change(&acme, &record.contact, now, &change, &no_events).await.map(|r| format!("{r:?}")),
                    ),
                )
            }
            (9, _) => {
                // The wait sweep: the same contacts expire, and end the same.
                let (left_expired, right_expired) =
                    (left.expired_waits(now, 100).await?, right.expired_waits(now, 100).await?);
                check(left_expired == right_expired, &format!("step {step}: expired waits differ"))?;
                let mut outcomes = (String::new(), String::new());
                for (tenant, contact) in left_expired {
                    let change =
                        |record: &mut ContactRecord| crate::domain::rules::expire_wait(record, now).map(|_| ());
                    outcomes.0 += &outcome(
                        left.change(&tenant, &contact, now, &change, &no_events).await.map(|r| format!("{r:?}")),
                    );
                    outcomes.1 += &outcome(
                        right.change(&tenant, &contact, now, &change, &no_events).await.map(|r| format!("{r:?}")),
                    );
                }
                outcomes
            }
            (10, Some(record)) => {
                let change =
                    |record: &mut ContactRecord| crate::domain::rules::request_callback(record, "+4915112345678");
                (
                    outcome(
                        left.change(&acme, &record.contact, now, &change, &no_events).await.map(|r| format!("{r:?}")),
                    ),
                    outcome(
                        right.change(&acme, &record.contact, now, &change, &no_events).await.map(|r| format!("{r:?}")),
                    ),
                )
            }
            (_, Some(record)) => (
                outcome(
                    left.abandon(&acme, &record.contact, now, &no_events)
                        .await
                        .map(|(a, from, r)| format!("{a:?} {from:?} {r:?}")),
                ),
                outcome(
                    right
                        .abandon(&acme, &record.contact, now, &no_events)
                        .await
                        .map(|(a, from, r)| format!("{a:?} {from:?} {r:?}")),
                ),
            ),
        };
        check(
            left_outcome == right_outcome,
            &format!("step {step} (op {operation}) differs: {left_outcome} vs {right_outcome}"),
        )?;
        let (left_snapshot, right_snapshot) = (left.snapshot(1_000).await?, right.snapshot(1_000).await?);
        let mut left_waiting: Vec<_> = left_snapshot.waiting.iter().map(|r| r.contact.clone()).collect();
        let mut right_waiting: Vec<_> = right_snapshot.waiting.iter().map(|r| r.contact.clone()).collect();
        left_waiting.sort();
        right_waiting.sort();
        check(left_waiting == right_waiting, &format!("step {step}: waiting contacts differ"))?;
        check(left_snapshot.agents == right_snapshot.agents, &format!("step {step}: agents differ"))?;
        for record in &contacts {
            let (left_position, right_position) = (left.position(record).await?, right.position(record).await?);
            check(left_position == right_position, &format!("step {step}: positions of {} differ", record.contact))?;
        }
    }
    Ok(())
}
