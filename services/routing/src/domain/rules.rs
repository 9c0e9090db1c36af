//! What a queue decides about a waiting contact beyond its rank: bullseye
//! escalation of the skill requirements, the preferred (or pinned) agent,
//! the longest wait and where the contact goes after it, and opening hours.
//! Pure functions of the record and the clock.

use switchboard_core::{AgentId, Error, QueueId};

use super::{ContactRecord, RoutingStatus, SkillRequirement};

/// From `after_ms` of waiting (since arrival), `required_skills` replace
/// the queue's requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationStep {
    pub after_ms: i64,
    pub required_skills: Vec<SkillRequirement>,
}

/// The queue rules a waiting contact carries, copied from its queue when
/// it enters it (arrival, transfer, overflow).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueRules {
    /// Ordered by `after_ms`.
    pub escalations: Vec<EscalationStep>,
    /// The agent who gets the first offer until `preferred_until_ms`.
    pub preferred_agent: Option<AgentId>,
    pub preferred_until_ms: i64,
    /// Only `preferred_agent` may take the contact, available or not (a
    /// transfer to an agent); otherwise the preference lapses while that
    /// agent is not available.
    pub pinned: bool,
    /// When the contact stops waiting in this queue; 0 = never.
    pub deadline_ms: i64,
    /// Where it goes at the deadline; `None` ends it as lost.
    pub overflow_queue: Option<QueueId>,
    /// A queued callback: the number to call back.
    pub callback_number: Option<String>,
    /// Set when routing, not the customer, ended the contact unanswered.
    pub end_reason: Option<EndReason>,
    /// The queue's wrap-up after a completion; 0: none.
    pub wrap_up_ms: i64,
    /// How the agent completed the contact, once it did: a repeated
    /// completion must say the same (a retry), not something else.
    pub completion: Option<Completion>,
}

/// What an agent said when it completed a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub disposition: String,
    pub resolved: bool,
}

/// Until when the agent that just completed `after` takes no new work: the
/// queue's wrap-up from `now_ms`, or 0 (no hold) for any other step.
pub fn wrap_up_hold_until(after: &ContactRecord, now_ms: i64) -> i64 {
    if after.status != RoutingStatus::Completed || after.rules.wrap_up_ms <= 0 {
        return 0;
    }
    now_ms.saturating_add(after.rules.wrap_up_ms)
}

/// Why routing ended a contact nobody answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    MaxWait,
    Closed,
    TenantQueueFull,
    /// The tenant was deleted while the contact was live.
    TenantDeleted,
    /// Its queue did not exist when routing took it in (ingestion could not
    /// ask routing, or the queue was deleted meanwhile).
    QueueNotFound,
    /// Its queue does not take its channel (checked at intake as well).
    ChannelNotAccepted,
}

impl EndReason {
    /// As `switchboard.routing.v1.EndReason`.
    pub fn to_proto(self) -> i32 {
        match self {
            EndReason::MaxWait => 1,
            EndReason::Closed => 2,
            EndReason::TenantQueueFull => 3,
            EndReason::TenantDeleted => 4,
            EndReason::QueueNotFound => 5,
            EndReason::ChannelNotAccepted => 6,
        }
    }

    pub fn from_proto(value: i32) -> Option<EndReason> {
        match value {
            1 => Some(EndReason::MaxWait),
            2 => Some(EndReason::Closed),
            3 => Some(EndReason::TenantQueueFull),
            4 => Some(EndReason::TenantDeleted),
            5 => Some(EndReason::QueueNotFound),
            6 => Some(EndReason::ChannelNotAccepted),
            _ => None,
        }
    }
}

impl ContactRecord {
    /// The skill requirements in force after waiting until `now_ms`: those
    /// of the last escalation step reached, else the queue's.
    pub fn requirements_at(&self, now_ms: i64) -> &[SkillRequirement] {
        self.rules
            .escalations
            .iter()
            .rev()
            .find(|step| self.enqueue_ms.saturating_add(step.after_ms) <= now_ms)
            .map_or(&self.required_skills, |step| &step.required_skills)
    }

    /// The agent the contact is held for at `now_ms`, if any.
    pub fn reserved_for_at(&self, now_ms: i64) -> Option<&AgentId> {
        let holds = self.rules.pinned || now_ms < self.rules.preferred_until_ms;
        self.rules.preferred_agent.as_ref().filter(|_| holds)
    }
}

/// What happens to a contact whose wait in its queue ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Moves to this queue, keeping its age.
    Overflow(QueueId),
    /// Ends unanswered, counted as lost.
    Lost,
}

/// Decides what a deadline sweep does to `record` at `now_ms`: nothing
/// unless it is still waiting and its deadline passed. Ends the record when
/// it is lost; an overflow is carried out by the caller, which knows the
/// target queue.
pub fn expire_wait(record: &mut ContactRecord, now_ms: i64) -> Result<WaitOutcome, Error> {
    if record.status != RoutingStatus::Queued || record.rules.deadline_ms == 0 || now_ms < record.rules.deadline_ms {
        return Err(Error::failed_precondition(format!(
            "contact `{}` is not waiting past its deadline",
            record.contact
        )));
    }
    if let Some(target) = record.rules.overflow_queue.clone().filter(|target| *target != record.queue) {
        return Ok(WaitOutcome::Overflow(target));
    }
    end_unanswered(record, EndReason::MaxWait, now_ms);
    Ok(WaitOutcome::Lost)
}

/// Ends a waiting contact that may not wait where it arrived (a closed
/// queue, its tenant's waiting limit reached).
pub fn reject_arrival(record: &mut ContactRecord, reason: EndReason, now_ms: i64) -> Result<(), Error> {
    if record.status != RoutingStatus::Queued {
        return Err(Error::failed_precondition(format!("contact `{}` is not waiting", record.contact)));
    }
    end_unanswered(record, reason, now_ms);
    Ok(())
}

/// Ends a live contact of a deleted tenant at `now_ms`, whatever stage it
/// is in, freeing its agent at once: a waiting or ringing one ends
/// unanswered (reason TENANT_DELETED), one being handled is completed
/// without wrap-up. FAILED_PRECONDITION if it has ended already.
pub fn end_for_deleted_tenant(record: &mut ContactRecord, now_ms: i64) -> Result<(), Error> {
    match record.status {
        RoutingStatus::Queued | RoutingStatus::Offered => {
            end_unanswered(record, EndReason::TenantDeleted, now_ms);
            record.offer_expire_ms = 0;
        }
        RoutingStatus::Answered => {
            record.status = RoutingStatus::Completed;
            record.end_ms = now_ms;
            record.rules.wrap_up_ms = 0;
        }
        RoutingStatus::Completed | RoutingStatus::Abandoned => {
            return Err(Error::failed_precondition(format!("contact `{}` has ended", record.contact)));
        }
    }
    Ok(())
}

/// Ends a waiting contact unanswered for `reason` (lost, not abandoned).
pub fn end_unanswered(record: &mut ContactRecord, reason: EndReason, now_ms: i64) {
    record.status = RoutingStatus::Abandoned;
    record.end_ms = now_ms;
    record.rules.end_reason = Some(reason);
}

/// A queue's setting that moves a contact into it: everything a record
/// takes from the queue it waits in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub queue: QueueId,
    pub priority: i32,
    pub required_skills: Vec<SkillRequirement>,
    pub strategy: super::Strategy,
    pub priority_step_ms: i64,
    pub offer_timeout_ms: i64,
    pub rules: QueueRules,
}

impl QueueEntry {
    /// The entry with its offer timeout and wrap-up held to the tenant's
    /// caps (the operator's; a queue made before a cap was lowered may ask
    /// for more).
    pub fn capped(mut self, max_offer_timeout_ms: Option<i64>, max_wrap_up_ms: Option<i64>) -> QueueEntry {
        if let Some(cap) = max_offer_timeout_ms {
            self.offer_timeout_ms = self.offer_timeout_ms.min(cap);
        }
        if let Some(cap) = max_wrap_up_ms {
            self.rules.wrap_up_ms = self.rules.wrap_up_ms.min(cap);
        }
        self
    }
}

/// Moves a contact that is waiting, ringing or being handled into another
/// queue (transfer, overflow). It keeps its arrival time, so its age and
/// rank carry over; a ringing or answered contact's agent is released and
/// the contact waits again.
pub fn move_to_queue(record: &mut ContactRecord, entry: QueueEntry) -> Result<(), Error> {
    if record.status.is_terminal() {
        return Err(Error::failed_precondition(format!(
            "cannot transfer contact `{}`: it is {}",
            record.contact,
            record.status.as_str()
        )));
    }
    record.queue = entry.queue;
    record.priority = record.priority.max(entry.priority);
    record.required_skills = entry.required_skills;
    record.strategy = entry.strategy;
    record.priority_step_ms = entry.priority_step_ms;
    record.offer_timeout_ms = entry.offer_timeout_ms;
    let callback_number = record.rules.callback_number.take();
    record.rules = entry.rules;
    record.rules.callback_number = callback_number;
    record.status = RoutingStatus::Queued;
    record.agent = None;
    record.offer_expire_ms = 0;
    record.answer_ms = 0;
    Ok(())
}

/// Holds a waiting contact for one agent only (transfer to an agent).
pub fn pin_to_agent(record: &mut ContactRecord, agent: &AgentId) -> Result<(), Error> {
    if record.status.is_terminal() {
        return Err(Error::failed_precondition(format!(
            "cannot transfer contact `{}`: it is {}",
            record.contact,
            record.status.as_str()
        )));
    }
    record.rules.preferred_agent = Some(agent.clone());
    record.rules.pinned = true;
    record.status = RoutingStatus::Queued;
    record.agent = None;
    record.offer_expire_ms = 0;
    record.answer_ms = 0;
    Ok(())
}

/// The customer asked to be called back: the contact keeps its place, and
/// a later "customer left" no longer ends it.
pub fn request_callback(record: &mut ContactRecord, number: &str) -> Result<(), Error> {
    if record.status != RoutingStatus::Queued && record.status != RoutingStatus::Offered {
        return Err(Error::failed_precondition(format!(
            "cannot call back contact `{}`: it is {}",
            record.contact,
            record.status.as_str()
        )));
    }
    record.rules.callback_number = Some(number.to_owned());
    Ok(())
}

/// The customer of a contact that arrived without one, resolved later by
/// CRM. A customer already known is kept. `preference` is the customer's
/// last agent and the end of the queue's preferred-agent window (counted
/// from arrival): a contact still waiting, and not held for an agent
/// already, takes it, as it would have had the customer been known at
/// arrival.
pub fn attach_customer(record: &mut ContactRecord, customer: &str, preference: Option<(AgentId, i64)>) {
    if !record.customer.is_empty() {
        return;
    }
    customer.clone_into(&mut record.customer);
    let waiting_unheld = record.status == RoutingStatus::Queued && record.rules.preferred_agent.is_none();
    if let Some((agent, until_ms)) = preference
        && waiting_unheld
    {
        record.rules.preferred_agent = Some(agent);
        record.rules.preferred_until_ms = until_ms;
    }
}

/// E.164: "+" then 8 to 15 digits, the first not zero.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|byte| byte.is_ascii_digit()) && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tests::record;

    fn skill(name: &str, min_level: i32) -> SkillRequirement {
        SkillRequirement { name: name.to_owned(), min_level }
    }

    #[test]
    fn escalation_steps_replace_requirements_as_the_wait_grows() {
        let mut contact = record(0, 10_000);
        contact.required_skills = vec![skill("billing", 4)];
        contact.rules.escalations = vec![
            EscalationStep { after_ms: 5_000, required_skills: vec![skill("billing", 2)] },
            EscalationStep { after_ms: 20_000, required_skills: Vec::new() },
        ];
        assert_eq!(contact.requirements_at(14_999), [skill("billing", 4)]);
        assert_eq!(contact.requirements_at(15_000), [skill("billing", 2)]);
        assert!(contact.requirements_at(30_000).is_empty(), "the last ring takes any agent");
    }

    #[test]
    fn a_preference_lapses_after_its_window_unless_pinned() {
        let alice = AgentId::parse("alice", "a").expect("agent");
        let mut contact = record(0, 10_000);
        assert_eq!(contact.reserved_for_at(10_000), None);
        contact.rules.preferred_agent = Some(alice.clone());
        contact.rules.preferred_until_ms = 15_000;
        assert_eq!(contact.reserved_for_at(14_999), Some(&alice));
        assert_eq!(contact.reserved_for_at(15_000), None);
        contact.rules.pinned = true;
        assert_eq!(contact.reserved_for_at(1_000_000), Some(&alice));
    }

    #[test]
    fn a_wait_past_its_deadline_overflows_or_ends_as_lost() {
        let mut contact = record(0, 10_000);
        assert!(expire_wait(&mut contact, 99_000).is_err(), "no deadline, no expiry");
        contact.rules.deadline_ms = 20_000;
        assert!(expire_wait(&mut contact, 19_999).is_err(), "not yet");
        let overflow = QueueId::parse("overflow", "q").expect("queue");
        contact.rules.overflow_queue = Some(overflow.clone());
        assert_eq!(expire_wait(&mut contact, 20_000), Ok(WaitOutcome::Overflow(overflow)));
        assert_eq!(contact.status, RoutingStatus::Queued, "the caller moves it");
        contact.rules.overflow_queue = Some(contact.queue.clone());
        assert_eq!(expire_wait(&mut contact, 20_000), Ok(WaitOutcome::Lost), "overflow to itself is no overflow");
        assert_eq!((contact.status, contact.end_ms), (RoutingStatus::Abandoned, 20_000));
        assert_eq!(contact.rules.end_reason, Some(EndReason::MaxWait));
        assert!(expire_wait(&mut contact, 30_000).is_err(), "ends once");
    }

    #[test]
    fn a_transfer_keeps_age_and_callback_and_releases_the_agent() {
        let alice = AgentId::parse("alice", "a").expect("agent");
        let mut contact = record(3, 10_000);
        contact.rules.callback_number = Some("+4915112345678".to_owned());
        crate::domain::reserve(&mut contact, &alice, 50_000).expect("offer");
        crate::domain::accept(&mut contact, &alice, 12_000).expect("answer");
        let target = QueueId::parse("billing", "q").expect("queue");
        let entry = QueueEntry {
            queue: target.clone(),
            priority: 1,
            required_skills: vec![skill("billing", 3)],
            strategy: crate::domain::Strategy::BestSkill,
            priority_step_ms: 1_000,
            offer_timeout_ms: 5_000,
            rules: QueueRules { deadline_ms: 70_000, ..QueueRules::default() },
        };
        move_to_queue(&mut contact, entry).expect("transfer");
        assert_eq!((contact.status, contact.agent.clone(), contact.answer_ms), (RoutingStatus::Queued, None, 0));
        assert_eq!((contact.queue.clone(), contact.enqueue_ms, contact.priority), (target, 10_000, 3));
        assert_eq!(contact.rules.callback_number.as_deref(), Some("+4915112345678"));
        assert_eq!(contact.rules.deadline_ms, 70_000);
        assert_eq!(crate::domain::abandon(&mut contact, 13_000), Ok((crate::domain::Applied::AlreadyDone, None)));
        assert_eq!(contact.status, RoutingStatus::Queued, "a queued callback survives the customer hanging up");
        contact.rules.callback_number = None;
        crate::domain::abandon(&mut contact, 13_000).expect("abandon");
        assert!(pin_to_agent(&mut contact, &alice).is_err(), "an ended contact is not transferred");
    }

    fn without_customer(mut contact: ContactRecord) -> ContactRecord {
        contact.customer.clear();
        contact
    }

    #[test]
    fn a_customer_resolved_later_brings_its_last_agent_to_a_waiting_contact() {
        let alice = AgentId::parse("alice", "a").expect("agent");
        let mut contact = without_customer(record(0, 10_000));
        attach_customer(&mut contact, "tenants/acme/customers/cu_1", Some((alice.clone(), 25_000)));
        assert_eq!(contact.customer, "tenants/acme/customers/cu_1");
        assert_eq!(contact.reserved_for_at(24_999), Some(&alice));
        assert_eq!(contact.reserved_for_at(25_000), None);
    }

    #[test]
    fn a_customer_resolved_later_keeps_a_known_customer_and_an_existing_hold() {
        let (alice, bob) = (AgentId::parse("alice", "a").expect("agent"), AgentId::parse("bob", "a").expect("agent"));
        let mut known = without_customer(record(0, 10_000));
        known.customer = "tenants/acme/customers/cu_1".to_owned();
        attach_customer(&mut known, "tenants/acme/customers/cu_2", Some((alice.clone(), 25_000)));
        assert_eq!(
            (known.customer.as_str(), known.rules.preferred_agent.as_ref()),
            ("tenants/acme/customers/cu_1", None)
        );
        let mut pinned = without_customer(record(0, 10_000));
        pin_to_agent(&mut pinned, &bob).expect("pin");
        attach_customer(&mut pinned, "tenants/acme/customers/cu_1", Some((alice.clone(), 25_000)));
        assert_eq!(
            (pinned.customer.as_str(), pinned.reserved_for_at(11_000)),
            ("tenants/acme/customers/cu_1", Some(&bob))
        );
        let mut answered = without_customer(record(0, 10_000));
        crate::domain::reserve(&mut answered, &bob, 50_000).expect("offer");
        crate::domain::accept(&mut answered, &bob, 12_000).expect("answer");
        attach_customer(&mut answered, "tenants/acme/customers/cu_1", Some((alice, 25_000)));
        assert_eq!(
            (answered.customer.as_str(), answered.rules.preferred_agent.as_ref()),
            ("tenants/acme/customers/cu_1", None)
        );
    }

    #[test]
    fn callbacks_need_a_waiting_contact_and_an_e164_number() {
        assert!(is_e164("+4915112345678"));
        for bad in ["4915112345678", "+0151", "+49 151 1234", "+1234567", "+1234567890123456"] {
            assert!(!is_e164(bad), "{bad}");
        }
        let mut contact = record(0, 10_000);
        request_callback(&mut contact, "+4915112345678").expect("callback");
        contact.status = RoutingStatus::Answered;
        assert!(request_callback(&mut contact, "+4915112345678").is_err());
    }
}
