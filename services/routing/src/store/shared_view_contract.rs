//! What every replica's matching pass relies on: a snapshot shows the
//! available agents as they are now, whichever replica changed them since
//! its last snapshot. A store that keeps a copy of the agents between
//! snapshots (Redis) must follow every kind of change to an agent.

use switchboard_core::{AgentId, Error, QueueId, TenantId};

use super::contract::{check, sample_profile, sample_record};
use super::{RoutingState, Snapshot, no_events};
use crate::domain::{AgentLive, ContactRecord};

const CHAT: i32 = 3;
/// Enough head contacts for every contact this contract enqueues.
const HEADS: usize = 8;

fn agent_in<'a>(snapshot: &'a Snapshot, agent: &AgentId) -> Option<&'a AgentLive> {
    snapshot.agents.iter().find(|live| &live.profile.agent == agent)
}

fn chat_load(snapshot: &Snapshot, agent: &AgentId) -> Option<i32> {
    agent_in(snapshot, agent).map(|live| live.load.get(&CHAT).copied().unwrap_or(0))
}

/// `reader` and `writer` are two replicas' handles on one state (for a
/// store without replicas, the same store twice). Every change is made by
/// `writer` between two snapshots by `reader`: offers, accepts,
/// completions with a wrap-up hold, withdrawals, availability and profile
/// changes.
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

    check(writer.reserve(&stored(&first).await?, &alice, 60_000, &[]).await?, "offered to alice")?;
    let view = reader.snapshot(HEADS).await?;
    check(chat_load(&view, &alice) == Some(1), "another replica's offer counts in alice's load")?;

    writer.upsert_agent(&sample_profile(&bob, &[&acme], 1, 0), false, 20).await?;
    let view = reader.snapshot(HEADS).await?;
    check(agent_in(&view, &bob).is_none(), "bob, gone away, is not offered work")?;

    writer.accept(&acme, &first.contact, &alice, 30, &no_events).await?;
    writer.complete(&acme, &first.contact, &alice, 40, &no_events).await?;
    let view = reader.snapshot(HEADS).await?;
    let live = agent_in(&view, &alice).ok_or_else(|| Error::internal("alice in the snapshot"))?;
    check(live.load.get(&CHAT).copied().unwrap_or(0) == 0, "the completion freed alice's room")?;
    check(live.idle_since_ms == 40 && live.hold_until_ms == 30_040, "alice idle since it, in wrap-up until 30 s on")?;

    writer.upsert_agent(&sample_profile(&bob, &[&acme], 3, 0), true, 50).await?;
    let view = reader.snapshot(HEADS).await?;
    let live = agent_in(&view, &bob).ok_or_else(|| Error::internal("bob in the snapshot"))?;
    check(live.profile.capacities.get(&CHAT) == Some(&3), "bob is back, with the capacity his new profile gives")?;

    check(writer.reserve(&stored(&second).await?, &bob, 60_000, &[]).await?, "offered to bob")?;
    check(reader.snapshot(HEADS).await?.waiting.is_empty(), "nothing waits")?;
    writer.withdraw(&acme, &second.contact, Some(&bob), None, 60, &no_events).await?;
    let view = reader.snapshot(HEADS).await?;
    check(view.waiting.len() == 1 && chat_load(&view, &bob) == Some(0), "the withdrawn offer freed bob's room")?;
    Ok(())
}
