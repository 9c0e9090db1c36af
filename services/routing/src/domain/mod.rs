//! Pure routing logic: the routing record of a contact and its state
//! machine, agents' live capacity, and the matching algorithm. No IO; the
//! stores apply exactly these rules (the Redis store in Lua, checked
//! against the in-memory store by the shared contract suite).

pub mod fair_share;
pub mod hours;
pub mod matching;
mod refusal;
pub mod rules;

use std::collections::BTreeMap;

use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};

use self::refusal::{Transition, rejected, require_agent};
pub use self::rules::{Completion, EndReason, EscalationStep, QueueEntry, QueueRules, WaitOutcome};

/// A priority step so large that no wait overcomes one level: strict
/// priority. 10^13 ms (~317 years), and 100 levels of it still fit an f64
/// score exactly.
pub const STRICT_PRIORITY_STEP_MS: i64 = 10_000_000_000_000;

/// Channel numbers as in `switchboard.common.v1.Channel`.
pub const CHANNEL_VOICE: i32 = 1;

/// Where a contact is in routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingStatus {
    Queued,
    Offered,
    Answered,
    Completed,
    Abandoned,
}

impl RoutingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingStatus::Queued => "queued",
            RoutingStatus::Offered => "offered",
            RoutingStatus::Answered => "answered",
            RoutingStatus::Completed => "completed",
            RoutingStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(value: &str) -> Option<RoutingStatus> {
        match value {
            "queued" => Some(RoutingStatus::Queued),
            "offered" => Some(RoutingStatus::Offered),
            "answered" => Some(RoutingStatus::Answered),
            "completed" => Some(RoutingStatus::Completed),
            "abandoned" => Some(RoutingStatus::Abandoned),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RoutingStatus::Completed | RoutingStatus::Abandoned)
    }
}

/// How an agent is chosen among those who can take a contact; ties fall
/// back to longest idle, then agent id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    #[default]
    LongestIdle,
    LeastOccupied,
    BestSkill,
    RoundRobin,
}

impl Strategy {
    /// From `switchboard.routing.v1.RoutingStrategy`; unknown means default.
    pub fn from_proto(value: i32) -> Strategy {
        match value {
            2 => Strategy::LeastOccupied,
            3 => Strategy::BestSkill,
            4 => Strategy::RoundRobin,
            _ => Strategy::LongestIdle,
        }
    }

    pub fn to_proto(self) -> i32 {
        match self {
            Strategy::LongestIdle => 1,
            Strategy::LeastOccupied => 2,
            Strategy::BestSkill => 3,
            Strategy::RoundRobin => 4,
        }
    }
}

/// A skill with a minimum level a queue requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillRequirement {
    pub name: String,
    pub min_level: i32,
}

/// The routing record of one contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRecord {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub queue: QueueId,
    pub channel: i32,
    /// Customer resource name.
    pub customer: String,
    pub subject: String,
    /// A video contact's session join link; empty for other channels.
    pub session_url: String,
    /// The conversation of a message channel's contact
    /// (`tenants/{tenant}/conversations/{conversation}`); empty otherwise.
    pub conversation: String,
    pub priority: i32,
    pub required_skills: Vec<SkillRequirement>,
    pub strategy: Strategy,
    /// Waiting time one priority level is worth (priority aging);
    /// [`STRICT_PRIORITY_STEP_MS`] when the queue does not age priorities.
    pub priority_step_ms: i64,
    pub enqueue_ms: i64,
    pub offer_timeout_ms: i64,
    pub status: RoutingStatus,
    pub agent: Option<AgentId>,
    /// The agent this contact was last offered to, kept after the offer
    /// ended: that agent may still address it, and a late accept is told
    /// `OFFER_EXPIRED` instead of not found.
    pub last_offered: Option<AgentId>,
    pub offer_expire_ms: i64,
    pub answer_ms: i64,
    pub end_ms: i64,
    /// Escalation, preference, deadline and callback (see [`rules`]).
    pub rules: QueueRules,
    /// The store's revision of the record, bumped by every change; a
    /// compare-and-set (a reservation, a transition) names the revision its
    /// decision was made on. The domain's transitions never change it.
    pub revision: i64,
}

impl ContactRecord {
    /// Sort key among waiting contacts, lowest first: the arrival time,
    /// moved earlier by one priority step per priority level (priority
    /// aging; with the strict step, higher priority always first), then
    /// older first. Kept when a contact goes back to its queue, so it
    /// regains its original place.
    pub fn rank(&self) -> f64 {
        let step = self.priority_step_ms.clamp(1, STRICT_PRIORITY_STEP_MS);
        // Exact in an f64 (Redis sorted-set scores): 100 * 1e13 + ms < 2^53.
        (self.enqueue_ms - i64::from(self.priority.clamp(0, 100)) * step) as f64
    }
}

/// An agent as routing sees it: what it may take and what it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProfile {
    pub agent: AgentId,
    pub tenants: Vec<TenantId>,
    /// Skill name to level (1-5), for every tenant served.
    pub skills: BTreeMap<String, i32>,
    /// Levels for one tenant only, overriding `skills` for that tenant.
    pub tenant_skills: BTreeMap<(TenantId, String), i32>,
    /// Channel number to concurrent contacts.
    pub capacities: BTreeMap<i32, i32>,
}

impl AgentProfile {
    /// The agent's level in `skill` for `tenant`: the tenant's own level if
    /// set, else the general one.
    pub fn level_for(&self, tenant: &TenantId, skill: &str) -> Option<i32> {
        self.tenant_skills.get(&(tenant.clone(), skill.to_owned())).or_else(|| self.skills.get(skill)).copied()
    }
}

/// An agent's live routing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLive {
    pub profile: AgentProfile,
    pub available: bool,
    /// When the agent last became free; longest idle is served first.
    pub idle_since_ms: i64,
    /// When the agent was last offered work (round robin); 0 if never.
    pub last_offer_ms: i64,
    /// Offered or handled contacts per channel.
    pub load: BTreeMap<i32, i32>,
    /// No new work before this instant (wrap-up held by routing); 0: none.
    pub hold_until_ms: i64,
}

impl AgentLive {
    pub fn total_load(&self) -> i32 {
        self.load.values().sum()
    }

    pub fn load_on(&self, channel: i32) -> i32 {
        self.load.get(&channel).copied().unwrap_or(0)
    }

    /// Share of the agent's total capacity in use, as a fraction
    /// (numerator, denominator) to compare exactly.
    pub fn occupancy(&self) -> (i64, i64) {
        let capacity: i32 = self.profile.capacities.values().sum();
        (i64::from(self.total_load()), i64::from(capacity.max(1)))
    }

    /// Sum of the agent's levels in `record`'s required skills.
    pub fn skill_score(&self, record: &ContactRecord) -> i32 {
        record
            .required_skills
            .iter()
            .map(|requirement| self.profile.level_for(&record.tenant, &requirement.name).unwrap_or(0))
            .sum()
    }

    /// May this agent take one more contact of `record`'s kind now, with the
    /// queue's own requirements and no preference? See [`AgentLive::can_take_at`].
    pub fn can_take(&self, record: &ContactRecord) -> bool {
        self.has_room_for(record) && self.meets(&record.tenant, &record.required_skills)
    }

    /// May this agent take `record` at `now_ms`: room for it, the skill
    /// requirements in force then (escalation), and the contact not held
    /// for another agent. `preferred_available` says whether the agent the
    /// contact prefers is available at all; a preference for an agent who
    /// is not lapses at once, a pin never does.
    pub fn can_take_at(&self, record: &ContactRecord, now_ms: i64, preferred_available: bool) -> bool {
        if let Some(reserved_for) = record.reserved_for_at(now_ms)
            && (record.rules.pinned || preferred_available)
            && *reserved_for != self.profile.agent
        {
            return false;
        }
        now_ms >= self.hold_until_ms
            && self.has_room_for(record)
            && self.meets(&record.tenant, record.requirements_at(now_ms))
    }

    /// Whether the agent's levels for `tenant` meet `requirements`.
    pub fn meets(&self, tenant: &TenantId, requirements: &[SkillRequirement]) -> bool {
        requirements.iter().all(|requirement| {
            self.profile.level_for(tenant, &requirement.name).is_some_and(|level| level >= requirement.min_level)
        })
    }

    /// Available, serving the contact's tenant, with capacity free on its
    /// channel, and no voice mixed with other work: what a reservation
    /// re-checks atomically (skills and preferences are the plan's).
    pub fn has_room_for(&self, record: &ContactRecord) -> bool {
        if !self.available || !self.profile.tenants.contains(&record.tenant) {
            return false;
        }
        let capacity = self.profile.capacities.get(&record.channel).copied().unwrap_or(0);
        if self.load_on(record.channel) >= capacity {
            return false;
        }
        if self.load_on(CHANNEL_VOICE) > 0 {
            return false;
        }
        if record.channel == CHANNEL_VOICE && self.total_load() > 0 {
            return false;
        }
        true
    }
}

/// Answers further apart than this are a pause, not a pace: they restart
/// the estimate instead of skewing it.
pub const MAX_ANSWER_INTERVAL_MS: i64 = 3_600_000;

/// The pace of a waiting line: a weighted average of the interval between
/// answers (each new interval weighs a quarter, as Asterisk's hold time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnswerPace {
    pub last_answer_ms: i64,
    /// 0 until two answers were seen.
    pub interval_ms: i64,
}

impl AnswerPace {
    /// The pace after an answer at `answer_ms`.
    pub fn after_answer(self, answer_ms: i64) -> AnswerPace {
        if self.last_answer_ms == 0 || answer_ms < self.last_answer_ms {
            return AnswerPace { last_answer_ms: answer_ms.max(self.last_answer_ms), interval_ms: self.interval_ms };
        }
        let interval = answer_ms - self.last_answer_ms;
        if interval > MAX_ANSWER_INTERVAL_MS {
            return AnswerPace { last_answer_ms: answer_ms, interval_ms: 0 };
        }
        let interval_ms = if self.interval_ms == 0 { interval } else { (self.interval_ms * 3 + interval) / 4 };
        AnswerPace { last_answer_ms: answer_ms, interval_ms }
    }

    /// Estimated wait at `position` (1-based); `None` without history.
    pub fn estimated_wait_ms(self, position: i32) -> Option<i64> {
        (self.interval_ms > 0 && position > 0).then(|| i64::from(position) * self.interval_ms)
    }
}

/// What changed, so the caller publishes the matching event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The transition happened now.
    Changed,
    /// It had already happened (a retry): nothing changed, but the event
    /// may be published again, since consumers are idempotent.
    AlreadyDone,
}

/// Offer a queued contact to `agent` until `expire_ms`.
pub fn reserve(record: &mut ContactRecord, agent: &AgentId, expire_ms: i64) -> Result<(), Error> {
    if record.status != RoutingStatus::Queued {
        return Err(rejected(record, Transition::Offer));
    }
    record.status = RoutingStatus::Offered;
    record.agent = Some(agent.clone());
    record.last_offered = Some(agent.clone());
    record.offer_expire_ms = expire_ms;
    Ok(())
}

pub fn accept(record: &mut ContactRecord, agent: &AgentId, now_ms: i64) -> Result<Applied, Error> {
    if record.status == RoutingStatus::Answered && record.agent.as_ref() == Some(agent) {
        return Ok(Applied::AlreadyDone);
    }
    if record.status != RoutingStatus::Offered {
        return Err(rejected(record, Transition::Accept));
    }
    require_agent(record, agent, Transition::Accept)?;
    record.status = RoutingStatus::Answered;
    record.answer_ms = now_ms;
    record.offer_expire_ms = 0;
    Ok(Applied::Changed)
}

/// The offer ends unanswered (rejected, timed out, agent gone): the contact
/// returns to its queue at its original rank. `agent` of `None` withdraws
/// whichever agent holds it. With `expired_by`, only an offer whose
/// deadline is at or before that instant is withdrawn: a timeout decided on
/// an old view never ends a newer offer of the same contact.
pub fn withdraw(
    record: &mut ContactRecord,
    agent: Option<&AgentId>,
    expired_by: Option<i64>,
) -> Result<AgentId, Error> {
    if record.status != RoutingStatus::Offered {
        return Err(rejected(record, Transition::Withdraw));
    }
    if let Some(agent) = agent {
        require_agent(record, agent, Transition::Withdraw)?;
    }
    if expired_by.is_some_and(|instant| record.offer_expire_ms > instant) {
        return Err(Error::failed_precondition(format!("the offer of contact `{}` has not expired", record.contact)));
    }
    let holder = record.agent.take().ok_or_else(|| Error::internal("offered contact without agent"))?;
    record.status = RoutingStatus::Queued;
    record.offer_expire_ms = 0;
    Ok(holder)
}

/// The agent completes its answered contact as `completion` says. Done
/// again with the same completion it is a retry (already done); with
/// another it is refused (`CONTACT_ENDED`): the first one stands, and the
/// caller must not believe its change was made. A record completed before
/// completions were kept accepts any.
pub fn complete(
    record: &mut ContactRecord,
    agent: &AgentId,
    completion: &Completion,
    now_ms: i64,
) -> Result<Applied, Error> {
    if record.status == RoutingStatus::Completed && record.agent.as_ref() == Some(agent) {
        return match &record.rules.completion {
            Some(recorded) if recorded != completion => Err(Error::failed_precondition(format!(
                "`{}` was already completed with disposition `{}` (resolved: {}); a retry must repeat it",
                record.contact, recorded.disposition, recorded.resolved
            ))
            .with_reason("CONTACT_ENDED")),
            Some(_) | None => Ok(Applied::AlreadyDone),
        };
    }
    if record.status != RoutingStatus::Answered {
        return Err(rejected(record, Transition::Complete));
    }
    require_agent(record, agent, Transition::Complete)?;
    record.status = RoutingStatus::Completed;
    record.end_ms = now_ms;
    record.rules.completion = Some(completion.clone());
    Ok(Applied::Changed)
}

/// Where the customer was when they left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbandonedFrom {
    Queue,
    /// Ringing at this agent.
    Offer(AgentId),
}

/// The customer left. Only a queued or offered contact can be abandoned;
/// an answered one ends by completion, and a waiting queued callback stays.
pub fn abandon(record: &mut ContactRecord, now_ms: i64) -> Result<(Applied, Option<AbandonedFrom>), Error> {
    let from = match record.status {
        RoutingStatus::Abandoned => return Ok((Applied::AlreadyDone, None)),
        // The customer hung up after asking to be called back: the contact
        // keeps its place (or its ringing offer).
        RoutingStatus::Queued | RoutingStatus::Offered if record.rules.callback_number.is_some() => {
            return Ok((Applied::AlreadyDone, None));
        }
        RoutingStatus::Queued => AbandonedFrom::Queue,
        RoutingStatus::Offered => {
            AbandonedFrom::Offer(record.agent.clone().ok_or_else(|| Error::internal("offered contact without agent"))?)
        }
        RoutingStatus::Answered | RoutingStatus::Completed => return Err(rejected(record, Transition::Abandon)),
    };
    record.status = RoutingStatus::Abandoned;
    record.end_ms = now_ms;
    record.offer_expire_ms = 0;
    Ok((Applied::Changed, Some(from)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(priority: i32, enqueue_ms: i64) -> ContactRecord {
        let tenant = TenantId::parse("acme", "t").expect("tenant");
        let queue = QueueId::parse("support", "q").expect("queue");
        crate::store::contract::sample_record(&tenant, &queue, 3, priority, enqueue_ms)
    }

    #[test]
    fn a_contact_reaches_exactly_one_terminal_state() {
        let alice = AgentId::parse("alice", "a").expect("agent");
        let bob = AgentId::parse("bob", "a").expect("agent");
        let mut contact = record(0, 1_000);
        reserve(&mut contact, &alice, 2_000).expect("offer");
        assert!(reserve(&mut contact, &bob, 2_000).is_err(), "no second offer while offered");
        assert!(accept(&mut contact, &bob, 1_500).is_err(), "only the offered agent accepts");
        assert_eq!(accept(&mut contact, &alice, 1_500), Ok(Applied::Changed));
        assert_eq!(accept(&mut contact, &alice, 1_600), Ok(Applied::AlreadyDone));
        assert!(abandon(&mut contact, 1_700).is_err(), "an answered contact is not abandoned");
        assert_eq!(
            complete(&mut contact, &alice, &crate::store::contract::sample_completion(), 1_800),
            Ok(Applied::Changed)
        );
        assert_eq!(contact.answer_ms, 1_500);
        assert!(withdraw(&mut contact, None, None).is_err());
        assert_eq!(contact.status, RoutingStatus::Completed);
    }

    #[test]
    fn withdrawn_offers_return_to_the_queue_and_abandons_remember_the_stage() {
        let alice = AgentId::parse("alice", "a").expect("agent");
        let mut contact = record(5, 1_000);
        let rank = contact.rank();
        reserve(&mut contact, &alice, 2_000).expect("offer");
        assert!(withdraw(&mut contact, Some(&alice), Some(1_999)).is_err(), "a fresh offer does not time out");
        assert_eq!(withdraw(&mut contact, Some(&alice), Some(2_000)), Ok(alice.clone()));
        assert_eq!((contact.status, contact.rank()), (RoutingStatus::Queued, rank));
        reserve(&mut contact, &alice, 3_000).expect("offer again");
        assert_eq!(abandon(&mut contact, 2_500), Ok((Applied::Changed, Some(AbandonedFrom::Offer(alice)))));
        assert_eq!(abandon(&mut contact, 2_600), Ok((Applied::AlreadyDone, None)));
    }

    #[test]
    fn the_answer_pace_averages_intervals_and_estimates_by_position() {
        let pace = AnswerPace::default().after_answer(10_000);
        assert_eq!(pace.estimated_wait_ms(3), None, "one answer is no pace yet");
        let pace = pace.after_answer(14_000);
        assert_eq!(pace.interval_ms, 4_000);
        assert_eq!(pace.estimated_wait_ms(3), Some(12_000));
        let pace = pace.after_answer(22_000);
        assert_eq!(pace.interval_ms, (4_000 * 3 + 8_000) / 4, "a new interval weighs a quarter");
        assert_eq!(pace.after_answer(21_000).last_answer_ms, 22_000, "an older answer never moves time back");
        let paused = pace.after_answer(22_000 + MAX_ANSWER_INTERVAL_MS + 1);
        assert_eq!(paused.estimated_wait_ms(1), None, "a long pause restarts the estimate");
        assert_eq!(pace.estimated_wait_ms(0), None, "no estimate for a contact not waiting");
    }

    #[test]
    fn rank_orders_priority_then_age() {
        assert!(record(10, 5_000).rank() < record(0, 1_000).rank());
        assert!(record(0, 1_000).rank() < record(0, 1_001).rank());
        let mut patient = record(0, 1_000_000_000);
        let mut urgent = record(1, 1_000_000_000 + 5_000);
        patient.priority_step_ms = 10_000;
        urgent.priority_step_ms = 10_000;
        assert!(urgent.rank() < patient.rank(), "one level is worth 10 s: 5 s later still goes first");
        urgent.enqueue_ms = 1_000_000_000 + 15_000;
        assert!(patient.rank() < urgent.rank(), "waiting longer than a level overtakes it");
    }

    proptest::proptest! {
        /// Any sequence of transitions, from any agent, at any time: a
        /// contact is held by at most one agent, and once it ends (completed
        /// or abandoned, by the customer or by routing) nothing changes it
        /// again: exactly one terminal state.
        #[test]
        fn any_sequence_of_transitions_ends_in_at_most_one_terminal_state(
            steps in proptest::collection::vec((0u8..9, 0usize..2, 0i64..10_000), 0..40),
        ) {
            let agents = [AgentId::parse("alice", "a").expect("agent"), AgentId::parse("bob", "a").expect("agent")];
            let other_queue = QueueId::parse("billing", "q").expect("queue");
            let mut contact = record(0, 1_000);
            contact.rules.deadline_ms = 5_000;
            let mut ended: Option<ContactRecord> = None;
            for (operation, agent_index, now) in steps {
                let agent = &agents[agent_index];
                let before = contact.clone();
                let _ = match operation {
                    0 => reserve(&mut contact, agent, now + 100).map(|_| ()),
                    1 => accept(&mut contact, agent, now).map(|_| ()),
                    2 => withdraw(&mut contact, Some(agent), None).map(|_| ()),
                    3 => complete(&mut contact, agent, &crate::store::contract::sample_completion(), now).map(|_| ()),
                    4 => abandon(&mut contact, now).map(|_| ()),
                    5 => rules::expire_wait(&mut contact, now).map(|_| ()),
                    6 => rules::request_callback(&mut contact, "+4915112345678"),
                    7 => rules::pin_to_agent(&mut contact, agent),
                    _ => rules::move_to_queue(
                        &mut contact,
                        QueueEntry {
                            queue: other_queue.clone(),
                            priority: 0,
                            required_skills: Vec::new(),
                            strategy: Strategy::LongestIdle,
                            priority_step_ms: STRICT_PRIORITY_STEP_MS,
                            offer_timeout_ms: 1_000,
                            rules: QueueRules::default(),
                        },
                    ),
                };
                let holds = matches!(contact.status, RoutingStatus::Offered | RoutingStatus::Answered);
                proptest::prop_assert!(!holds || contact.agent.is_some(), "offered or answered: to one agent");
                if contact.status == RoutingStatus::Queued {
                    proptest::prop_assert!(contact.agent.is_none(), "a waiting contact is nobody's");
                }
                if let Some(terminal) = &ended {
                    proptest::prop_assert_eq!(&contact, terminal, "an ended contact never changes");
                } else if contact.status.is_terminal() {
                    proptest::prop_assert!(!before.status.is_terminal());
                    ended = Some(contact.clone());
                }
            }
        }
    }
}
