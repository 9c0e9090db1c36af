//! Matching waiting contacts to available agents.
//!
//! Contacts are served in rank order (priority, then age) across all
//! queues of the pool; each goes to the eligible agent with free capacity
//! that has been idle longest (ties: agent id). The plan is computed on a
//! snapshot; the store then reserves each pair atomically, re-checking
//! that nothing changed in between.

use std::collections::HashMap;

use switchboard_core::TenantId;

use super::{AgentLive, ContactRecord};

/// One planned offer: indexes into the snapshot's contacts and agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedOffer {
    pub contact_index: usize,
    pub agent_index: usize,
}

/// Plans offers for `waiting` (queued contacts, any order) on `agents`.
/// Never plans a contact twice or an agent beyond its capacity, and leaves
/// no waiting contact unplanned while an agent that could take it is free
/// (work-conserving).
pub fn plan_offers(waiting: &[ContactRecord], agents: &[AgentLive]) -> Vec<PlannedOffer> {
    let mut contact_order: Vec<usize> = (0..waiting.len()).collect();
    contact_order.sort_by(|left, right| {
        waiting[*left]
            .rank()
            .total_cmp(&waiting[*right].rank())
            .then_with(|| waiting[*left].contact.cmp(&waiting[*right].contact))
    });
    let mut projected_agents: Vec<AgentLive> = agents.to_vec();
    // Candidates per tenant, longest idle first (ties: agent id), so the
    // first eligible candidate is the one the strategy picks and only the
    // contact's own tenant's agents are scanned.
    let mut candidates_by_tenant: HashMap<&TenantId, Vec<usize>> = HashMap::new();
    for (agent_index, agent) in agents.iter().enumerate() {
        for tenant in &agent.profile.tenants {
            candidates_by_tenant.entry(tenant).or_default().push(agent_index);
        }
    }
    for candidates in candidates_by_tenant.values_mut() {
        candidates.sort_by(|left, right| {
            agents[*left]
                .idle_since_ms
                .cmp(&agents[*right].idle_since_ms)
                .then_with(|| agents[*left].profile.agent.cmp(&agents[*right].profile.agent))
        });
        candidates.dedup();
    }
    let mut offers = Vec::new();
    for contact_index in contact_order {
        let contact = &waiting[contact_index];
        let Some(candidates) = candidates_by_tenant.get(&contact.tenant) else {
            continue;
        };
        let Some(agent_index) = candidates.iter().copied().find(|index| projected_agents[*index].can_take(contact))
        else {
            continue;
        };
        *projected_agents[agent_index].load.entry(contact.channel).or_insert(0) += 1;
        offers.push(PlannedOffer { contact_index, agent_index });
    }
    offers
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;
    use switchboard_core::{AgentId, ContactId, QueueId, TenantId};

    use super::*;
    use crate::domain::{AgentProfile, CHANNEL_VOICE, RoutingStatus, SkillRequirement};

    const TENANTS: [&str; 2] = ["acme", "globex"];
    const CHANNELS: [i32; 3] = [CHANNEL_VOICE, 2, 3];

    fn contact_strategy() -> impl Strategy<Value = ContactRecord> {
        (0usize..2, 0usize..3, 0i32..3, 0i64..1_000, proptest::option::of(1i32..6)).prop_map(
            |(tenant, channel, priority, enqueue_ms, skill_level)| ContactRecord {
                tenant: TenantId::parse(TENANTS[tenant], "t").expect("tenant"),
                contact: ContactId::generate(),
                queue: QueueId::parse("q", "q").expect("queue"),
                channel: CHANNELS[channel],
                customer: String::new(),
                subject: String::new(),
                priority,
                required_skills: skill_level
                    .map(|min_level| SkillRequirement { name: "billing".to_owned(), min_level })
                    .into_iter()
                    .collect(),
                enqueue_ms,
                offer_timeout_ms: 1_000,
                status: RoutingStatus::Queued,
                agent: None,
                offer_expire_ms: 0,
                answer_ms: 0,
                end_ms: 0,
            },
        )
    }

    fn agent_strategy(index: usize) -> impl Strategy<Value = AgentLive> {
        (
            proptest::sample::subsequence(vec![0usize, 1], 0..=2),
            0i32..2,
            0i32..3,
            0i32..4,
            proptest::option::of(1i32..6),
            any::<bool>(),
            0i64..100,
            0i32..2,
        )
            .prop_map(move |(tenants, voice, email, chat, billing, available, idle, chat_load)| AgentLive {
                profile: AgentProfile {
                    agent: AgentId::parse(&format!("agent-{index}"), "a").expect("agent"),
                    tenants: tenants
                        .into_iter()
                        .map(|tenant| TenantId::parse(TENANTS[tenant], "t").expect("tenant"))
                        .collect(),
                    skills: billing.map(|level| ("billing".to_owned(), level)).into_iter().collect(),
                    capacities: BTreeMap::from([(CHANNEL_VOICE, voice), (2, email), (3, chat)]),
                },
                available,
                idle_since_ms: idle,
                load: BTreeMap::from([(3, chat_load.min(chat))]),
            })
    }

    fn agents_strategy() -> impl Strategy<Value = Vec<AgentLive>> {
        (0usize..6).prop_flat_map(|count| (0..count).map(agent_strategy).collect::<Vec<_>>())
    }

    fn apply(agents: &[AgentLive], waiting: &[ContactRecord], offers: &[PlannedOffer]) -> Vec<AgentLive> {
        let mut after = agents.to_vec();
        for offer in offers {
            *after[offer.agent_index].load.entry(waiting[offer.contact_index].channel).or_insert(0) += 1;
        }
        after
    }

    proptest! {
        #[test]
        fn plans_are_safe_and_work_conserving(
            waiting in proptest::collection::vec(contact_strategy(), 0..25),
            agents in agents_strategy(),
        ) {
            let offers = plan_offers(&waiting, &agents);
            let offered: HashSet<usize> = offers.iter().map(|offer| offer.contact_index).collect();
            prop_assert_eq!(offered.len(), offers.len(), "a contact is offered at most once");

            for offer in &offers {
                let agent = &agents[offer.agent_index];
                let contact = &waiting[offer.contact_index];
                prop_assert!(agent.available && agent.profile.tenants.contains(&contact.tenant));
            }
            let after = apply(&agents, &waiting, &offers);
            for agent in &after {
                for (channel, load) in &agent.load {
                    let capacity = agent.profile.capacities.get(channel).copied().unwrap_or(0);
                    let before = agents.iter().find(|a| a.profile.agent == agent.profile.agent)
                        .map(|a| a.load_on(*channel)).unwrap_or(0);
                    prop_assert!(*load <= capacity.max(before), "agent over capacity on channel {}", channel);
                }
                prop_assert!(agent.load_on(CHANNEL_VOICE) == 0 || agent.total_load() == agent.load_on(CHANNEL_VOICE),
                    "voice never mixed with other work");
            }
            for (index, contact) in waiting.iter().enumerate() {
                if offered.contains(&index) {
                    continue;
                }
                prop_assert!(after.iter().all(|agent| !agent.can_take(contact)),
                    "an eligible agent stayed idle while a contact waited");
            }
        }

        #[test]
        fn higher_rank_is_served_first_when_capacity_is_short(
            waiting in proptest::collection::vec(contact_strategy(), 2..15),
        ) {
            let agent = AgentLive {
                profile: AgentProfile {
                    agent: AgentId::parse("solo", "a").expect("agent"),
                    tenants: TENANTS.iter().map(|t| TenantId::parse(t, "t").expect("tenant")).collect(),
                    skills: BTreeMap::from([("billing".to_owned(), 5)]),
                    capacities: BTreeMap::from([(CHANNEL_VOICE, 1), (2, 1), (3, 1)]),
                },
                available: true,
                idle_since_ms: 0,
                load: BTreeMap::new(),
            };
            let offers = plan_offers(&waiting, std::slice::from_ref(&agent));
            prop_assert!(offers.len() <= 1 || !offers.iter().any(|o| waiting[o.contact_index].channel == CHANNEL_VOICE));
            if let Some(first) = offers.first() {
                let first_rank = waiting[first.contact_index].rank();
                // Every contact ranked ahead of the first offer could not be taken at all.
                for contact in &waiting {
                    if contact.rank() < first_rank {
                        prop_assert!(!agent.can_take(contact));
                    }
                }
            }
        }
    }

    #[test]
    fn longest_idle_agent_wins() {
        let mut agents: Vec<AgentLive> = Vec::new();
        for (name, idle) in [("recent", 50), ("longest", 10)] {
            agents.push(AgentLive {
                profile: AgentProfile {
                    agent: AgentId::parse(name, "a").expect("agent"),
                    tenants: vec![TenantId::parse("acme", "t").expect("tenant")],
                    skills: BTreeMap::new(),
                    capacities: BTreeMap::from([(3, 1)]),
                },
                available: true,
                idle_since_ms: idle,
                load: BTreeMap::new(),
            });
        }
        let waiting = vec![crate::domain::tests::record(0, 1)];
        let offers = plan_offers(&waiting, &agents);
        assert_eq!(offers, vec![PlannedOffer { contact_index: 0, agent_index: 1 }]);
    }
}
