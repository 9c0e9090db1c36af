//! Fair sharing of agents that serve several tenants: fair queueing over
//! tenants, by finish tags.
//!
//! Each offer on a shared agent is one unit of service and charges its
//! tenant `1 / weight`: the tenant's tag moves from its start to `start + 1
//! / weight`. Among tenants that have a contact a free shared agent may
//! take, the one with the smallest start goes first. A tenant's start is its
//! tag, lifted to no less than `min(tag_u - 1 / w_u) - 1 / w_t` over the
//! waiting tenants `u` it competes with (those sharing an available agent
//! with it): a tenant that stopped waiting banks at most about two turns,
//! and while tenants wait together the lift never binds, so each pair stays
//! within `|W_i / w_i - W_j / w_j| <= 1 / w_i + 1 / w_j` of its weights —
//! none starves and shares converge to the weights.
//!
//! The reference is local to the tenants that compete: traffic on agents a
//! tenant does not share moves nothing of its turns. Offers on agents that
//! serve one tenant only do not count.

use std::collections::BTreeMap;

use switchboard_core::TenantId;

/// Each tenant's tag, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FairShares {
    pub tag_by_tenant: BTreeMap<TenantId, f64>,
}

impl FairShares {
    pub fn tag(&self, tenant: &TenantId) -> f64 {
        self.tag_by_tenant.get(tenant).copied().unwrap_or(0.0)
    }

    /// When `tenant`'s next shared offer would start, given the tenants it
    /// competes with now (`competitors`, each with its weight) and its own
    /// weight.
    pub fn start<'tenant>(
        &self,
        tenant: &TenantId,
        weight: u32,
        competitors: impl IntoIterator<Item = (&'tenant TenantId, u32)>,
    ) -> f64 {
        let floor = competitors
            .into_iter()
            .map(|(competitor, competitor_weight)| self.tag(competitor) - share_of(competitor_weight))
            .reduce(f64::min);
        let tag = self.tag(tenant);
        match floor {
            Some(floor) => tag.max(floor - share_of(weight)),
            None => tag,
        }
    }

    /// Charges `tenant` one offer that started at `start`: its tag becomes
    /// `start + 1 / weight`; returns what the tag moved by (the amount to
    /// add to the stored tag).
    pub fn serve(&mut self, tenant: &TenantId, start: f64, weight: u32) -> f64 {
        let before = self.tag(tenant);
        let after = start.max(before) + share_of(weight);
        self.tag_by_tenant.insert(tenant.clone(), after);
        after - before
    }

    /// Adds `deltas` to the tags (what the store does with what a pass charged).
    pub fn add(&mut self, deltas: &BTreeMap<TenantId, f64>) {
        for (tenant, delta) in deltas {
            *self.tag_by_tenant.entry(tenant.clone()).or_insert(0.0) += delta;
        }
    }
}

/// One offer's charge to a tenant of `weight` (at least 1).
fn share_of(weight: u32) -> f64 {
    1.0 / f64::from(weight.max(1))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use switchboard_core::{AgentId, QueueId};

    use super::*;
    use crate::domain::matching::{is_shared, plan_offers};
    use crate::domain::{AgentLive, AgentProfile, ContactRecord};
    use crate::store::contract::sample_record;

    const CHAT: i32 = 3;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name, "t").expect("tenant")
    }

    fn tenant_number(index: usize) -> TenantId {
        tenant(&format!("tenant-{index}"))
    }

    /// A free agent taking one chat, serving `tenants`.
    fn agent(index: usize, tenants: Vec<TenantId>) -> AgentLive {
        AgentLive {
            profile: AgentProfile {
                agent: AgentId::parse(&format!("agent-{index}"), "a").expect("agent"),
                tenants,
                skills: BTreeMap::new(),
                tenant_skills: BTreeMap::new(),
                capacities: BTreeMap::from([(CHAT, 1)]),
            },
            available: true,
            idle_since_ms: i64::try_from(index).expect("small"),
            last_offer_ms: 0,
            load: BTreeMap::new(),
            hold_until_ms: 0,
        }
    }

    fn chat(tenant: &TenantId, priority: i32, enqueue_ms: i64) -> ContactRecord {
        sample_record(tenant, &QueueId::parse("support", "q").expect("queue"), CHAT, priority, enqueue_ms)
    }

    /// Runs matching passes over `waiting` on `agents` (all free again
    /// after each pass, as under saturation) while every tenant has more
    /// waiting than a pass can offer, so all wait throughout; the tenants
    /// served, in order, counting shares as the engine does.
    fn saturate(mut waiting: Vec<ContactRecord>, agents: &[AgentLive], weights: &[u32]) -> Vec<TenantId> {
        let weight_of = |tenant: &TenantId| {
            let index: usize = tenant.as_str().trim_start_matches("tenant-").parse().expect("index");
            weights[index]
        };
        let mut shares = FairShares::default();
        let mut served = Vec::new();
        let tenants: Vec<TenantId> = (0..weights.len()).map(tenant_number).collect();
        let backlogged = |waiting: &[ContactRecord], tenant: &TenantId| {
            waiting.iter().filter(|contact| contact.tenant == *tenant).count()
        };
        while tenants.iter().all(|tenant| backlogged(&waiting, tenant) >= agents.len()) {
            let offers = plan_offers(&waiting, agents, 10_000_000, &shares, &weight_of);
            assert!(!offers.is_empty(), "free agents and waiting contacts make offers");
            let mut offered = Vec::new();
            let mut charges: BTreeMap<TenantId, f64> = BTreeMap::new();
            for offer in &offers {
                let contact = &waiting[offer.contact_index];
                assert_eq!(offer.share_charge > 0.0, is_shared(&agents[offer.agent_index]));
                *charges.entry(contact.tenant.clone()).or_insert(0.0) += offer.share_charge;
                served.push(contact.tenant.clone());
                offered.push(offer.contact_index);
            }
            // As the engine does: the pass's charges added to the stored tags.
            shares.add(&charges);
            offered.sort_unstable();
            for index in offered.into_iter().rev() {
                waiting.remove(index);
            }
        }
        served
    }

    proptest! {
        /// While every tenant waits for the same shared agents, after any
        /// number of offers each pair of tenants is within one offer of its
        /// weights (`|W_i / w_i - W_j / w_j| <= 1 / w_i + 1 / w_j`), whatever
        /// the tenants' own priorities: nobody starves, and the shares
        /// converge to the weights.
        #[test]
        fn shared_agents_are_split_by_weight_and_nobody_starves(
            weights in proptest::collection::vec(1u32..6, 2..5),
            agent_count in 1usize..4,
            priorities in proptest::collection::vec(0i32..101, 240),
        ) {
            let tenants: Vec<TenantId> = (0..weights.len()).map(tenant_number).collect();
            let agents: Vec<AgentLive> = (0..agent_count).map(|index| agent(index, tenants.clone())).collect();
            let waiting: Vec<ContactRecord> = priorities
                .iter()
                .enumerate()
                .map(|(index, priority)| {
                    chat(&tenants[index % tenants.len()], *priority, i64::try_from(index).expect("small"))
                })
                .collect();
            let served = saturate(waiting, &agents, &weights);
            let mut counts = vec![0u32; weights.len()];
            for tenant in &served {
                let index = tenants.iter().position(|known| known == tenant).expect("a known tenant");
                counts[index] += 1;
                for i in 0..weights.len() {
                    for j in 0..weights.len() {
                        let normalized = |k: usize| f64::from(counts[k]) / f64::from(weights[k]);
                        let bound = 1.0 / f64::from(weights[i]) + 1.0 / f64::from(weights[j]) + 1e-9;
                        prop_assert!((normalized(i) - normalized(j)).abs() <= bound,
                            "after {} offers: counts {:?} for weights {:?}", served.len(), counts, weights);
                    }
                }
            }
            prop_assert!(counts.iter().all(|count| *count > 0), "every tenant was served: {counts:?}");
        }
    }

    #[test]
    fn a_tenant_ahead_on_shared_agents_still_gets_its_own_and_they_do_not_count() {
        let (acme, globex) = (tenant_number(0), tenant_number(1));
        // The shared agent has been idle longest: without fair sharing
        // acme's older contact would take it and globex would get nothing.
        let shared = agent(0, vec![acme.clone(), globex.clone()]);
        let own = agent(1, vec![acme.clone()]);
        let mut shares = FairShares::default();
        for _ in 0..5 {
            let start = shares.tag(&acme);
            shares.serve(&acme, start, 1);
        }
        let waiting = vec![chat(&acme, 0, 0), chat(&acme, 0, 1), chat(&globex, 0, 100)];
        let agents = [shared, own];
        let offers = plan_offers(&waiting, &agents, 1_000_000, &shares, &|_| 1);
        let served: Vec<(&str, usize)> =
            offers.iter().map(|offer| (waiting[offer.contact_index].tenant.as_str(), offer.agent_index)).collect();
        assert_eq!(served, [("tenant-1", 0), ("tenant-0", 1)], "globex's turn on the shared agent, acme on its own");
        assert!(!is_shared(&agents[1]), "an offer on acme's own agent is not counted in the share");
    }

    /// Traffic on agents a tenant does not share moves nothing of its turns:
    /// two pools, the busy one far ahead, and the quiet one still alternates
    /// whatever its tenants' priorities.
    #[test]
    fn another_pools_traffic_does_not_decide_the_turns_in_this_one() {
        let [acme, globex, initech, umbrella] = [0, 1, 2, 3].map(tenant_number);
        let agents = [agent(0, vec![acme.clone(), globex.clone()]), agent(1, vec![initech.clone(), umbrella.clone()])];
        let mut shares = FairShares::default();
        shares.tag_by_tenant.insert(initech.clone(), 1_000.0);
        shares.tag_by_tenant.insert(umbrella.clone(), 1_000.0);
        let mut waiting: Vec<ContactRecord> = (0..40)
            .flat_map(|index| {
                [
                    chat(&acme, 100, index),
                    chat(&globex, 0, index + 1_000),
                    chat(&initech, 0, index),
                    chat(&umbrella, 0, index),
                ]
            })
            .collect();
        let mut acme_turns = 0;
        for _ in 0..10 {
            let offers = plan_offers(&waiting, &agents, 10_000_000, &shares, &|_| 1);
            let mut charges: BTreeMap<TenantId, f64> = BTreeMap::new();
            let mut offered: Vec<usize> = Vec::new();
            for offer in &offers {
                let tenant = waiting[offer.contact_index].tenant.clone();
                acme_turns += usize::from(tenant == acme);
                *charges.entry(tenant).or_insert(0.0) += offer.share_charge;
                offered.push(offer.contact_index);
            }
            shares.add(&charges);
            offered.sort_unstable();
            for index in offered.into_iter().rev() {
                waiting.remove(index);
            }
        }
        assert_eq!(acme_turns, 5, "acme and globex take turns on their agent");
    }

    #[test]
    fn a_high_priority_tenant_does_not_take_a_shared_agent_out_of_turn() {
        let (acme, globex) = (tenant_number(0), tenant_number(1));
        let shared = agent(0, vec![acme.clone(), globex.clone()]);
        let mut shares = FairShares::default();
        shares.serve(&acme, 0.0, 1);
        // acme's contact is urgent and older; globex's turn comes first.
        let waiting = vec![chat(&acme, 100, 0), chat(&globex, 0, 5_000)];
        let offers = plan_offers(&waiting, std::slice::from_ref(&shared), 1_000_000, &shares, &|_| 1);
        assert_eq!(offers.len(), 1);
        assert_eq!(waiting[offers[0].contact_index].tenant, globex);
    }

    #[test]
    fn a_tenant_that_stopped_waiting_banks_about_two_turns_at_most() {
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let mut shares = FairShares::default();
        for _ in 0..10 {
            let start = shares.start(&acme, 1, [(&globex, 1)]);
            shares.serve(&acme, start, 1);
        }
        // globex never waited: its start is lifted to within two turns of acme.
        let start = shares.start(&globex, 1, [(&acme, 1)]);
        assert_eq!(start, 10.0 - 1.0 - 1.0);
        let mut turns = 0;
        while shares.start(&globex, 1, [(&acme, 1)]) < shares.start(&acme, 1, [(&globex, 1)]) {
            let start = shares.start(&globex, 1, [(&acme, 1)]);
            shares.serve(&globex, start, 1);
            turns += 1;
        }
        assert!(turns <= 2, "globex took {turns} turns in a row");
        assert_eq!(shares.start(&globex, 1, []), shares.tag(&globex), "alone, a tenant starts at its tag");
    }

    #[test]
    fn charges_add_up_as_the_store_adds_them() {
        let acme = tenant("acme");
        let mut planned = FairShares::default();
        let first = planned.serve(&acme, 0.0, 2);
        let second = planned.serve(&acme, planned.tag(&acme), 2);
        let mut stored = FairShares::default();
        stored.add(&[(acme.clone(), first + second)].into());
        assert_eq!(stored, planned);
    }
}
