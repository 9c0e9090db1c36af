//! Why routing refuses a change to a contact: each refusal is
//! FAILED_PRECONDITION with an `ErrorInfo.reason` a desktop can act on
//! (`OFFER_EXPIRED`: the offer timed out or was withdrawn; `CONTACT_ENDED`;
//! `NOT_OFFERED_TO_AGENT`...).

use switchboard_core::{AgentId, Error};

use super::{ContactRecord, RoutingStatus};

/// A change an agent, the customer or the matcher asks of a contact: names
/// what was refused and why, so a desktop can act on `ErrorInfo.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    Offer,
    Accept,
    Withdraw,
    Complete,
    Abandon,
}

impl Transition {
    fn verb(self) -> &'static str {
        match self {
            Transition::Offer => "offer",
            Transition::Accept => "accept",
            Transition::Withdraw => "withdraw the offer of",
            Transition::Complete => "complete",
            Transition::Abandon => "abandon",
        }
    }

    /// Why this change is refused to a contact in `status`.
    fn refused_reason(self, status: RoutingStatus) -> &'static str {
        match (self, status) {
            (_, RoutingStatus::Completed | RoutingStatus::Abandoned) => "CONTACT_ENDED",
            (_, RoutingStatus::Answered) => "CONTACT_ALREADY_ANSWERED",
            // Back in its queue: the offer this agent held timed out or
            // was withdrawn.
            (Transition::Accept | Transition::Withdraw, RoutingStatus::Queued) => "OFFER_EXPIRED",
            (Transition::Complete, RoutingStatus::Queued | RoutingStatus::Offered) => "CONTACT_NOT_ANSWERED",
            (Transition::Offer, _) => "CONTACT_NOT_QUEUED",
            (_, RoutingStatus::Queued | RoutingStatus::Offered) => "CONTACT_STATE_CONFLICT",
        }
    }

    /// Why this change is refused to an agent the contact is not with.
    fn other_agent_reason(self) -> &'static str {
        match self {
            Transition::Complete => "NOT_ASSIGNED_TO_AGENT",
            _ => "NOT_OFFERED_TO_AGENT",
        }
    }
}

pub(super) fn rejected(record: &ContactRecord, transition: Transition) -> Error {
    Error::failed_precondition(format!(
        "cannot {} contact `{}`: it is {}",
        transition.verb(),
        record.contact,
        record.status.as_str()
    ))
    .with_resource(switchboard_core::names::contact_name(&record.tenant, &record.contact))
    .with_reason(transition.refused_reason(record.status))
}

pub(super) fn require_agent(record: &ContactRecord, agent: &AgentId, transition: Transition) -> Result<(), Error> {
    if record.agent.as_ref() == Some(agent) {
        return Ok(());
    }
    Err(Error::failed_precondition(format!(
        "cannot {} contact `{}`: it is not assigned to agent `{agent}`",
        transition.verb(),
        record.contact
    ))
    .with_resource(switchboard_core::names::contact_name(&record.tenant, &record.contact))
    .with_reason(transition.other_agent_reason()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::record;
    use super::super::{abandon, accept, complete, reserve, withdraw};
    use super::*;
    use crate::store::contract::sample_completion;

    fn agents() -> (AgentId, AgentId) {
        (AgentId::parse("alice", "a").expect("agent"), AgentId::parse("bob", "a").expect("agent"))
    }

    #[test]
    fn accepting_an_offer_that_went_back_to_the_queue_is_offer_expired() {
        let (alice, _) = agents();
        let mut contact = record(0, 1_000);
        reserve(&mut contact, &alice, 2_000).expect("offer");
        withdraw(&mut contact, Some(&alice), Some(2_000)).expect("timed out");
        assert_eq!(accept(&mut contact, &alice, 2_100).expect_err("expired").reason(), "OFFER_EXPIRED");
        assert_eq!(withdraw(&mut contact, Some(&alice), None).expect_err("expired").reason(), "OFFER_EXPIRED");
    }

    #[test]
    fn accepting_another_agents_offer_is_not_offered_to_agent() {
        let (alice, bob) = agents();
        let mut contact = record(0, 1_000);
        reserve(&mut contact, &alice, 2_000).expect("offer");
        let error = accept(&mut contact, &bob, 1_500).expect_err("not bob's");
        assert_eq!(error.reason(), "NOT_OFFERED_TO_AGENT");
        assert!(error.resource.is_some_and(|resource| resource.ends_with(contact.contact.as_str())));
    }

    #[test]
    fn accepting_a_contact_another_agent_answered_is_contact_already_answered() {
        let (alice, bob) = agents();
        let mut contact = record(0, 1_000);
        reserve(&mut contact, &alice, 2_000).expect("offer");
        accept(&mut contact, &alice, 1_500).expect("answered");
        assert_eq!(accept(&mut contact, &bob, 1_600).expect_err("answered").reason(), "CONTACT_ALREADY_ANSWERED");
        assert_eq!(abandon(&mut contact, 1_700).expect_err("answered").reason(), "CONTACT_ALREADY_ANSWERED");
    }

    #[test]
    fn completing_a_contact_not_answered_yet_is_contact_not_answered() {
        let (alice, _) = agents();
        let mut contact = record(0, 1_000);
        assert_eq!(
            complete(&mut contact, &alice, &sample_completion(), 1_100).expect_err("queued").reason(),
            "CONTACT_NOT_ANSWERED"
        );
        reserve(&mut contact, &alice, 2_000).expect("offer");
        assert_eq!(
            complete(&mut contact, &alice, &sample_completion(), 1_200).expect_err("ringing").reason(),
            "CONTACT_NOT_ANSWERED"
        );
    }

    #[test]
    fn completing_a_contact_held_by_another_agent_is_not_assigned_to_agent() {
        let (alice, bob) = agents();
        let mut contact = record(0, 1_000);
        reserve(&mut contact, &alice, 2_000).expect("offer");
        accept(&mut contact, &alice, 1_500).expect("answered");
        assert_eq!(
            complete(&mut contact, &bob, &sample_completion(), 1_600).expect_err("alice's").reason(),
            "NOT_ASSIGNED_TO_AGENT"
        );
    }

    #[test]
    fn any_change_to_an_ended_contact_is_contact_ended() {
        let (alice, bob) = agents();
        let mut abandoned = record(0, 1_000);
        abandon(&mut abandoned, 1_100).expect("abandoned");
        assert_eq!(accept(&mut abandoned, &alice, 1_200).expect_err("ended").reason(), "CONTACT_ENDED");
        assert_eq!(reserve(&mut abandoned, &alice, 2_000).expect_err("ended").reason(), "CONTACT_ENDED");
        let mut completed = record(0, 1_000);
        reserve(&mut completed, &alice, 2_000).expect("offer");
        accept(&mut completed, &alice, 1_500).expect("answered");
        complete(&mut completed, &alice, &sample_completion(), 1_600).expect("completed");
        assert_eq!(
            complete(&mut completed, &bob, &sample_completion(), 1_700).expect_err("ended").reason(),
            "CONTACT_ENDED"
        );
        assert_eq!(abandon(&mut completed, 1_800).expect_err("ended").reason(), "CONTACT_ENDED");
    }
}
