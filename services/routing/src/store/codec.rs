//! How routing records and agent profiles are stored: the fields of their
//! Redis hashes, and the snapshots of records the outbox carries to the
//! journal.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};

use crate::domain::{
    AgentLive, AgentProfile, Completion, ContactRecord, EndReason, EscalationStep, QueueRules, RoutingStatus,
    SkillRequirement, Strategy,
};

/// The record fields kept as JSON in the `record` hash field; the fields
/// that change with every step (status, agent, times) are hash fields of
/// their own.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredRecord {
    tenant: String,
    contact: String,
    queue: String,
    channel: i32,
    customer: String,
    subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    session_url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    conversation: String,
    priority: i32,
    required_skills: Vec<(String, i32)>,
    #[serde(default)]
    strategy: i32,
    #[serde(default = "strict_priority_step")]
    priority_step_ms: i64,
    enqueue_ms: i64,
    offer_timeout_ms: i64,
    #[serde(default)]
    rules: StoredRules,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredRules {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    escalations: Vec<(i64, Vec<(String, i32)>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preferred_agent: Option<String>,
    #[serde(default)]
    preferred_until_ms: i64,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    deadline_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    overflow_queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callback_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_reason: Option<i32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    wrap_up_ms: i64,
    /// (disposition, resolved) of a completed contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completion: Option<(String, bool)>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StoredProfile {
    pub(crate) tenants: Vec<String>,
    pub(crate) skills: BTreeMap<String, i32>,
    /// (tenant, skill, level).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tenant_skills: Vec<(String, String, i32)>,
    pub(crate) capacities: BTreeMap<i32, i32>,
}

fn strict_priority_step() -> i64 {
    crate::domain::STRICT_PRIORITY_STEP_MS
}

pub(crate) fn corrupt(what: &str) -> Error {
    Error::internal(format!("corrupt routing state in redis: {what}"))
}

fn requirements_to_stored(requirements: &[SkillRequirement]) -> Vec<(String, i32)> {
    requirements.iter().map(|requirement| (requirement.name.clone(), requirement.min_level)).collect()
}

fn requirements_from_stored(stored: Vec<(String, i32)>) -> Vec<SkillRequirement> {
    stored.into_iter().map(|(name, min_level)| SkillRequirement { name, min_level }).collect()
}

/// The `record` JSON of `record`.
pub(crate) fn record_json(record: &ContactRecord) -> Result<String, Error> {
    let rules = &record.rules;
    let stored = StoredRecord {
        tenant: record.tenant.to_string(),
        contact: record.contact.to_string(),
        queue: record.queue.to_string(),
        channel: record.channel,
        customer: record.customer.clone(),
        subject: record.subject.clone(),
        session_url: record.session_url.clone(),
        conversation: record.conversation.clone(),
        priority: record.priority,
        required_skills: requirements_to_stored(&record.required_skills),
        strategy: record.strategy.to_proto(),
        priority_step_ms: record.priority_step_ms,
        enqueue_ms: record.enqueue_ms,
        offer_timeout_ms: record.offer_timeout_ms,
        rules: StoredRules {
            escalations: rules
                .escalations
                .iter()
                .map(|step| (step.after_ms, requirements_to_stored(&step.required_skills)))
                .collect(),
            preferred_agent: rules.preferred_agent.as_ref().map(ToString::to_string),
            preferred_until_ms: rules.preferred_until_ms,
            pinned: rules.pinned,
            deadline_ms: rules.deadline_ms,
            overflow_queue: rules.overflow_queue.as_ref().map(ToString::to_string),
            callback_number: rules.callback_number.clone(),
            end_reason: rules.end_reason.map(EndReason::to_proto),
            wrap_up_ms: rules.wrap_up_ms,
            completion: rules.completion.as_ref().map(|done| (done.disposition.clone(), done.resolved)),
        },
    };
    serde_json::to_string(&stored).map_err(|error| Error::internal(error.to_string()))
}

pub(crate) fn decode_record(fields: &HashMap<String, String>) -> Result<ContactRecord, Error> {
    let json = fields.get("record").ok_or_else(|| corrupt("contact without record"))?;
    let stored: StoredRecord = serde_json::from_str(json).map_err(|_| corrupt("contact record json"))?;
    let status = fields
        .get("status")
        .and_then(|status| RoutingStatus::parse(status))
        .ok_or_else(|| corrupt("contact status"))?;
    let number = |name: &str| fields.get(name).and_then(|value| value.parse::<i64>().ok()).unwrap_or(0);
    let agent_field = |name: &str| match fields.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(agent) => AgentId::parse(agent, "agent").map(Some).map_err(|_| corrupt("agent id")),
    };
    let (agent, last_offered) = (agent_field("agent")?, agent_field("last_agent")?);
    let rules = stored.rules;
    Ok(ContactRecord {
        tenant: TenantId::parse(&stored.tenant, "tenant").map_err(|_| corrupt("tenant"))?,
        contact: ContactId::parse(&stored.contact, "contact").map_err(|_| corrupt("contact id"))?,
        queue: QueueId::parse(&stored.queue, "queue").map_err(|_| corrupt("queue id"))?,
        channel: stored.channel,
        customer: stored.customer,
        subject: stored.subject,
        session_url: stored.session_url,
        conversation: stored.conversation,
        priority: stored.priority,
        required_skills: requirements_from_stored(stored.required_skills),
        strategy: Strategy::from_proto(stored.strategy),
        priority_step_ms: stored.priority_step_ms,
        enqueue_ms: stored.enqueue_ms,
        offer_timeout_ms: stored.offer_timeout_ms,
        status,
        agent,
        last_offered,
        offer_expire_ms: number("expire_ms"),
        answer_ms: number("answer_ms"),
        end_ms: number("end_ms"),
        rules: QueueRules {
            escalations: rules
                .escalations
                .into_iter()
                .map(|(after_ms, required)| EscalationStep {
                    after_ms,
                    required_skills: requirements_from_stored(required),
                })
                .collect(),
            preferred_agent: rules
                .preferred_agent
                .map(|agent| AgentId::parse(&agent, "agent").map_err(|_| corrupt("preferred agent")))
                .transpose()?,
            preferred_until_ms: rules.preferred_until_ms,
            pinned: rules.pinned,
            deadline_ms: rules.deadline_ms,
            overflow_queue: rules
                .overflow_queue
                .map(|queue| QueueId::parse(&queue, "queue").map_err(|_| corrupt("overflow queue")))
                .transpose()?,
            callback_number: rules.callback_number,
            end_reason: rules.end_reason.and_then(EndReason::from_proto),
            wrap_up_ms: rules.wrap_up_ms,
            completion: rules.completion.map(|(disposition, resolved)| Completion { disposition, resolved }),
        },
        revision: revision(fields),
    })
}

/// The fields of a contact's hash holding `record` at revision `revision`:
/// what the Redis hash holds and what the journal keeps.
pub(crate) fn record_fields(record: &ContactRecord, revision: i64) -> Result<Vec<(&'static str, String)>, Error> {
    let line = format!("{}:{}:{}", record.tenant, record.queue, record.channel);
    Ok(vec![
        ("record", record_json(record)?),
        ("status", record.status.as_str().to_owned()),
        ("agent", record.agent.as_ref().map_or_else(String::new, ToString::to_string)),
        ("last_agent", record.last_offered.as_ref().map_or_else(String::new, ToString::to_string)),
        ("expire_ms", record.offer_expire_ms.to_string()),
        ("answer_ms", record.answer_ms.to_string()),
        ("end_ms", record.end_ms.to_string()),
        ("rev", revision.to_string()),
        ("line", line),
    ])
}

/// A contact's snapshot in the outbox and the journal: the JSON object of
/// its hash fields at `revision`.
pub(crate) fn snapshot_json(record: &ContactRecord, revision: i64) -> Result<String, Error> {
    let fields: BTreeMap<&str, String> = record_fields(record, revision)?.into_iter().collect();
    serde_json::to_string(&fields).map_err(|error| Error::internal(error.to_string()))
}

/// The record a snapshot holds, with its revision.
pub(crate) fn decode_snapshot(json: &str) -> Result<ContactRecord, Error> {
    let fields: HashMap<String, String> = serde_json::from_str(json).map_err(|_| corrupt("snapshot json"))?;
    decode_record(&fields)
}

/// The compare-and-set revision of a contact hash (0 before any step).
pub(crate) fn revision(fields: &HashMap<String, String>) -> i64 {
    fields.get("rev").and_then(|value| value.parse().ok()).unwrap_or(0)
}

pub(crate) fn profile_json(profile: &AgentProfile) -> Result<String, Error> {
    let stored = StoredProfile {
        tenants: profile.tenants.iter().map(ToString::to_string).collect(),
        skills: profile.skills.clone(),
        tenant_skills: profile
            .tenant_skills
            .iter()
            .map(|((tenant, skill), level)| (tenant.to_string(), skill.clone(), *level))
            .collect(),
        capacities: profile.capacities.clone(),
    };
    serde_json::to_string(&stored).map_err(|error| Error::internal(error.to_string()))
}

/// An agent's profile from its stored JSON.
pub(crate) fn decode_profile(agent: &str, json: &str) -> Result<AgentProfile, Error> {
    let stored: StoredProfile = serde_json::from_str(json).map_err(|_| corrupt("agent profile json"))?;
    Ok(AgentProfile {
        agent: AgentId::parse(agent, "agent").map_err(|_| corrupt("agent id"))?,
        tenants: stored
            .tenants
            .iter()
            .map(|tenant| TenantId::parse(tenant, "tenant").map_err(|_| corrupt("agent tenant")))
            .collect::<Result<_, _>>()?,
        skills: stored.skills,
        tenant_skills: stored
            .tenant_skills
            .into_iter()
            .map(|(tenant, skill, level)| TenantId::parse(&tenant, "tenant").map(|tenant| ((tenant, skill), level)))
            .collect::<Result<_, _>>()
            .map_err(|_| corrupt("agent tenant skill"))?,
        capacities: stored.capacities,
    })
}

pub(crate) fn decode_agent(agent: &str, fields: &HashMap<String, String>) -> Result<AgentLive, Error> {
    let json = fields.get("profile").ok_or_else(|| corrupt("agent without profile"))?;
    let profile = decode_profile(agent, json)?;
    let mut load = BTreeMap::new();
    for (field, value) in fields {
        if let Some(channel) = field.strip_prefix("load:") {
            let channel: i32 = channel.parse().map_err(|_| corrupt("load channel"))?;
            load.insert(channel, value.parse().map_err(|_| corrupt("load value"))?);
        }
    }
    Ok(AgentLive {
        profile,
        available: fields.get("available").is_some_and(|available| available == "1"),
        idle_since_ms: fields.get("idle_since").and_then(|value| value.parse().ok()).unwrap_or(0),
        last_offer_ms: fields.get("last_offer").and_then(|value| value.parse().ok()).unwrap_or(0),
        load,
        hold_until_ms: fields.get("hold_until").and_then(|value| value.parse().ok()).unwrap_or(0),
    })
}
