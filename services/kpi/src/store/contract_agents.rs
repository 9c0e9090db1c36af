//! The agent cases of the KPI store contract (see [`super::contract`]).

use std::collections::BTreeMap;

use switchboard_core::{AgentId, Error, TenantId};
use switchboard_proto::presence::v1::AgentState;

use super::KpiStore;
use super::contract::expect_equal;
use crate::domain::INTERVAL_MS;
use crate::domain::agents::{AgentCounts, AgentEvent, AgentPage, AgentTimelines, StoredAgentFigures};
use crate::domain::live::AgentStateUpdate;

/// A small deterministic generator, so a failing case can be replayed.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[usize::try_from(self.next(from.len() as u64)).unwrap_or(0)].clone()
    }
}

/// Random state changes of three agents (one shared by two tenants) and
/// routing events over four intervals, delivered shuffled in batches with
/// duplicates: the store's figures equal those of the sorted timelines and
/// each event counted once, for every tenant; pages concatenate to the
/// whole; erasing a tenant leaves the other's figures as they were.
pub async fn agent_figures_equal_the_sorted_timelines(store: &dyn KpiStore, seed: u64) -> Result<(), Error> {
    let suffix = switchboard_test_support::unique_suffix();
    let acme = TenantId::parse(&format!("agents-acme-{suffix}"), "tenant")?;
    let globex = TenantId::parse(&format!("agents-globex-{suffix}"), "tenant")?;
    let agents: Vec<AgentId> =
        (0..3).map(|number| AgentId::parse(&format!("agent{number}-{suffix}"), "agent")).collect::<Result<_, _>>()?;
    let start_ms = 1_764_547_200_000; // 2025-12-01T00:00:00Z
    let mut sequence = Sequence(seed);
    let states = [AgentState::Available, AgentState::Away, AgentState::WrapUp, AgentState::Offline];
    let mut changes = Vec::new();
    for _ in 0..60 {
        let agent_number = sequence.next(3);
        let tenants = if agent_number == 0 { vec![acme.clone(), globex.clone()] } else { vec![acme.clone()] };
        changes.push(AgentStateUpdate {
            agent: agents[usize::try_from(agent_number).unwrap_or(0)].clone(),
            tenants,
            state: sequence.pick(&states),
            reason: sequence.pick(&["", "lunch", "Lunch", "training"]).to_owned(),
            at_ms: start_ms + i64::try_from(sequence.next(4 * 900)).unwrap_or(0) * 1_000,
        });
    }
    let mut events = Vec::new();
    for number in 0..40 {
        let agent_number = sequence.next(3);
        let tenant = if agent_number == 0 && number % 2 == 0 { globex.clone() } else { acme.clone() };
        let counts = match sequence.next(4) {
            0 => AgentCounts { offered: 1, callbacks: i64::from(number % 5 == 0), ..AgentCounts::default() },
            1 => AgentCounts { answered: 1, ..AgentCounts::default() },
            2 => AgentCounts { rejected: 1, ..AgentCounts::default() },
            _ => AgentCounts { handled: 1, handle_ms: 30_000 + number * 1_000, ..AgentCounts::default() },
        };
        events.push(AgentEvent {
            event_id: format!("evt-{suffix}-{number}"),
            tenant,
            agent: agents[usize::try_from(agent_number).unwrap_or(0)].clone(),
            interval_start_ms: start_ms + i64::try_from(sequence.next(4)).unwrap_or(0) * INTERVAL_MS,
            counts,
        });
    }
    let mut reference = AgentTimelines::default();
    reference.insert_all(&changes);
    reference.count_all(&events);

    let mut delivery: Vec<(Option<AgentStateUpdate>, Option<AgentEvent>)> = changes
        .iter()
        .map(|change| (Some(change.clone()), None))
        .chain(events.iter().map(|event| (None, Some(event.clone()))))
        .collect();
    for _ in 0..20 {
        let duplicate = sequence.pick(&delivery);
        delivery.push(duplicate);
    }
    for index in (1..delivery.len()).rev() {
        let other = usize::try_from(sequence.next(index as u64 + 1)).unwrap_or(0);
        delivery.swap(index, other);
    }
    for batch in delivery.chunks(7) {
        let batch_changes: Vec<AgentStateUpdate> = batch.iter().filter_map(|(change, _)| change.clone()).collect();
        let batch_events: Vec<AgentEvent> = batch.iter().filter_map(|(_, event)| event.clone()).collect();
        store.apply_state_changes(&batch_changes).await?;
        store.apply_agent_events(&batch_events).await?;
    }

    let end_ms = start_ms + 4 * INTERVAL_MS;
    let ranges =
        [(start_ms, end_ms), (start_ms + INTERVAL_MS, start_ms + 3 * INTERVAL_MS), (start_ms - INTERVAL_MS, start_ms)];
    for tenant in [&acme, &globex] {
        for (from_ms, to_ms) in ranges {
            let expected = reference.figures(tenant, from_ms, to_ms, &AgentPage::all());
            let actual = store.agent_figures(tenant, from_ms, to_ms, &AgentPage::all()).await?;
            expect_equal(
                &actual,
                &expected,
                &format!("agent figures of {tenant} in [{from_ms}, {to_ms}), seed {seed}"),
            )?;
        }
    }
    let whole = store.agent_figures(&acme, start_ms, end_ms, &AgentPage::all()).await?;
    let mut paged: Vec<StoredAgentFigures> = Vec::new();
    loop {
        let after = paged.last().map(|figures| figures.agent.clone());
        let page = store.agent_figures(&acme, start_ms, end_ms, &AgentPage { only: None, after, limit: 2 }).await?;
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    expect_equal(&paged, &whole, "pages of two agents concatenate to the whole")?;
    let only = AgentPage { only: Some(agents[1].clone()), after: None, limit: 10 };
    let one: Vec<StoredAgentFigures> = whole.iter().filter(|figures| figures.agent == agents[1]).cloned().collect();
    expect_equal(&store.agent_figures(&acme, start_ms, end_ms, &only).await?, &one, "one agent's figures")?;

    let acme_figures = store.agent_figures(&acme, start_ms, end_ms, &AgentPage::all()).await?;
    store.erase_tenant(&globex).await?;
    expect_equal(
        &store.agent_figures(&globex, start_ms, end_ms, &AgentPage::all()).await?,
        &Vec::new(),
        "an erased tenant has no agent figures",
    )?;
    let after_erasure = store.agent_figures(&acme, start_ms, end_ms, &AgentPage::all()).await?;
    let without_last = |figures: &[StoredAgentFigures]| -> BTreeMap<AgentId, _> {
        figures.iter().map(|stored| (stored.agent.clone(), stored.figures.clone())).collect()
    };
    expect_equal(&without_last(&after_erasure), &without_last(&acme_figures), "the other tenant keeps its figures")
}
