//! Reading the routing topic back and replaying it against the routing
//! invariants: one offer at a time per contact, per-agent channel capacity
//! with voice never mixed with other work, one terminal state per contact;
//! and every contact a test created ending exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use switchboard_core::event::decode;
use switchboard_core::time::millis_from_timestamp;
use switchboard_proto::common::v1::{Channel, ContactStatus};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{GetAssignmentRequest, routing_event};

use super::load::{Created, SETTLE, capacities, grpc};
use super::{Process, authorized};

const VOICE: i32 = Channel::Voice as i32;

/// Every record of partition 0 of `topic`, from the first to the high
/// watermark at the time of the call.
pub fn read_whole_topic(brokers: &str, topic: &str) -> Vec<(i64, EventEnvelope)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("observer-{}", switchboard_test_support::unique_suffix()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("observer consumer");
    // tansu may list the end as the base offset of the last batch plus one,
    // short of the batch's other records: read on to the partition's end
    // as the fetches find it (EOF), past that listed end.
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    let mut next = 0;
    loop {
        assert!(Instant::now() < deadline, "read only up to offset {next} of {high} of {topic}");
        let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
        let message = match message {
            Ok(message) => message,
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) if next >= high => break,
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => continue,
            Err(error) => panic!("reading {topic}: {error}"),
        };
        next = message.offset() + 1;
        records.push((message.offset(), decode(message.payload().expect("payload")).expect("envelope")));
    }
    records
}

#[derive(Debug, Clone, PartialEq)]
enum Held {
    Waiting,
    Offered(String),
    Answered(String),
    Ended(&'static str),
}

/// What the replay of the routing log found.
#[derive(Debug, Default)]
pub struct Replay {
    pub violations: Vec<String>,
    pub duplicates: usize,
    pub events: usize,
    /// Contact name to its terminal event kind.
    pub terminal: HashMap<String, &'static str>,
    /// Offer time of each contact's offers.
    pub offer_times: HashMap<String, Vec<i64>>,
    pub max_load: BTreeMap<String, i32>,
    /// Contacts a violation is about, to show their history.
    pub suspects: std::collections::BTreeSet<String>,
}

/// The contact a routing event is about.
fn contact_of(kind: &routing_event::Kind) -> &str {
    match kind {
        routing_event::Kind::Queued(event) => &event.contact,
        routing_event::Kind::Offered(event) => &event.contact,
        routing_event::Kind::OfferWithdrawn(event) => &event.contact,
        routing_event::Kind::Answered(event) => &event.contact,
        routing_event::Kind::Completed(event) => &event.contact,
        routing_event::Kind::Abandoned(event) => &event.contact,
        routing_event::Kind::Transferred(event) => &event.contact,
    }
}

/// Every event of `contact` in the log, in order, one line each: offset,
/// event id, when it occurred and what it says.
pub fn history(records: &[(i64, EventEnvelope)], contact: &str) -> Vec<String> {
    records
        .iter()
        .filter_map(|(offset, envelope)| {
            let Some(Payload::Routing(event)) = &envelope.payload else { return None };
            let kind = event.kind.as_ref()?;
            (contact_of(kind) == contact).then(|| {
                let occurred_ms = envelope.occurred_at.as_ref().map_or(0, millis_from_timestamp);
                format!("offset {offset} id {} at {occurred_ms}: {kind:?}", envelope.event_id)
            })
        })
        .collect()
}

pub fn replay(records: &[(i64, EventEnvelope)], capacities: &HashMap<String, HashMap<i32, i32>>) -> Replay {
    let mut result = Replay::default();
    let mut seen = HashSet::new();
    let mut contacts: HashMap<String, (Held, i32)> = HashMap::new();
    let mut loads: HashMap<String, BTreeMap<i32, i32>> = HashMap::new();
    for (offset, envelope) in records {
        if !seen.insert(envelope.event_id.clone()) {
            result.duplicates += 1;
            continue;
        }
        result.events += 1;
        let Some(Payload::Routing(event)) = &envelope.payload else { continue };
        let Some(kind) = event.kind.clone() else { continue };
        let subject = contact_of(&kind).to_owned();
        let mut violation = |what: String| {
            result.violations.push(format!("offset {offset}: {what}"));
            result.suspects.insert(subject.clone());
        };
        match kind {
            routing_event::Kind::Queued(queued) => {
                if contacts.insert(queued.contact.clone(), (Held::Waiting, queued.channel)).is_some() {
                    violation(format!("{} queued twice", queued.contact));
                }
            }
            routing_event::Kind::Offered(offered) => {
                let Some((held, channel)) = contacts.get_mut(&offered.contact) else {
                    violation(format!("{} offered before it was queued", offered.contact));
                    continue;
                };
                if *held != Held::Waiting {
                    violation(format!("{} offered to {} while {held:?}", offered.contact, offered.agent));
                }
                *held = Held::Offered(offered.agent.clone());
                let offer_ms = offered.offer_time.as_ref().map_or(0, millis_from_timestamp);
                result.offer_times.entry(offered.contact.clone()).or_default().push(offer_ms);
                let load = loads.entry(offered.agent.clone()).or_default();
                *load.entry(*channel).or_default() += 1;
                let capacity = capacities.get(&offered.agent).cloned().unwrap_or_default();
                let total: i32 = load.values().sum();
                let voice = load.get(&VOICE).copied().unwrap_or(0);
                let over = load.iter().any(|(channel, load)| *load > capacity.get(channel).copied().unwrap_or(0));
                if over || (voice > 0 && total > 1) {
                    violation(format!("{} over capacity with {load:?} (capacity {capacity:?})", offered.agent));
                }
                let max = result.max_load.entry(offered.agent.clone()).or_default();
                *max = (*max).max(total);
            }
            routing_event::Kind::OfferWithdrawn(withdrawn) => {
                let Some((held, channel)) = contacts.get_mut(&withdrawn.contact) else {
                    violation(format!("{} withdrawn before it was queued", withdrawn.contact));
                    continue;
                };
                if *held != Held::Offered(withdrawn.agent.clone()) {
                    violation(format!("{} withdrawn from {} while {held:?}", withdrawn.contact, withdrawn.agent));
                }
                *held = Held::Waiting;
                *loads.entry(withdrawn.agent.clone()).or_default().entry(*channel).or_default() -= 1;
            }
            routing_event::Kind::Answered(answered) => {
                let Some((held, _)) = contacts.get_mut(&answered.contact) else {
                    violation(format!("{} answered before it was queued", answered.contact));
                    continue;
                };
                if *held != Held::Offered(answered.agent.clone()) {
                    violation(format!("{} answered by {} while {held:?}", answered.contact, answered.agent));
                }
                *held = Held::Answered(answered.agent.clone());
            }
            routing_event::Kind::Completed(completed) => {
                let Some((held, channel)) = contacts.get_mut(&completed.contact) else {
                    violation(format!("{} completed before it was queued", completed.contact));
                    continue;
                };
                if *held != Held::Answered(completed.agent.clone()) {
                    violation(format!("{} completed by {} while {held:?}", completed.contact, completed.agent));
                }
                *held = Held::Ended("completed");
                *loads.entry(completed.agent.clone()).or_default().entry(*channel).or_default() -= 1;
                result.terminal.insert(completed.contact.clone(), "completed");
            }
            routing_event::Kind::Abandoned(abandoned) => {
                let Some((held, _)) = contacts.get_mut(&abandoned.contact) else {
                    violation(format!("{} abandoned before it was queued", abandoned.contact));
                    continue;
                };
                // A ringing offer is withdrawn (customer left) just before.
                if *held != Held::Waiting {
                    violation(format!("{} abandoned while {held:?}", abandoned.contact));
                }
                *held = Held::Ended("abandoned");
                result.terminal.insert(abandoned.contact.clone(), "abandoned");
            }
            routing_event::Kind::Transferred(transferred) => {
                let Some((held, channel)) = contacts.get_mut(&transferred.contact) else {
                    violation(format!("{} transferred before it was queued", transferred.contact));
                    continue;
                };
                // A ringing offer is withdrawn just before; a handled
                // contact releases its agent with the transfer itself.
                match held.clone() {
                    Held::Waiting => {}
                    Held::Answered(agent) if agent == transferred.from_agent => {
                        *loads.entry(agent).or_default().entry(*channel).or_default() -= 1;
                    }
                    other => violation(format!("{} transferred while {other:?}", transferred.contact)),
                }
                *held = Held::Waiting;
            }
        }
    }
    for (agent, load) in &loads {
        if load.values().any(|load| *load != 0) {
            // The contacts the log leaves with this agent, so a failure names
            // what to look for.
            let left: Vec<String> = contacts
                .iter()
                .filter(
                    |(_, (held, _))| matches!(held, Held::Offered(holder) | Held::Answered(holder) if holder == agent),
                )
                .map(|(contact, (held, _))| {
                    result.suspects.insert(contact.clone());
                    format!("{contact} {held:?}")
                })
                .collect();
            result
                .violations
                .push(format!("{agent} still holds {load:?} after every contact ended; left with it: {left:?}"));
        }
    }
    result
}

pub fn is_terminal(status: i32) -> bool {
    status == ContactStatus::Completed as i32 || status == ContactStatus::Abandoned as i32
}

/// Polls GetAssignment until every contact is terminal; returns each
/// contact's status. Fails (with the processes' logs) after [`SETTLE`].
pub async fn await_every_end(routing_url: &str, created: &[Created], processes: &[Process]) -> HashMap<String, i32> {
    let mut routing = RoutingServiceClient::new(grpc(routing_url));
    let mut statuses: HashMap<String, i32> = HashMap::new();
    let deadline = Instant::now() + SETTLE;
    loop {
        for contact in created {
            if statuses.get(&contact.name).is_some_and(|status| is_terminal(*status)) {
                continue;
            }
            let request = GetAssignmentRequest { contact: contact.name.clone() };
            let key = format!("dev-{}-reader", contact.tenant);
            if let Ok(assignment) = routing.get_assignment(authorized(&key, request)).await {
                statuses.insert(contact.name.clone(), assignment.into_inner().status);
            }
        }
        let open: Vec<_> = created.iter().filter(|c| !statuses.get(&c.name).is_some_and(|s| is_terminal(*s))).collect();
        if open.is_empty() {
            return statuses;
        }
        if Instant::now() > deadline {
            let sample: Vec<_> = open.iter().take(10).map(|c| (&c.name, statuses.get(&c.name))).collect();
            let logs: Vec<String> = processes.iter().map(|p| format!("--- {}\n{}", p.label, p.log_tail())).collect();
            panic!("{} contacts never ended, e.g. {sample:?}\n{}", open.len(), logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Replays the routing log against the invariants and checks that every
/// created contact, and nothing else, ended exactly once, as GetAssignment
/// says. Returns the replay and how many contacts ended each way. A broken
/// invariant fails with each contact it is about: its events in the log,
/// its status by GetAssignment and what the processes logged of it.
pub fn verify_exactly_once(
    records: &[(i64, switchboard_proto::events::v1::EventEnvelope)],
    created: &[Created],
    statuses: &HashMap<String, i32>,
    processes: &[Process],
) -> (Replay, BTreeMap<&'static str, usize>) {
    let replayed = replay(records, &capacities());
    if !replayed.violations.is_empty() {
        let mut report = format!("invariants broken:\n{}", replayed.violations.join("\n"));
        for contact in &replayed.suspects {
            let status = statuses.get(contact).and_then(|status| ContactStatus::try_from(*status).ok());
            report.push_str(&format!("\n--- {contact}: GetAssignment {status:?}; its events:\n"));
            report.push_str(&history(records, contact).join("\n"));
            // Logs name a contact by its id, the last part of its name.
            let id = contact.rsplit('/').next().unwrap_or(contact);
            for process in processes {
                let text = std::fs::read_to_string(&process.log).unwrap_or_default();
                for line in text.lines().filter(|line| line.contains(id)) {
                    report.push_str(&format!("\n[{}] {line}", process.label));
                }
            }
        }
        panic!("{report}");
    }
    let names: HashSet<&String> = created.iter().map(|contact| &contact.name).collect();
    assert_eq!(names.len(), created.len(), "every create made a distinct contact");
    for name in replayed.terminal.keys() {
        assert!(names.contains(name), "the log ends {name}, which the test never created");
    }
    let mut ended = BTreeMap::new();
    for contact in created {
        let logged = replayed.terminal.get(&contact.name).unwrap_or_else(|| panic!("{} has no end", contact.name));
        let expected = if *logged == "completed" { ContactStatus::Completed } else { ContactStatus::Abandoned };
        assert_eq!(statuses[&contact.name], expected as i32, "{}: GetAssignment disagrees with the log", contact.name);
        *ended.entry(*logged).or_insert(0) += 1;
    }
    (replayed, ended)
}
