//! Fair sharing of agents that serve several tenants: start-time fair
//! queueing (SFQ) over tenants.
//!
//! Each offer on a shared agent is one unit of service. A tenant's next
//! offer starts at `max(virtual time, its last finish)` and finishes
//! `1 / weight` later; the virtual time is the start of the last offer
//! made. Among tenants that have a contact a free shared agent may take,
//! the one with the smallest start goes first. Hence, while tenants `i`
//! and `j` both wait, the offers `W` each gets stay within
//! `|W_i / w_i - W_j / w_j| <= 1 / w_i + 1 / w_j` of their weights: none
//! starves and shares converge to the weights. A tenant that stops waiting
//! banks nothing: when it comes back it starts at the virtual time.
//!
//! Offers on agents that serve one tenant only do not count: a tenant's
//! own agents are not part of the shared pool.

use std::collections::BTreeMap;

use switchboard_core::TenantId;

/// Where each tenant stands in the sharing, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FairShares {
    /// The start of the last offer made on a shared agent.
    pub virtual_time: f64,
    /// Each tenant's finish of its last offer on a shared agent.
    pub finish_by_tenant: BTreeMap<TenantId, f64>,
}

impl FairShares {
    /// When `tenant`'s next offer on a shared agent would start; smaller
    /// goes first.
    pub fn start(&self, tenant: &TenantId) -> f64 {
        self.finish_by_tenant.get(tenant).copied().unwrap_or(0.0).max(self.virtual_time)
    }

    /// Counts one offer to `tenant` on a shared agent, `weight` being its
    /// operator-set weight (at least 1).
    pub fn serve(&mut self, tenant: &TenantId, weight: u32) {
        let start = self.start(tenant);
        self.virtual_time = self.virtual_time.max(start);
        self.finish_by_tenant.insert(tenant.clone(), start + 1.0 / f64::from(weight.max(1)));
    }

    /// Takes the later of each tag from `newer` (another replica's view),
    /// so tags never move back.
    pub fn merge(&mut self, newer: &FairShares) {
        self.virtual_time = self.virtual_time.max(newer.virtual_time);
        for (tenant, finish) in &newer.finish_by_tenant {
            let current = self.finish_by_tenant.entry(tenant.clone()).or_insert(*finish);
            *current = current.max(*finish);
        }
    }
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
            for offer in &offers {
                let contact = &waiting[offer.contact_index];
                if is_shared(&agents[offer.agent_index]) {
                    shares.serve(&contact.tenant, weight_of(&contact.tenant));
                }
                served.push(contact.tenant.clone());
                offered.push(offer.contact_index);
            }
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
            shares.serve(&acme, 1);
        }
        let waiting = vec![chat(&acme, 0, 0), chat(&acme, 0, 1), chat(&globex, 0, 100)];
        let agents = [shared, own];
        let offers = plan_offers(&waiting, &agents, 1_000_000, &shares, &|_| 1);
        let served: Vec<(&str, usize)> =
            offers.iter().map(|offer| (waiting[offer.contact_index].tenant.as_str(), offer.agent_index)).collect();
        assert_eq!(served, [("tenant-1", 0), ("tenant-0", 1)], "globex's turn on the shared agent, acme on its own");
        assert!(!is_shared(&agents[1]), "an offer on acme's own agent is not counted in the share");
    }

    #[test]
    fn a_high_priority_tenant_does_not_take_a_shared_agent_out_of_turn() {
        let (acme, globex) = (tenant_number(0), tenant_number(1));
        let shared = agent(0, vec![acme.clone(), globex.clone()]);
        let mut shares = FairShares::default();
        shares.serve(&acme, 1);
        // acme's contact is urgent and older; globex's turn comes first.
        let waiting = vec![chat(&acme, 100, 0), chat(&globex, 0, 5_000)];
        let offers = plan_offers(&waiting, std::slice::from_ref(&shared), 1_000_000, &shares, &|_| 1);
        assert_eq!(offers.len(), 1);
        assert_eq!(waiting[offers[0].contact_index].tenant, globex);
    }

    #[test]
    fn a_tenant_that_stopped_waiting_banks_nothing() {
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let mut shares = FairShares::default();
        for _ in 0..10 {
            shares.serve(&acme, 1);
        }
        // globex never waited: it starts where the sharing stands, not at 0.
        assert_eq!(shares.start(&globex), shares.virtual_time);
        assert!(shares.start(&globex) > 8.0, "no credit for the time it was away");
        shares.serve(&globex, 1);
        assert!(shares.start(&acme) <= shares.start(&globex), "and it then takes turns with acme");
    }

    #[test]
    fn merging_keeps_the_later_tag() {
        let acme = tenant("acme");
        let mut ahead = FairShares::default();
        ahead.serve(&acme, 1);
        ahead.serve(&acme, 1);
        let mut behind = FairShares::default();
        behind.serve(&acme, 1);
        behind.merge(&ahead);
        assert_eq!(behind, ahead);
    }
}
