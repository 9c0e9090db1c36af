//! Pure presence rules: which states an agent may ask for, how an agent
//! definition is validated, and when wrap-up starts and ends.

use std::collections::HashSet;

use switchboard_core::Error;
use switchboard_core::text::{TextRule, check_skill_name};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::presence::v1::{Agent, AgentState};

const MAX_REASON_BYTES: usize = 64;
const MAX_DISPLAY_NAME_BYTES: usize = 200;
const MAX_TENANTS: usize = 100;
const MAX_SKILLS: usize = 64;
const MAX_CHANNEL_CAPACITY: i32 = 50;

/// A state an agent asks for on its session. Agents choose AVAILABLE,
/// AWAY (with an optional reason code) or OFFLINE; WRAP_UP and
/// NOT_RESPONDING are set by the platform, never requested.
pub fn requested_state(state: i32, reason: &str) -> Result<AgentState, Error> {
    chosen_state(state, reason, "set_state.")
}

/// A state a supervisor forces (`SetAgentState`): the same choices as the
/// agent's own.
pub fn forced_state(state: i32, reason: &str) -> Result<AgentState, Error> {
    chosen_state(state, reason, "")
}

fn chosen_state(state: i32, reason: &str, prefix: &str) -> Result<AgentState, Error> {
    let state_field = format!("{prefix}state");
    let reason_field = format!("{prefix}reason");
    let state = AgentState::try_from(state).map_err(|_| Error::invalid_field(&state_field, "is not a state"))?;
    if !matches!(state, AgentState::Available | AgentState::Away | AgentState::Offline) {
        return Err(Error::invalid_field(&state_field, "only AVAILABLE, AWAY or OFFLINE may be chosen"));
    }
    TextRule::line(MAX_REASON_BYTES).check(&reason_field, reason)?;
    if state != AgentState::Away && !reason.is_empty() {
        return Err(Error::invalid_field(&reason_field, "only AWAY takes a reason code"));
    }
    Ok(state)
}

/// When the wrap-up after a contact that ended at `ended_ms` ends, for a
/// queue wrap-up time of `wrap_up_ms`; `None` when there is none to start:
/// the queue has no wrap-up, or it already ran out by `now_ms` (a late or
/// replayed completion). Counted from the end of the contact, so a slow
/// event does not lengthen it, and the same for every replica and retry.
pub fn wrap_up_until(ended_ms: i64, wrap_up_ms: i64, now_ms: i64) -> Option<i64> {
    if wrap_up_ms <= 0 {
        return None;
    }
    let until = ended_ms.saturating_add(wrap_up_ms);
    (until > now_ms).then_some(until)
}

/// Whether an agent that has now missed `missed` offers in a row goes
/// NOT_RESPONDING, for a configured `threshold` (0: never).
pub fn is_not_responding(missed: usize, threshold: u32) -> bool {
    threshold > 0 && missed >= usize::try_from(threshold).unwrap_or(usize::MAX)
}

/// Validates the settable fields of an agent; tenants are checked to
/// exist by the caller.
/// Empty, an extension (1-16 of 0-9, `*`, `#`) or a SIP URI (`sip:` or
/// `sips:`, at most 256 printable ASCII characters, no spaces).
fn check_voice_endpoint(endpoint: &str) -> Result<(), Error> {
    let extension = (1..=16).contains(&endpoint.len())
        && endpoint.bytes().all(|byte| byte.is_ascii_digit() || byte == b'*' || byte == b'#');
    let sip_uri = (endpoint.starts_with("sip:") || endpoint.starts_with("sips:"))
        && endpoint.len() <= 256
        && endpoint.contains('@')
        && endpoint.bytes().all(|byte| byte.is_ascii_graphic());
    if endpoint.is_empty() || extension || sip_uri {
        return Ok(());
    }
    Err(Error::invalid_field("agent.voice_endpoint", "must be an extension (digits, `*`, `#`) or a sip:/sips: URI"))
}

pub fn validate_agent(agent: &Agent) -> Result<(), Error> {
    TextRule::line(MAX_DISPLAY_NAME_BYTES).check("agent.display_name", &agent.display_name)?;
    check_voice_endpoint(&agent.voice_endpoint)?;
    if agent.tenants.is_empty() {
        return Err(Error::invalid_field("agent.tenants", "an agent serves at least one tenant"));
    }
    if agent.tenants.len() > MAX_TENANTS {
        return Err(Error::invalid_field("agent.tenants", "at most 100 tenants"));
    }
    let mut served = HashSet::new();
    for (index, tenant) in agent.tenants.iter().enumerate() {
        switchboard_core::names::parse_tenant(tenant, &format!("agent.tenants[{index}]"))?;
        if !served.insert(tenant.as_str()) {
            return Err(Error::invalid_field(format!("agent.tenants[{index}]"), "is listed twice"));
        }
    }
    if agent.skills.len() > MAX_SKILLS {
        return Err(Error::invalid_field("agent.skills", "at most 64 skills"));
    }
    let mut skill_names = HashSet::new();
    for (index, skill) in agent.skills.iter().enumerate() {
        check_skill_name(&format!("agent.skills[{index}].name"), &skill.name)?;
        if !(1..=5).contains(&skill.level) {
            return Err(Error::invalid_field(format!("agent.skills[{index}].level"), "must be between 1 and 5"));
        }
        if !skill.tenant.is_empty() && !agent.tenants.contains(&skill.tenant) {
            return Err(Error::invalid_field(
                format!("agent.skills[{index}].tenant"),
                "must be one of the agent's tenants",
            ));
        }
        // One general level and at most one level per tenant for a skill.
        if !skill_names.insert((skill.name.as_str(), skill.tenant.as_str())) {
            let problem = format!("skill `{}` is listed twice", skill.name);
            return Err(Error::invalid_field(format!("agent.skills[{index}]"), problem));
        }
    }
    let mut channels = HashSet::new();
    for (index, capacity) in agent.capacities.iter().enumerate() {
        if !matches!(Channel::try_from(capacity.channel), Ok(channel) if channel != Channel::Unspecified) {
            return Err(Error::invalid_field(format!("agent.capacities[{index}].channel"), "is not a channel"));
        }
        if !(0..=MAX_CHANNEL_CAPACITY).contains(&capacity.max_concurrent) {
            let field = format!("agent.capacities[{index}].max_concurrent");
            return Err(Error::invalid_field(field, "must be between 0 and 50"));
        }
        if !channels.insert(capacity.channel) {
            return Err(Error::invalid_field(format!("agent.capacities[{index}].channel"), "lists a channel twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use switchboard_proto::common::v1::{ChannelCapacity, Skill};

    use super::*;

    #[test]
    fn agents_choose_only_their_own_states() {
        assert_eq!(requested_state(AgentState::Available as i32, ""), Ok(AgentState::Available));
        assert_eq!(requested_state(AgentState::Away as i32, "lunch"), Ok(AgentState::Away));
        for forbidden in [AgentState::WrapUp, AgentState::NotResponding, AgentState::Unspecified] {
            let error = requested_state(forbidden as i32, "").expect_err("platform-only state");
            assert_eq!(error.field_violations[0].field, "set_state.state");
        }
        assert!(requested_state(AgentState::Available as i32, "lunch").is_err());
        assert!(requested_state(99, "").is_err());
        assert_eq!(forced_state(AgentState::Away as i32, "coaching"), Ok(AgentState::Away));
        let error = forced_state(AgentState::NotResponding as i32, "").expect_err("platform-only state");
        assert_eq!(error.field_violations[0].field, "state");
        let error = forced_state(AgentState::Offline as i32, "x").expect_err("reason without AWAY");
        assert_eq!(error.field_violations[0].field, "reason");
    }

    #[test]
    fn agent_definitions_are_validated_field_by_field() {
        let good = Agent {
            tenants: vec!["tenants/acme".to_owned()],
            skills: vec![Skill { name: "billing".to_owned(), level: 3, ..Skill::default() }],
            capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 3 }],
            ..Agent::default()
        };
        assert!(validate_agent(&good).is_ok());
        let cases = [
            (Agent { tenants: vec![], ..good.clone() }, "agent.tenants"),
            (Agent { tenants: vec!["acme".to_owned()], ..good.clone() }, "agent.tenants[0]"),
            (
                Agent { tenants: vec!["tenants/acme".to_owned(), "tenants/acme".to_owned()], ..good.clone() },
                "agent.tenants[1]",
            ),
            (
                Agent { skills: vec![Skill { name: "x".to_owned(), level: 9, ..Skill::default() }], ..good.clone() },
                "agent.skills[0].level",
            ),
            (
                Agent { skills: vec![Skill { name: "../x".to_owned(), level: 1, ..Skill::default() }], ..good.clone() },
                "agent.skills[0].name",
            ),
            (
                Agent { skills: vec![Skill { name: "x\0".to_owned(), level: 1, ..Skill::default() }], ..good.clone() },
                "agent.skills[0].name",
            ),
            (Agent { display_name: "Ann\u{0}".to_owned(), ..good.clone() }, "agent.display_name"),
            (
                Agent { capacities: vec![ChannelCapacity { channel: 0, max_concurrent: 1 }], ..good.clone() },
                "agent.capacities[0].channel",
            ),
            (
                Agent {
                    skills: vec![Skill { name: "billing".to_owned(), level: 5, tenant: "tenants/globex".to_owned() }],
                    ..good.clone()
                },
                "agent.skills[0].tenant",
            ),
            (
                Agent {
                    skills: vec![
                        Skill { name: "billing".to_owned(), level: 5, tenant: "tenants/acme".to_owned() },
                        Skill { name: "billing".to_owned(), level: 4, tenant: "tenants/acme".to_owned() },
                    ],
                    ..good.clone()
                },
                "agent.skills[1]",
            ),
        ];
        let per_tenant = Agent {
            skills: vec![
                Skill { name: "billing".to_owned(), level: 2, ..Skill::default() },
                Skill { name: "billing".to_owned(), level: 5, tenant: "tenants/acme".to_owned() },
            ],
            ..good.clone()
        };
        assert!(validate_agent(&per_tenant).is_ok(), "a general level and one per tenant");
        for (agent, field) in cases {
            assert_eq!(validate_agent(&agent).expect_err(field).field_violations[0].field, field);
        }
    }

    #[test]
    fn wrap_up_runs_from_the_end_of_the_contact() {
        assert_eq!(wrap_up_until(1_000, 300, 1_100), Some(1_300));
        assert_eq!(wrap_up_until(1_000, 0, 1_000), None, "no wrap-up configured");
        assert_eq!(wrap_up_until(1_000, 300, 1_300), None, "already over when the event arrives");
        assert_eq!(wrap_up_until(i64::MAX - 1, 300, 0), Some(i64::MAX));
    }

    #[test]
    fn the_missed_offer_threshold_counts_misses_in_a_row() {
        assert!(!is_not_responding(2, 3));
        assert!(is_not_responding(3, 3));
        assert!(is_not_responding(4, 3), "a miss counted late still trips it");
        assert!(!is_not_responding(1_000, 0), "0 disables it");
        assert!(is_not_responding(1, 1));
    }

    proptest! {
        #[test]
        fn more_misses_never_make_an_agent_responsive_again(missed in 0usize..100, threshold in 0u32..10) {
            if is_not_responding(missed, threshold) {
                prop_assert!(is_not_responding(missed + 1, threshold));
                prop_assert!(threshold > 0 && missed >= threshold as usize);
            }
        }

        #[test]
        fn a_wrap_up_that_starts_ends_in_the_future_and_no_later_than_its_length(
            ended in 0i64..1_000_000, length in -10i64..10_000, delay in -100i64..20_000,
        ) {
            let now = ended + delay;
            match wrap_up_until(ended, length, now) {
                Some(until) => prop_assert!(until > now && until - ended == length),
                None => prop_assert!(length <= 0 || ended + length <= now),
            }
        }


        #[test]
        fn any_requested_state_is_either_allowed_or_names_a_field(state in -5i32..10, reason in ".{0,80}") {
            match requested_state(state, &reason) {
                Ok(state) => prop_assert!(matches!(state, AgentState::Available | AgentState::Away | AgentState::Offline)),
                Err(error) => prop_assert!(error.field_violations[0].field.starts_with("set_state.")),
            }
        }
    }
}
