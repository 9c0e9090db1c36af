//! Matching waiting contacts to available agents.
//!
//! Each tenant's contacts are served in rank order (priority, then age)
//! across its queues, tenants taking turns on shared agents by their
//! operator-set weights (`fair_share`); each contact goes to the eligible agent (tenant served,
//! skills met, capacity free) its queue's strategy prefers: longest idle,
//! least occupied, best skill or round robin, ties going to the longest
//! idle (then agent id). Requirements are those in force at the planning
//! instant (bullseye escalation), and a contact held for a preferred or
//! pinned agent goes to that agent only. The plan is computed on a
//! snapshot; the store then reserves each pair atomically, re-checking
//! that nothing changed in between.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use switchboard_core::{AgentId, TenantId};

use super::fair_share::FairShares;
use super::{AgentLive, ContactRecord, Strategy};

/// One planned offer: indexes into the snapshot's contacts and agents, and
/// what it charges its tenant's fair-share tag if made (0 on an agent that
/// serves one tenant).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedOffer {
    pub contact_index: usize,
    pub agent_index: usize,
    pub share_charge: f64,
}

/// Whether `agent` may be planned for `contact` at `now_ms`, given the ids
/// of the available agents (a preference for an agent not among them
/// lapses). The planner and its properties share this one rule.
pub fn eligible(agent: &AgentLive, contact: &ContactRecord, now_ms: i64, available: &HashSet<&AgentId>) -> bool {
    let preferred_available = contact.reserved_for_at(now_ms).is_some_and(|preferred| available.contains(preferred));
    agent.can_take_at(contact, now_ms, preferred_available)
}

/// Plans offers at `now_ms` for `waiting` (queued contacts, any order) on
/// `agents` (the available ones). Never plans a contact twice or an agent
/// beyond its capacity, and leaves no waiting contact unplanned while an
/// agent [`eligible`] for it is free (work-conserving).
///
/// Each tenant's contacts go in its own rank order; between tenants, the
/// one whose next offer starts first in `shares` (see [`FairShares`], with
/// `weight_of` each tenant's weight) goes next, so shared agents are split
/// by the operator's weights and not by the tenants' own priorities.
pub fn plan_offers(
    waiting: &[ContactRecord],
    agents: &[AgentLive],
    now_ms: i64,
    shares: &FairShares,
    weight_of: &dyn Fn(&TenantId) -> u32,
) -> Vec<PlannedOffer> {
    let available: HashSet<&AgentId> =
        agents.iter().filter(|agent| agent.available).map(|agent| &agent.profile.agent).collect();
    let by_rank = |left: &usize, right: &usize| {
        waiting[*left]
            .rank()
            .total_cmp(&waiting[*right].rank())
            .then_with(|| waiting[*left].contact.cmp(&waiting[*right].contact))
    };
    // Tenants compete where an available agent serves both.
    let mut competitors_by_tenant: HashMap<&TenantId, BTreeSet<&TenantId>> = HashMap::new();
    for agent in agents.iter().filter(|agent| agent.available && is_shared(agent)) {
        for tenant in &agent.profile.tenants {
            let competitors = competitors_by_tenant.entry(tenant).or_default();
            competitors.extend(agent.profile.tenants.iter().filter(|other| *other != tenant));
        }
    }
    let mut lines_by_tenant: BTreeMap<&TenantId, VecDeque<usize>> = BTreeMap::new();
    for (contact_index, contact) in waiting.iter().enumerate() {
        lines_by_tenant.entry(&contact.tenant).or_default().push_back(contact_index);
    }
    for line in lines_by_tenant.values_mut() {
        line.make_contiguous().sort_by(by_rank);
    }
    let shares = shares.clone();
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
    let mut turns = Turns { shares, competitors_by_tenant, weight_of };
    while let Some(contact_index) = turns.next_contact(&mut lines_by_tenant, waiting) {
        let contact = &waiting[contact_index];
        let Some(candidates) = candidates_by_tenant.get(&contact.tenant) else {
            continue;
        };
        let mut eligible =
            candidates.iter().copied().filter(|index| eligible(&projected_agents[*index], contact, now_ms, &available));
        // Candidates are in longest-idle order and `min_by*` keeps the first
        // of equals, so ties fall back to longest idle; longest idle itself
        // is simply the first eligible.
        let chosen = match contact.strategy {
            Strategy::LongestIdle => eligible.next(),
            Strategy::LeastOccupied => eligible.min_by(|left, right| {
                let (left_load, left_capacity) = projected_agents[*left].occupancy();
                let (right_load, right_capacity) = projected_agents[*right].occupancy();
                (left_load * right_capacity).cmp(&(right_load * left_capacity))
            }),
            Strategy::BestSkill => {
                eligible.min_by_key(|index| std::cmp::Reverse(projected_agents[*index].skill_score(contact)))
            }
            Strategy::RoundRobin => eligible.min_by_key(|index| projected_agents[*index].last_offer_ms),
        };
        let Some(agent_index) = chosen else {
            continue;
        };
        let projected = &mut projected_agents[agent_index];
        *projected.load.entry(contact.channel).or_insert(0) += 1;
        // Within one pass, an agent just planned has the most recent offer.
        projected.last_offer_ms = i64::MAX;
        let share_charge =
            if is_shared(&agents[agent_index]) { turns.charge(&contact.tenant, &lines_by_tenant) } else { 0.0 };
        offers.push(PlannedOffer { contact_index, agent_index, share_charge });
    }
    offers
}

/// Whether an agent still has room, once `planned` is counted, for a
/// contact the pass read and left waiting: then that contact wanted
/// something else (skills, another agent, the end of a hold), and contacts
/// further back may not.
pub fn room_left_unplanned(waiting: &[ContactRecord], agents: &[AgentLive], planned: &[PlannedOffer]) -> bool {
    // Only the agents planned for are copied: under a backlog this runs
    // after every pass, and most agents get nothing.
    let mut projected: Vec<Cow<'_, AgentLive>> = agents.iter().map(Cow::Borrowed).collect();
    let mut was_planned = vec![false; waiting.len()];
    for offer in planned {
        was_planned[offer.contact_index] = true;
        *projected[offer.agent_index].to_mut().load.entry(waiting[offer.contact_index].channel).or_insert(0) += 1;
    }
    waiting
        .iter()
        .zip(was_planned)
        .filter(|(_, planned)| !planned)
        .any(|(contact, _)| projected.iter().any(|agent| agent.has_room_for(contact)))
}

/// Whether offers to `agent` count in the fair share: it serves several
/// distinct tenants.
pub fn is_shared(agent: &AgentLive) -> bool {
    agent.profile.tenants.iter().any(|tenant| *tenant != agent.profile.tenants[0])
}

/// The tenants' turns within one pass.
struct Turns<'pass> {
    shares: FairShares,
    competitors_by_tenant: HashMap<&'pass TenantId, BTreeSet<&'pass TenantId>>,
    weight_of: &'pass dyn Fn(&TenantId) -> u32,
}

impl<'pass> Turns<'pass> {
    /// When `tenant`'s next shared offer starts, against the competitors
    /// that still have contacts to plan.
    fn start(&self, tenant: &TenantId, lines_by_tenant: &BTreeMap<&'pass TenantId, VecDeque<usize>>) -> f64 {
        let waiting_competitors = self
            .competitors_by_tenant
            .get(tenant)
            .into_iter()
            .flatten()
            .filter(|competitor| lines_by_tenant.get(*competitor).is_some_and(|line| !line.is_empty()))
            .map(|competitor| (*competitor, (self.weight_of)(competitor)));
        self.shares.start(tenant, (self.weight_of)(tenant), waiting_competitors)
    }

    /// Charges `tenant` one shared offer; returns the charge.
    fn charge(&mut self, tenant: &TenantId, lines_by_tenant: &BTreeMap<&'pass TenantId, VecDeque<usize>>) -> f64 {
        let start = self.start(tenant, lines_by_tenant);
        self.shares.serve(tenant, start, (self.weight_of)(tenant))
    }

    /// Takes the next contact to plan off its tenant's line: the tenant
    /// whose next shared offer starts first, ties going to the
    /// better-ranked head (then the tenant id), so equal shares keep the
    /// global rank order.
    fn next_contact(
        &self,
        lines_by_tenant: &mut BTreeMap<&'pass TenantId, VecDeque<usize>>,
        waiting: &[ContactRecord],
    ) -> Option<usize> {
        let tenant = lines_by_tenant
            .iter()
            .filter_map(|(tenant, line)| {
                line.front().map(|head| (*tenant, self.start(tenant, lines_by_tenant), waiting[*head].rank()))
            })
            .min_by(|(left, left_start, left_rank), (right, right_start, right_rank)| {
                left_start
                    .total_cmp(right_start)
                    .then_with(|| left_rank.total_cmp(right_rank))
                    .then_with(|| left.cmp(right))
            })
            .map(|(tenant, _, _)| tenant)?;
        lines_by_tenant.get_mut(tenant).and_then(VecDeque::pop_front)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;
    use proptest::strategy::Strategy;
    use switchboard_core::{AgentId, ContactId, QueueId, TenantId};

    use super::*;
    use crate::domain::{AgentProfile, CHANNEL_VOICE, RoutingStatus, SkillRequirement};

    const TENANTS: [&str; 2] = ["acme", "globex"];
    const CHANNELS: [i32; 3] = [CHANNEL_VOICE, 2, 3];

    /// The planning instant of the properties: contacts arrive in 0..1000.
    const NOW_MS: i64 = 1_500;

    fn rules_strategy() -> impl Strategy<Value = crate::domain::QueueRules> {
        (proptest::option::of((0usize..6, any::<bool>(), 0i64..3_000)), proptest::option::of((0i64..2_000, 1i32..6)))
            .prop_map(|(preference, escalation)| crate::domain::QueueRules {
                escalations: escalation
                    .map(|(after_ms, min_level)| crate::domain::EscalationStep {
                        after_ms,
                        required_skills: vec![SkillRequirement { name: "billing".to_owned(), min_level }],
                    })
                    .into_iter()
                    .collect(),
                preferred_agent: preference
                    .map(|(agent, _, _)| AgentId::parse(&format!("agent-{agent}"), "a").expect("agent")),
                preferred_until_ms: preference.map_or(0, |(_, _, until)| until),
                pinned: preference.is_some_and(|(_, pinned, _)| pinned),
                ..crate::domain::QueueRules::default()
            })
    }

    fn contact_strategy() -> impl Strategy<Value = ContactRecord> {
        (0usize..2, 0usize..3, 0i32..3, 0i64..1_000, proptest::option::of(1i32..6), 0i32..5, rules_strategy()).prop_map(
            |(tenant, channel, priority, enqueue_ms, skill_level, strategy, rules)| ContactRecord {
                tenant: TenantId::parse(TENANTS[tenant], "t").expect("tenant"),
                contact: ContactId::generate(),
                queue: QueueId::parse("q", "q").expect("queue"),
                channel: CHANNELS[channel],
                customer: String::new(),
                subject: String::new(),
                session_url: String::new(),
                conversation: String::new(),
                priority,
                required_skills: skill_level
                    .map(|min_level| SkillRequirement { name: "billing".to_owned(), min_level })
                    .into_iter()
                    .collect(),
                strategy: crate::domain::Strategy::from_proto(strategy),
                priority_step_ms: crate::domain::STRICT_PRIORITY_STEP_MS,
                enqueue_ms,
                offer_timeout_ms: 1_000,
                status: RoutingStatus::Queued,
                agent: None,
                last_offered: None,
                offer_expire_ms: 0,
                answer_ms: 0,
                end_ms: 0,
                rules,
                revision: 0,
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
            (0i32..2, proptest::option::of(1i32..6)),
        )
            .prop_map(
                move |(tenants, voice, email, chat, billing, available, idle, (chat_load, acme_billing))| AgentLive {
                    profile: AgentProfile {
                        agent: AgentId::parse(&format!("agent-{index}"), "a").expect("agent"),
                        tenants: tenants
                            .into_iter()
                            .map(|tenant| TenantId::parse(TENANTS[tenant], "t").expect("tenant"))
                            .collect(),
                        skills: billing.map(|level| ("billing".to_owned(), level)).into_iter().collect(),
                        // A level for acme only, overriding the general one there.
                        tenant_skills: acme_billing
                            .map(|level| ((TenantId::parse("acme", "t").expect("tenant"), "billing".to_owned()), level))
                            .into_iter()
                            .collect(),
                        capacities: BTreeMap::from([(CHANNEL_VOICE, voice), (2, email), (3, chat)]),
                    },
                    available,
                    idle_since_ms: idle,
                    last_offer_ms: idle * 7 % 100,
                    load: BTreeMap::from([(3, chat_load.min(chat))]),
                    hold_until_ms: 0,
                },
            )
    }

    /// A plan with no history of sharing and every weight 1.
    fn plan(waiting: &[ContactRecord], agents: &[AgentLive], now_ms: i64) -> Vec<PlannedOffer> {
        plan_offers(waiting, agents, now_ms, &FairShares::default(), &|_| 1)
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
            let offers = plan(&waiting, &agents, NOW_MS);
            let offered: HashSet<usize> = offers.iter().map(|offer| offer.contact_index).collect();
            prop_assert_eq!(offered.len(), offers.len(), "a contact is offered at most once");

            for offer in &offers {
                let agent = &agents[offer.agent_index];
                let contact = &waiting[offer.contact_index];
                prop_assert!(agent.available && agent.profile.tenants.contains(&contact.tenant));
                prop_assert!(agent.meets(&contact.tenant, contact.requirements_at(NOW_MS)), "requirements in force are met");
                if contact.rules.pinned {
                    prop_assert_eq!(contact.rules.preferred_agent.as_ref(), Some(&agent.profile.agent), "pinned");
                }
            }
            let available: HashSet<&AgentId> =
                agents.iter().filter(|agent| agent.available).map(|agent| &agent.profile.agent).collect();
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
                prop_assert!(after.iter().all(|agent| !eligible(agent, contact, NOW_MS, &available)),
                    "an eligible agent stayed idle while a contact waited");
            }
        }

        /// Within a tenant, its own ranks decide; between tenants (equal
        /// shares here), the better-ranked head goes first.
        #[test]
        fn higher_rank_is_served_first_when_capacity_is_short(
            waiting in proptest::collection::vec(contact_strategy(), 2..15),
        ) {
            let agent = AgentLive {
                profile: AgentProfile {
                    agent: AgentId::parse("solo", "a").expect("agent"),
                    tenants: TENANTS.iter().map(|t| TenantId::parse(t, "t").expect("tenant")).collect(),
                    skills: BTreeMap::from([("billing".to_owned(), 5)]),
                    tenant_skills: BTreeMap::new(),
                    capacities: BTreeMap::from([(CHANNEL_VOICE, 1), (2, 1), (3, 1)]),
                },
                available: true,
                idle_since_ms: 0,
                last_offer_ms: 0,
                load: BTreeMap::new(),
                hold_until_ms: 0,
            };
            let waiting: Vec<ContactRecord> = waiting.into_iter().map(|mut contact| {
                contact.rules = crate::domain::QueueRules::default();
                contact
            }).collect();
            let offers = plan(&waiting, std::slice::from_ref(&agent), NOW_MS);
            prop_assert!(offers.len() <= 1 || !offers.iter().any(|o| waiting[o.contact_index].channel == CHANNEL_VOICE));
            if let Some(first) = offers.first() {
                let first_rank = waiting[first.contact_index].rank();
                // With equal shares every contact ranked ahead of the first
                // offer could not be taken at all.
                for contact in &waiting {
                    if contact.rank() < first_rank {
                        prop_assert!(!agent.can_take(contact));
                    }
                }
            }
            // However far one tenant's shares are ahead, its own order holds.
            let mut ahead = FairShares::default();
            ahead.serve(&TenantId::parse(TENANTS[0], "t").expect("tenant"), 0.0, 1);
            let offers = plan_offers(&waiting, std::slice::from_ref(&agent), NOW_MS, &ahead, &|_| 1);
            if let Some(first) = offers.first() {
                let first = &waiting[first.contact_index];
                for contact in waiting.iter().filter(|contact| contact.tenant == first.tenant) {
                    if contact.rank() < first.rank() {
                        prop_assert!(!agent.can_take(contact));
                    }
                }
                if first.tenant.as_str() == TENANTS[0] {
                    prop_assert!(waiting.iter().all(|contact| contact.tenant.as_str() == TENANTS[0] || !agent.can_take(contact)),
                        "the tenant behind in its share goes first");
                }
            }
        }
    }

    fn agent(name: &str, idle: i64, last_offer: i64, skill: i32, chat_capacity: i32, chat_load: i32) -> AgentLive {
        AgentLive {
            profile: AgentProfile {
                agent: AgentId::parse(name, "a").expect("agent"),
                tenants: vec![TenantId::parse("acme", "t").expect("tenant")],
                skills: BTreeMap::from([("billing".to_owned(), skill)]),
                tenant_skills: BTreeMap::new(),
                capacities: BTreeMap::from([(3, chat_capacity)]),
            },
            available: true,
            idle_since_ms: idle,
            last_offer_ms: last_offer,
            load: BTreeMap::from([(3, chat_load)]),
            hold_until_ms: 0,
        }
    }

    #[test]
    fn room_is_left_unplanned_only_when_a_free_agent_could_not_take_a_contact_it_has_room_for() {
        let mut wants_billing = crate::domain::tests::record(0, 1);
        wants_billing.required_skills = vec![SkillRequirement { name: "billing".to_owned(), min_level: 5 }];
        let plain = crate::domain::tests::record(0, 2);
        // skill level, chat capacity, chat load
        let junior_with_one_slot = [agent("junior", 1, 0, 1, 2, 1)];
        let waiting = [plain.clone(), wants_billing.clone()];
        let planned = plan(&waiting, &junior_with_one_slot, 10);
        assert_eq!(planned.len(), 1, "the junior takes the plain contact");
        assert!(
            !room_left_unplanned(&waiting, &junior_with_one_slot, &planned),
            "the slot went to the plain contact: no room is left"
        );
        let junior_with_room = [agent("junior", 1, 0, 1, 3, 0)];
        let planned = plan(&waiting, &junior_with_room, 10);
        assert!(
            room_left_unplanned(&waiting, &junior_with_room, &planned),
            "room is left and a contact waits for a skill: a deeper pass may find one the junior can take"
        );
        let full = [agent("full", 1, 0, 9, 2, 2)];
        assert!(!room_left_unplanned(std::slice::from_ref(&wants_billing), &full, &[]), "no agent has room");
    }

    fn chosen(strategy: crate::domain::Strategy, agents: &[AgentLive]) -> String {
        let mut contact = crate::domain::tests::record(0, 1);
        contact.strategy = strategy;
        contact.required_skills = vec![SkillRequirement { name: "billing".to_owned(), min_level: 1 }];
        let offers = plan(std::slice::from_ref(&contact), agents, 10);
        offers.first().map(|offer| agents[offer.agent_index].profile.agent.to_string()).unwrap_or_default()
    }

    #[test]
    fn each_strategy_picks_its_agent_and_ties_go_to_the_longest_idle() {
        use crate::domain::Strategy as QueueStrategy;
        // idle-since, last offer, skill level, chat capacity, chat load
        let agents = [
            agent("idle-longest", 10, 500, 1, 4, 3),
            agent("least-occupied", 50, 400, 2, 4, 0),
            agent("most-skilled", 60, 300, 5, 4, 2),
            agent("offered-longest-ago", 70, 100, 3, 4, 1),
        ];
        assert_eq!(chosen(QueueStrategy::LongestIdle, &agents), "idle-longest");
        assert_eq!(chosen(QueueStrategy::LeastOccupied, &agents), "least-occupied");
        assert_eq!(chosen(QueueStrategy::BestSkill, &agents), "most-skilled");
        assert_eq!(chosen(QueueStrategy::RoundRobin, &agents), "offered-longest-ago");
        let tied = [agent("second", 20, 0, 3, 2, 0), agent("first", 10, 0, 3, 2, 0)];
        for strategy in [QueueStrategy::LeastOccupied, QueueStrategy::BestSkill, QueueStrategy::RoundRobin] {
            assert_eq!(chosen(strategy, &tied), "first", "{strategy:?} ties go to the longest idle");
        }
    }

    #[test]
    fn round_robin_rotates_within_one_pass() {
        let mut waiting = Vec::new();
        for index in 0..3 {
            let mut contact = crate::domain::tests::record(0, index);
            contact.strategy = crate::domain::Strategy::RoundRobin;
            waiting.push(contact);
        }
        let agents = [agent("a", 10, 0, 1, 3, 0), agent("b", 20, 0, 1, 3, 0), agent("c", 30, 0, 1, 3, 0)];
        let offers = plan(&waiting, &agents, 10);
        let mut picked: Vec<usize> = offers.iter().map(|offer| offer.agent_index).collect();
        picked.sort_unstable();
        assert_eq!(picked, vec![0, 1, 2], "three contacts go to three different agents");
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
                    tenant_skills: BTreeMap::new(),
                    capacities: BTreeMap::from([(3, 1)]),
                },
                available: true,
                idle_since_ms: idle,
                last_offer_ms: 0,
                load: BTreeMap::new(),
                hold_until_ms: 0,
            });
        }
        let waiting = vec![crate::domain::tests::record(0, 1)];
        let offers = plan(&waiting, &agents, 10);
        assert_eq!(offers, vec![PlannedOffer { contact_index: 0, agent_index: 1, share_charge: 0.0 }]);
    }

    #[test]
    fn a_preferred_agent_gets_the_first_offer_while_available_and_a_pin_waits() {
        let mut contact = crate::domain::tests::record(0, 1);
        contact.rules.preferred_agent = Some(AgentId::parse("favourite", "a").expect("agent"));
        contact.rules.preferred_until_ms = 1_000;
        let busy_favourite = agent("favourite", 50, 0, 1, 1, 1);
        let other = agent("other", 10, 0, 1, 1, 0);
        let agents = [busy_favourite.clone(), other.clone()];
        assert!(plan(std::slice::from_ref(&contact), &agents, 500).is_empty(), "held for the favourite");
        let free_favourite = agent("favourite", 50, 0, 1, 1, 0);
        let offers = plan(std::slice::from_ref(&contact), &[other.clone(), free_favourite], 500);
        assert_eq!(
            offers,
            vec![PlannedOffer { contact_index: 0, agent_index: 1, share_charge: 0.0 }],
            "the favourite, not the longest idle"
        );
        let offers = plan(std::slice::from_ref(&contact), &agents, 1_000);
        assert_eq!(
            offers,
            vec![PlannedOffer { contact_index: 0, agent_index: 1, share_charge: 0.0 }],
            "the window closed"
        );
        let offers = plan(std::slice::from_ref(&contact), std::slice::from_ref(&other), 500);
        assert_eq!(offers.len(), 1, "a favourite who is not available is not waited for");
        contact.rules.pinned = true;
        assert!(plan(std::slice::from_ref(&contact), std::slice::from_ref(&other), 5_000).is_empty(), "pinned");
    }

    #[test]
    fn escalation_widens_the_agents_who_may_take_a_contact() {
        let mut contact = crate::domain::tests::record(0, 1_000);
        contact.required_skills = vec![SkillRequirement { name: "billing".to_owned(), min_level: 5 }];
        contact.rules.escalations = vec![crate::domain::EscalationStep {
            after_ms: 10_000,
            required_skills: vec![SkillRequirement { name: "billing".to_owned(), min_level: 2 }],
        }];
        let junior = [agent("junior", 10, 0, 2, 1, 0)];
        assert!(plan(std::slice::from_ref(&contact), &junior, 10_999).is_empty());
        assert_eq!(plan(std::slice::from_ref(&contact), &junior, 11_000).len(), 1);
    }

    #[test]
    fn a_tenant_specific_level_overrides_the_general_one_for_that_tenant_only() {
        let mut expert_for_acme = agent("expert", 10, 0, 1, 1, 0);
        expert_for_acme.profile.tenants.push(TenantId::parse("globex", "t").expect("tenant"));
        expert_for_acme
            .profile
            .tenant_skills
            .insert((TenantId::parse("acme", "t").expect("tenant"), "billing".to_owned()), 5);
        let mut acme_contact = crate::domain::tests::record(0, 1);
        acme_contact.required_skills = vec![SkillRequirement { name: "billing".to_owned(), min_level: 4 }];
        let mut globex_contact = acme_contact.clone();
        globex_contact.tenant = TenantId::parse("globex", "t").expect("tenant");
        assert!(expert_for_acme.can_take(&acme_contact), "level 5 for acme");
        assert!(!expert_for_acme.can_take(&globex_contact), "level 1 for everyone else");
    }

    #[test]
    fn an_agent_held_for_wrap_up_is_not_planned_until_the_hold_ends() {
        let mut held = agent("held", 10, 0, 1, 1, 0);
        held.hold_until_ms = 1_000;
        let contact = crate::domain::tests::record(0, 1);
        assert!(plan(std::slice::from_ref(&contact), std::slice::from_ref(&held), 999).is_empty());
        assert_eq!(plan(std::slice::from_ref(&contact), std::slice::from_ref(&held), 1_000).len(), 1);
    }
}
