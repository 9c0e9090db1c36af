//! Queue settings: validation of what a caller may set, defaults, and what
//! a contact takes from the queue it enters.

use std::collections::HashSet;

use switchboard_core::text::{TextRule, check_skill_name};
use switchboard_core::time::{checked_duration_millis, duration_from_millis, millis_from_duration};
use switchboard_core::{AgentId, Error, QueueId};
use switchboard_proto::common::v1::{Channel, Skill};
use switchboard_proto::routing::v1::{BusinessHours, ClosedAction, Queue, RoutingStrategy};

use crate::domain::hours::Schedule;
use crate::domain::{EscalationStep, QueueEntry, QueueRules, STRICT_PRIORITY_STEP_MS, SkillRequirement, Strategy};
use crate::{DEFAULT_OFFER_TIMEOUT_MS, DEFAULT_SERVICE_LEVEL_THRESHOLD_MS, DEFAULT_SHORT_ABANDON_THRESHOLD_MS};

const DISPLAY_NAME: TextRule = TextRule::line(200);
const MAX_SKILLS: usize = 32;
pub const UPDATABLE_FIELDS: [&str; 15] = [
    "display_name",
    "channels",
    "priority",
    "required_skills",
    "service_level_threshold",
    "short_abandon_threshold",
    "offer_timeout",
    "strategy",
    "priority_aging_step",
    "escalation_steps",
    "max_wait",
    "overflow_queue",
    "preferred_agent_window",
    "business_hours",
    "wrap_up_time",
];

const MAX_ESCALATION_STEPS: usize = 10;
const WEEK_MS: i64 = 7 * 86_400_000;

fn check_duration(
    duration: &Option<prost_types::Duration>,
    field: &str,
    min_ms: i64,
    max_ms: i64,
) -> Result<(), Error> {
    let Some(duration) = duration else {
        return Ok(());
    };
    let millis = checked_duration_millis(duration).map_err(|problem| Error::invalid_field(field, problem))?;
    if millis < 0 {
        return Err(Error::invalid_field(field, "must not be negative"));
    }
    if !(min_ms..=max_ms).contains(&millis) {
        return Err(Error::invalid_field(field, format!("must be between {min_ms} ms and {max_ms} ms")));
    }
    Ok(())
}

/// Validates the settable fields of a queue; `prefix` is the field path of
/// the queue in the request.
/// Checks every part of `queue` and reports every bad field at once (one
/// problem per part: a part's later checks may rest on its earlier ones).
pub fn validate_queue(queue: &Queue, prefix: &str) -> Result<(), Error> {
    all_of([
        DISPLAY_NAME.check(&format!("{prefix}.display_name"), &queue.display_name),
        validate_channels(&queue.channels, &format!("{prefix}.channels")),
        if (0..=100).contains(&queue.priority) {
            Ok(())
        } else {
            Err(Error::invalid_field(format!("{prefix}.priority"), "must be between 0 and 100"))
        },
        validate_skills(&queue.required_skills, &format!("{prefix}.required_skills")),
        check_duration(&queue.service_level_threshold, &format!("{prefix}.service_level_threshold"), 1_000, 3_600_000),
        check_duration(&queue.short_abandon_threshold, &format!("{prefix}.short_abandon_threshold"), 0, 600_000),
        check_duration(&queue.offer_timeout, &format!("{prefix}.offer_timeout"), 1_000, 600_000),
        check_duration(&queue.priority_aging_step, &format!("{prefix}.priority_aging_step"), 1_000, 86_400_000),
        check_duration(&queue.wrap_up_time, &format!("{prefix}.wrap_up_time"), 0, 3_600_000),
        validate_rules(queue, prefix),
        if RoutingStrategy::try_from(queue.strategy).is_ok() {
            Ok(())
        } else {
            Err(Error::invalid_field(format!("{prefix}.strategy"), format!("{} is not a strategy", queue.strategy)))
        },
    ])
}

/// One error holding the field violations of every failed check; an error
/// that names no field (none of these checks makes one) is returned as it is.
pub fn all_of(checks: impl IntoIterator<Item = Result<(), Error>>) -> Result<(), Error> {
    let mut violations = Vec::new();
    for check in checks {
        match check {
            Ok(()) => {}
            Err(error) if error.field_violations.is_empty() => return Err(error),
            Err(error) => violations.extend(error.field_violations),
        }
    }
    if violations.is_empty() { Ok(()) } else { Err(Error::invalid_fields(violations)) }
}

fn validate_channels(channels: &[i32], field: &str) -> Result<(), Error> {
    let mut seen_channels = HashSet::new();
    for channel in channels {
        if !matches!(Channel::try_from(*channel), Ok(channel) if channel != Channel::Unspecified) {
            return Err(Error::invalid_field(field, format!("{channel} is not a channel")));
        }
        if !seen_channels.insert(*channel) {
            return Err(Error::invalid_field(field, "lists a channel twice"));
        }
    }
    Ok(())
}

pub fn with_defaults(mut queue: Queue) -> Queue {
    queue.service_level_threshold.get_or_insert(duration_from_millis(DEFAULT_SERVICE_LEVEL_THRESHOLD_MS));
    queue.short_abandon_threshold.get_or_insert(duration_from_millis(DEFAULT_SHORT_ABANDON_THRESHOLD_MS));
    queue.offer_timeout.get_or_insert(duration_from_millis(DEFAULT_OFFER_TIMEOUT_MS));
    if queue.strategy == RoutingStrategy::Unspecified as i32 {
        queue.strategy = RoutingStrategy::LongestIdle as i32;
    }
    queue
}

fn validate_skills(skills: &[Skill], field: &str) -> Result<(), Error> {
    if skills.len() > MAX_SKILLS {
        return Err(Error::invalid_field(field, "at most 32 skills"));
    }
    let mut seen = HashSet::new();
    for (index, skill) in skills.iter().enumerate() {
        check_skill_name(&format!("{field}[{index}].name"), &skill.name)?;
        if !(1..=5).contains(&skill.level) {
            return Err(Error::invalid_field(format!("{field}[{index}].level"), "must be between 1 and 5"));
        }
        // A requirement holds for the contact's tenant: per-tenant levels
        // belong to agents, never to queues.
        if !skill.tenant.is_empty() {
            return Err(Error::invalid_field(
                format!("{field}[{index}].tenant"),
                "must be empty: queue requirements apply to the queue's own tenant",
            ));
        }
        if !seen.insert(skill.name.as_str()) {
            return Err(Error::invalid_field(format!("{field}[{index}].name"), "is required twice"));
        }
    }
    Ok(())
}

fn validate_rules(queue: &Queue, prefix: &str) -> Result<(), Error> {
    let steps_field = format!("{prefix}.escalation_steps");
    if queue.escalation_steps.len() > MAX_ESCALATION_STEPS {
        return Err(Error::invalid_field(steps_field, "at most 10 steps"));
    }
    let mut previous_after_ms = 0;
    for (index, step) in queue.escalation_steps.iter().enumerate() {
        let step_field = format!("{steps_field}[{index}]");
        let after = step.after.as_ref().ok_or_else(|| Error::missing_field(format!("{step_field}.after")))?;
        check_duration(&step.after, &format!("{step_field}.after"), 1_000, WEEK_MS)?;
        let after_ms = millis_from_duration(after).unwrap_or(0);
        if after_ms <= previous_after_ms {
            return Err(Error::invalid_field(format!("{step_field}.after"), "steps must have increasing `after`"));
        }
        previous_after_ms = after_ms;
        validate_skills(&step.required_skills, &format!("{step_field}.required_skills"))?;
    }
    check_duration(&queue.max_wait, &format!("{prefix}.max_wait"), 1_000, WEEK_MS)?;
    if !queue.overflow_queue.is_empty() {
        QueueId::parse(&queue.overflow_queue, &format!("{prefix}.overflow_queue"))?;
        let own_id = queue.name.rsplit('/').next().unwrap_or_default();
        if queue.overflow_queue == own_id {
            return Err(Error::invalid_field(format!("{prefix}.overflow_queue"), "must be another queue"));
        }
    }
    check_duration(&queue.preferred_agent_window, &format!("{prefix}.preferred_agent_window"), 0, 600_000)?;
    if let Some(hours) = &queue.business_hours {
        schedule_of(hours, &format!("{prefix}.business_hours"))?;
        let action = ClosedAction::try_from(hours.closed_action).map_err(|_| {
            Error::invalid_field(format!("{prefix}.business_hours.closed_action"), "is not a closed action")
        })?;
        if action == ClosedAction::Overflow && queue.overflow_queue.is_empty() {
            return Err(Error::invalid_field(
                format!("{prefix}.overflow_queue"),
                "is required by closed action OVERFLOW",
            ));
        }
    }
    Ok(())
}

/// The schedule of validated business hours.
pub fn schedule_of(hours: &BusinessHours, prefix: &str) -> Result<Schedule, Error> {
    let weekly: Vec<(i32, &str, &str)> = hours
        .weekly
        .iter()
        .map(|opening| (opening.day_of_week, opening.open.as_str(), opening.close.as_str()))
        .collect();
    Schedule::parse(&hours.time_zone, &weekly, &hours.holidays, prefix)
}

/// What happens to a contact arriving at `queue` at `now_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    Open,
    /// Closed and the closed action is to reject (end as lost).
    ClosedReject,
    /// Closed: send it to the overflow queue.
    ClosedOverflow(QueueId),
    /// Closed, but it waits anyway.
    ClosedQueue,
}

/// Whether `queue` is open at `now_ms`, and if not, what to do. A stored
/// schedule that no longer parses (e.g. a time zone dropped from the
/// database) counts as always open: contacts are served, not dropped.
pub fn arrival(queue: &Queue, now_ms: i64) -> Arrival {
    let Some(hours) = &queue.business_hours else {
        return Arrival::Open;
    };
    let Ok(schedule) = schedule_of(hours, "queue.business_hours") else {
        return Arrival::Open;
    };
    if schedule.is_open_at(now_ms) {
        return Arrival::Open;
    }
    match ClosedAction::try_from(hours.closed_action).unwrap_or(ClosedAction::Unspecified) {
        ClosedAction::Overflow => QueueId::parse(&queue.overflow_queue, "overflow_queue")
            .map_or(Arrival::ClosedReject, Arrival::ClosedOverflow),
        ClosedAction::Queue => Arrival::ClosedQueue,
        ClosedAction::Reject | ClosedAction::Unspecified => Arrival::ClosedReject,
    }
}

fn requirements(skills: &[Skill]) -> Vec<SkillRequirement> {
    skills.iter().map(|skill| SkillRequirement { name: skill.name.clone(), min_level: skill.level }).collect()
}

/// What a contact takes from `queue` when it enters it at `now_ms`, having
/// arrived at `arrival_ms`, with the customer's last agent if known.
pub fn queue_entry(
    queue_id: &QueueId,
    queue: &Queue,
    now_ms: i64,
    arrival_ms: i64,
    last_agent: Option<AgentId>,
) -> QueueEntry {
    let millis = |duration: &Option<prost_types::Duration>| duration.as_ref().and_then(millis_from_duration);
    let preferred_window_ms = millis(&queue.preferred_agent_window).unwrap_or(0);
    let preferred_agent = last_agent.filter(|_| preferred_window_ms > 0);
    QueueEntry {
        queue: queue_id.clone(),
        priority: queue.priority.clamp(0, 100),
        required_skills: requirements(&queue.required_skills),
        strategy: Strategy::from_proto(queue.strategy),
        priority_step_ms: millis(&queue.priority_aging_step)
            .filter(|step| *step > 0)
            .unwrap_or(STRICT_PRIORITY_STEP_MS),
        offer_timeout_ms: millis(&queue.offer_timeout).unwrap_or(DEFAULT_OFFER_TIMEOUT_MS),
        rules: QueueRules {
            escalations: queue
                .escalation_steps
                .iter()
                .map(|step| EscalationStep {
                    after_ms: millis(&step.after).unwrap_or(0),
                    required_skills: requirements(&step.required_skills),
                })
                .collect(),
            preferred_until_ms: if preferred_agent.is_some() {
                arrival_ms.saturating_add(preferred_window_ms)
            } else {
                0
            },
            preferred_agent,
            pinned: false,
            deadline_ms: millis(&queue.max_wait).map_or(0, |max_wait| now_ms.saturating_add(max_wait.max(1))),
            overflow_queue: QueueId::parse(&queue.overflow_queue, "overflow_queue").ok(),
            callback_number: None,
            end_reason: None,
            wrap_up_ms: millis(&queue.wrap_up_time).unwrap_or(0),
            completion: None,
        },
    }
}
