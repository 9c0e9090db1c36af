//! `switchboard kpi recompute [--from …] [--to …]`: rebuilds the KPI facts
//! of the contacts that arrived in a range (all, without one) from the
//! event log retained on the broker, and every bucket from the facts.
//! Facts are order-insensitive and idempotent, so the rebuilt figures are
//! what the live aggregate would hold had it seen every retained event
//! once. Without a range, agents' figures (time in state, routing counts)
//! are rebuilt from the whole log too, and the outbound messages created
//! in the range always. Every rebuilt contact takes its tenant's current
//! first-contact window and scope. Deleted tenants stay erased.

use std::collections::BTreeSet;

use anyhow::Context;
use switchboard_core::TenantId;
use switchboard_core::event::{ALL_TOPICS, CONTACTS_TOPIC, PRESENCE_TOPIC, ROUTING_TOPIC};
use switchboard_kpi::domain::ContactFacts;
use switchboard_kpi::domain::agents::{AgentEvent, agent_event};
use switchboard_kpi::domain::events::recompute_with_rules;
use switchboard_kpi::domain::live::{AgentStateUpdate, agent_state_update};
use switchboard_kpi::domain::messages::{OutboundMessage, outbound_message};
use switchboard_kpi::store::KpiStore;
use switchboard_kpi::store::postgres::{MIGRATION_SERVICE, MIGRATIONS, PostgresKpiStore};
use switchboard_platform::Config;
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::{EventBus, Received, Scan, decode_record};
use switchboard_platform::credentials::{CredentialStore, PostgresCredentialStore};
use switchboard_platform::postgres::connect_migrated;
use switchboard_proto::events::v1::EventEnvelope;

/// Which contacts to rebuild: those that arrived in `[from, to)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Range {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// An RFC 3339 instant, e.g. `2026-12-01T00:00:00Z`, in milliseconds.
pub fn parse_instant(value: &str) -> anyhow::Result<i64> {
    let instant: jiff::Timestamp = value.parse().with_context(|| format!("`{value}` is not an RFC 3339 instant"))?;
    Ok(instant.as_millisecond())
}

pub async fn kpi_recompute(config: &Config, range: Range) -> anyhow::Result<()> {
    let bus = KafkaBus::connect(&config.kafka, &ALL_TOPICS).await?;
    let mut envelopes = Vec::new();
    let mut malformed = 0_usize;
    for topic in [CONTACTS_TOPIC, ROUTING_TOPIC, PRESENCE_TOPIC] {
        bus.scan(topic, &mut |record| {
            match decode_record(record) {
                Received::Event(delivery) => envelopes.push(delivery.envelope),
                Received::Malformed(_) => malformed += 1,
            }
            Scan::Continue
        })
        .await?;
    }
    let pool = connect_migrated(&config.postgres, MIGRATION_SERVICE, MIGRATIONS).await?;
    let credentials = PostgresCredentialStore::connect(pool.clone()).await?;
    let deleted: BTreeSet<TenantId> = credentials
        .snapshot()
        .await?
        .tenants
        .into_iter()
        .filter(|tenant| tenant.is_deleted())
        .map(|tenant| tenant.id)
        .collect();
    let in_range = |facts: &ContactFacts| {
        let arrival = facts.arrival_ms();
        !deleted.contains(&facts.tenant)
            && range.from_ms.is_none_or(|from_ms| arrival.is_some_and(|at| at >= from_ms))
            && range.to_ms.is_none_or(|to_ms| arrival.is_some_and(|at| at < to_ms))
    };
    let store = PostgresKpiStore::connect(pool).await?;
    // Every contact takes its tenant's current first-contact rule.
    let rules = store.fcr_rules().await?;
    let rebuilt: Vec<ContactFacts> =
        recompute_with_rules(&envelopes, &rules).into_values().filter(|facts| in_range(facts)).collect();
    let replaced = store.replace_facts(range.from_ms, range.to_ms, &rebuilt).await?;
    println!(
        "{} events read ({malformed} malformed records skipped); {} contacts' facts rebuilt, {replaced} replaced; \
         buckets rebuilt from the facts",
        envelopes.len(),
        rebuilt.len()
    );
    let messages: Vec<OutboundMessage> = envelopes
        .iter()
        .filter_map(|envelope| outbound_message(envelope).ok().flatten())
        .filter(|message| !deleted.contains(&message.tenant))
        .collect();
    let replaced_messages = store.replace_outbound_messages(range.from_ms, range.to_ms, &messages).await?;
    println!("outbound messages rebuilt from {} reports, {replaced_messages} replaced", messages.len());
    if range.from_ms.is_some() || range.to_ms.is_some() {
        println!("agent figures left as they are (a range rebuilds contacts only; rebuild without one for agents)");
        return Ok(());
    }
    let (changes, agent_events) = agent_activity(&envelopes, &deleted);
    store.replace_agent_figures(&changes, &agent_events).await?;
    println!("agent figures rebuilt: {} state changes, {} routing events", changes.len(), agent_events.len());
    Ok(())
}

/// The agents' state changes and routing counts of the log, deleted
/// tenants left out.
fn agent_activity(
    envelopes: &[EventEnvelope],
    deleted: &BTreeSet<TenantId>,
) -> (Vec<AgentStateUpdate>, Vec<AgentEvent>) {
    let mut changes = Vec::new();
    let mut events = Vec::new();
    for envelope in envelopes {
        // The live consumer dead-letters what does not parse; so does this.
        if let Ok(Some(mut change)) = agent_state_update(envelope) {
            change.tenants.retain(|tenant| !deleted.contains(tenant));
            changes.push(change);
        }
        if let Ok(Some(event)) = agent_event(envelope)
            && !deleted.contains(&event.tenant)
        {
            events.push(event);
        }
    }
    (changes, events)
}
