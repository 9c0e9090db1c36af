//! What every replica's matching pass relies on: a snapshot shows the
//! waiting contacts and the available agents as they are now, whichever
//! replica changed them since its last snapshot. A store that keeps a copy
//! of them between snapshots (Redis) must follow every kind of change to a
//! waiting line and to an agent.

use std::collections::BTreeSet;

use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};

use super::contract::{check, sample_profile, sample_record};
use super::{RoutingState, Snapshot, no_events};
use crate::domain::{AgentLive, ContactRecord};

const CHAT: i32 = 3;
/// Enough head contacts for every contact this contract enqueues.
const HEADS: usize = 8;

fn agent_in<'a>(snapshot: &'a Snapshot, agent: &AgentId) -> Option<&'a AgentLive> {
    snapshot.agents.iter().find(|live| &live.profile.agent == agent)
}

/// The waiting contacts a snapshot shows, each with its revision.
fn waiting_in(snapshot: &Snapshot) -> BTreeSet<(ContactId, i64)> {
    snapshot.waiting.iter().map(|record| (record.contact.clone(), record.revision)).collect()
}

fn chat_load(snapshot: &Snapshot, agent: &AgentId) -> Option<i32> {
    agent_in(snapshot, agent).map(|live| live.load.get(&CHAT).copied().unwrap_or(0))
}

/// `reader` and `writer` are two replicas' handles on one state (for a
/// store without replicas, the same store twice). Every change is made by
/// `writer` between two snapshots by `reader`: offers, accepts,
/// completions with a wrap-up hold, withdrawals, availability and profile
/// changes; contacts joining a line, changed while waiting and abandoned.
pub async fn shared_view_contract(reader: &dyn RoutingState, writer: &dyn RoutingState) -> Result<(), Error> {
    let acme = TenantId::parse("acme", "t")?;
    let queue = QueueId::parse("shared", "q")?;
    let (alice, bob) = (AgentId::parse("alice", "a")?, AgentId::parse("bob", "a")?);
    let stored = |record: &ContactRecord| {
        let (tenant, contact) = (record.tenant.clone(), record.contact.clone());
        async move { writer.get_contact(&tenant, &contact).await?.ok_or_else(|| Error::internal("stored")) }
    };
    writer.upsert_agent(&sample_profile(&alice, &[&acme], 2, 0), true, 10).await?;
    writer.upsert_agent(&sample_profile(&bob, &[&acme], 1, 0), true, 10).await?;
    let first = ContactRecord {
        rules: crate::domain::QueueRules { wrap_up_ms: 30_000, ..crate::domain::QueueRules::default() },
        ..sample_record(&acme, &queue, CHAT, 0, 1_000)
    };
    let second = sample_record(&acme, &queue, CHAT, 0, 2_000);
    writer.enqueue(&first, &[]).await?;
    writer.enqueue(&second, &[]).await?;
    let view = reader.snapshot(HEADS).await?;
    check(view.waiting.len() == 2, "both contacts wait")?;
    check(chat_load(&view, &alice) == Some(0) && chat_load(&view, &bob) == Some(0), "both agents free")?;

    let waiting_now = |records: Vec<ContactRecord>| async move {
        let mut waiting = BTreeSet::new();
        for record in records {
            let stored = stored(&record).await?;
            waiting.insert((stored.contact, stored.revision));
        }
        Ok::<_, Error>(waiting)
    };

    check(writer.reserve(&stored(&first).await?, &alice, 60_000, &[]).await?, "offered to alice")?;
    let view = reader.snapshot(HEADS).await?;
    check(chat_load(&view, &alice) == Some(1), "another replica's offer counts in alice's load")?;
    check(waiting_in(&view) == waiting_now(vec![second.clone()]).await?, "and the offered contact left its line")?;

    writer.upsert_agent(&sample_profile(&bob, &[&acme], 1, 0), false, 20).await?;
    let view = reader.snapshot(HEADS).await?;
    check(agent_in(&view, &bob).is_none(), "bob, gone away, is not offered work")?;

    writer.accept(&acme, &first.contact, &alice, 30, &no_events).await?;
    writer.complete(&acme, &first.contact, &alice, &super::contract::sample_completion(), 40, &no_events).await?;
    let view = reader.snapshot(HEADS).await?;
    let live = agent_in(&view, &alice).ok_or_else(|| Error::internal("alice in the snapshot"))?;
    check(live.load.get(&CHAT).copied().unwrap_or(0) == 0, "the completion freed alice's room")?;
    check(live.idle_since_ms == 40 && live.hold_until_ms == 30_040, "alice idle since it, in wrap-up until 30 s on")?;

    writer.upsert_agent(&sample_profile(&bob, &[&acme], 3, 0), true, 50).await?;
    let view = reader.snapshot(HEADS).await?;
    let live = agent_in(&view, &bob).ok_or_else(|| Error::internal("bob in the snapshot"))?;
    check(live.profile.capacities.get(&CHAT) == Some(&3), "bob is back, with the capacity his new profile gives")?;

    let sales = QueueId::parse("shared-sales", "q")?;
    let third = sample_record(&acme, &sales, CHAT, 0, 3_000);
    writer.enqueue(&third, &[]).await?;
    let view = reader.snapshot(HEADS).await?;
    let expected = waiting_now(vec![second.clone(), third.clone()]).await?;
    check(waiting_in(&view) == expected, "a contact another replica queued in another line waits")?;

    check(writer.reserve(&stored(&second).await?, &bob, 60_000, &[]).await?, "offered to bob")?;
    let view = reader.snapshot(HEADS).await?;
    check(waiting_in(&view) == waiting_now(vec![third.clone()]).await?, "the offered contact left its line")?;
    writer.withdraw(&acme, &second.contact, Some(&bob), None, 60, &no_events).await?;
    let view = reader.snapshot(HEADS).await?;
    check(chat_load(&view, &bob) == Some(0), "the withdrawn offer freed bob's room")?;
    let expected = waiting_now(vec![second.clone(), third.clone()]).await?;
    check(waiting_in(&view) == expected, "the withdrawn contact waits in its line again")?;

    writer
        .change(
            &acme,
            &third.contact,
            70,
            &|record| crate::domain::rules::request_callback(record, "+15550100"),
            &no_events,
        )
        .await?;
    let view = reader.snapshot(HEADS).await?;
    let expected = waiting_now(vec![second.clone(), third.clone()]).await?;
    check(waiting_in(&view) == expected, "a contact changed while it waits shows as it is now")?;
    writer.abandon(&acme, &second.contact, 80, &no_events).await?;
    let view = reader.snapshot(HEADS).await?;
    check(waiting_in(&view) == waiting_now(vec![third.clone()]).await?, "an abandoned contact no longer waits")?;
    check(writer.reserve(&stored(&third).await?, &bob, 60_000, &[]).await?, "offered to bob")?;
    check(reader.snapshot(HEADS).await?.waiting.is_empty(), "nothing waits once the last is offered")?;
    Ok(())
}
