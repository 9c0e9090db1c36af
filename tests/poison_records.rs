//! Poison records never stop the platform (real Kafka, Redis and PostgreSQL,
//! all five services in one process): garbage on every topic and events no
//! consumer can handle are dead-lettered by every consumer that reads them
//! (routing, presence, presence-effects, CRM, KPI), each of which then
//! handles the next records; an event from an older release with a NUL in
//! its subject is stored safely; `switchboard dead-letters list` shows the
//! dead letters and `switchboard dead-letters replay` puts one back.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Endpoints, Process, authorized, eventually, wait_until_ready};
use switchboard_core::event::{ALL_TOPICS, CONTACTS_TOPIC, PRESENCE_TOPIC, ROUTING_TOPIC, envelope};
use switchboard_core::names::contact_name;
use switchboard_core::{ContactId, TenantId};
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::{EventBus, RawRecord};
use switchboard_platform::config::KafkaConfig;
use switchboard_proto::common::v1::{Channel, ChannelCapacity, ContactStatus, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::crm::v1::{ListTimelineEntriesRequest, ResolveCustomerRequest};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{Contact, ContactCreated, ContactEvent, CreateContactRequest, contact_event};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{GetKpiSummaryRequest, KpiFilter};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    Agent, AgentState, CreateAgentRequest, GetAgentRequest, SetAgentStateRequest, WatchAgentStatesRequest,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetAssignmentRequest, Queue};
use tokio_stream::StreamExt;

const OPERATOR: &str = "dev-operator-admin";
const ACME_ADMIN: &str = "dev-acme-admin";
const ACME_READER: &str = "dev-acme-reader";
const PATIENCE: Duration = Duration::from_secs(60);
/// Every consumer of the platform, as dead letters name them.
const CONSUMERS: [&str; 5] = ["routing", "presence", "presence-effects", "crm", "kpi"];

fn dead_letters(config_arg: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["dead-letters"])
        .args(args)
        .args(["--config", config_arg])
        .env("SWITCHBOARD_TELEMETRY__LOG_FILTER", "warn")
        .output()
        .expect("run switchboard dead-letters");
    assert!(output.status.success(), "dead-letters {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn created_event(tenant: &TenantId, contact: Contact) -> switchboard_proto::events::v1::EventEnvelope {
    let subject = contact.name.rsplit('/').next().unwrap_or_default().to_owned();
    let created = ContactEvent { kind: Some(contact_event::Kind::Created(ContactCreated { contact: Some(contact) })) };
    envelope(Some(tenant), &subject, Payload::Contact(created))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_consumer_dead_letters_poison_and_handles_what_follows() {
    let Some(real) = support::real_run("poison", 2_000).await else { return };
    let (dir, run, kafka, config_arg) = (real.dir, real.run, real.kafka, real.config);
    let endpoints = Endpoints::pick();
    let services = "ingestion,routing,presence,crm,kpi";
    let mut processes =
        vec![Process::spawn("all", &["run", "--services", services, "--config", &config_arg], &endpoints.env(), &dir)];
    wait_until_ready(&endpoints, &mut processes).await;
    let kafka_config = KafkaConfig {
        brokers: kafka,
        partitions: 3,
        replication_factor: 1,
        group_prefix: format!("e2e-{run}"),
        topic_prefix: format!("e2e-{run}."),
        ..Default::default()
    };
    let bus = KafkaBus::connect(&kafka_config, &ALL_TOPICS).await.expect("kafka");
    let acme = TenantId::parse("acme", "tenant").unwrap();
    let globex = TenantId::parse("globex", "tenant").unwrap();

    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let mut presence = PresenceServiceClient::new(endpoints.channel("presence").await);
    let mut ingestion = IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let mut crm = CrmServiceClient::new(endpoints.channel("crm").await);
    let kpi = KpiServiceClient::new(endpoints.channel("kpi").await);
    let queue = Queue { channels: vec![Channel::Chat as i32], ..Queue::default() };
    let request = CreateQueueRequest { parent: "tenants/acme".into(), queue_id: "support".into(), queue: Some(queue) };
    routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue");
    let alice = Agent {
        tenants: vec!["tenants/acme".into()],
        // Two chats: the old release's contact below is routed too.
        capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 2 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "alice".into(), agent: Some(alice) };
    presence.create_agent(authorized(OPERATOR, request)).await.expect("agent");

    // Poison: bytes that are no event on every topic, and an event whose
    // contact belongs to another tenant than its envelope.
    for topic in [CONTACTS_TOPIC, ROUTING_TOPIC, PRESENCE_TOPIC] {
        let garbage = RawRecord {
            topic: topic.to_owned(),
            partition: 0,
            offset: 0,
            key: b"poison".to_vec(),
            payload: b"\xffnot an event".to_vec(),
            traceparent: None,
        };
        bus.publish_raw(&garbage).await.expect("publish garbage");
    }
    let foreign = Contact {
        name: contact_name(&globex, &ContactId::generate()),
        queue: "tenants/acme/queues/support".into(),
        channel: Channel::Chat as i32,
        ..Contact::default()
    };
    bus.publish(CONTACTS_TOPIC, &created_event(&acme, foreign)).await.expect("publish the cross-tenant event");

    // An event as an older release could have written it: a NUL in the subject.
    let identity = CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: "visitor-old".into() };
    let request =
        ResolveCustomerRequest { parent: "tenants/acme".into(), identity: Some(identity), display_name: String::new() };
    let customer = crm.resolve_customer(authorized(ACME_ADMIN, request)).await.unwrap().into_inner().customer.unwrap();
    let old = Contact {
        name: contact_name(&acme, &ContactId::generate()),
        queue: "tenants/acme/queues/support".into(),
        channel: Channel::Chat as i32,
        customer: customer.name.clone(),
        subject: "old\0release".into(),
        create_time: Some(switchboard_core::time::timestamp_from_millis(switchboard_core::time::now_millis())),
        ..Contact::default()
    };
    bus.publish(CONTACTS_TOPIC, &created_event(&acme, old)).await.expect("publish the old event");

    // What follows the poison is handled by every consumer.
    let mut watch = presence
        .watch_agent_states(authorized(OPERATOR, WatchAgentStatesRequest::default()))
        .await
        .expect("watch")
        .into_inner();
    let request = SetAgentStateRequest {
        name: "agents/alice".into(),
        state: AgentState::Available as i32,
        reason: String::new(),
    };
    presence.set_agent_state(authorized(OPERATOR, request)).await.expect("alice available");
    let watched = tokio::time::timeout(PATIENCE, watch.next()).await.expect("a state change").expect("stream").unwrap();
    assert_eq!(watched.state, AgentState::Available as i32, "presence's own consumer handles a later record");
    let contact = Contact {
        channel: Channel::Chat as i32,
        from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: "visitor-new".into() }),
        queue: "tenants/acme/queues/support".into(),
        subject: "after the poison".into(),
        ..Contact::default()
    };
    let request =
        CreateContactRequest { parent: "tenants/acme".into(), contact: Some(contact), request_id: "r-1".into() };
    let created = ingestion.create_contact(authorized(ACME_ADMIN, request)).await.expect("create").into_inner();
    eventually("routing to offer the new contact to alice", PATIENCE, || {
        let mut routing = routing.clone();
        let name = created.name.clone();
        async move {
            let assignment =
                routing.get_assignment(authorized(ACME_READER, GetAssignmentRequest { contact: name })).await.ok()?;
            (assignment.into_inner().status == ContactStatus::Offered as i32).then_some(())
        }
    })
    .await;
    eventually("presence-effects to record the offer", PATIENCE, || {
        let mut presence = presence.clone();
        let name = created.name.clone();
        async move {
            let agent =
                presence.get_agent(authorized(OPERATOR, GetAgentRequest { name: "agents/alice".into() })).await.ok()?;
            agent.into_inner().active_contacts.iter().any(|held| held.contact == name).then_some(())
        }
    })
    .await;
    eventually("CRM to show both contacts, the old subject made safe", PATIENCE, || {
        let mut crm = crm.clone();
        let parent = customer.name.clone();
        async move {
            let request = ListTimelineEntriesRequest { parent, ..ListTimelineEntriesRequest::default() };
            let entries = crm.list_timeline_entries(authorized(ACME_READER, request)).await.ok()?.into_inner().entries;
            entries.iter().any(|entry| entry.subject == "old\u{FFFD}release").then_some(())
        }
    })
    .await;
    eventually("KPI to count the new contact", PATIENCE, || {
        let mut kpi = kpi.clone();
        async move {
            let filter = KpiFilter { parent: "tenants/acme".into(), ..KpiFilter::default() };
            let summary = kpi
                .get_kpi_summary(authorized(ACME_READER, GetKpiSummaryRequest { filter: Some(filter) }))
                .await
                .ok()?;
            (summary.into_inner().inbound >= 2).then_some(())
        }
    })
    .await;

    // Every consumer dead-lettered what it read of the poison.
    let listing = eventually("every consumer's dead letters", PATIENCE, || {
        let config_arg = config_arg.clone();
        async move {
            let listing = dead_letters(&config_arg, &["list"]);
            CONSUMERS.iter().all(|consumer| listing.contains(&format!("consumer={consumer} "))).then_some(listing)
        }
    })
    .await;
    assert!(listing.contains("MALFORMED_RECORD"), "{listing}");
    let crm_foreign = listing
        .lines()
        .find(|line| line.contains("consumer=crm ") && line.contains("INVALID_FIELD"))
        .unwrap_or_else(|| panic!("CRM dead-lettered the cross-tenant event:\n{listing}"));
    assert!(crm_foreign.contains("tenant=acme"), "{crm_foreign}");
    let crm_letters = |listing: &str| listing.lines().filter(|line| line.contains("consumer=crm ")).count();
    let before = crm_letters(&listing);

    // Replayed, the event goes back on its topic and CRM reads it again.
    let id = crm_foreign.split_whitespace().next().expect("an id");
    let replayed = dead_letters(&config_arg, &["replay", id]);
    assert!(replayed.contains("1 dead letters replayed"), "{replayed}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let again = dead_letters(&config_arg, &["list", "--consumer", "crm"]);
        if crm_letters(&again) > before {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            // What CRM's consumer did meanwhile (rebalances, retries), to
            // tell a consumer that stopped reading from one that read it.
            let log = std::fs::read_to_string(&processes[0].log).unwrap_or_default();
            let crm_lines: Vec<&str> = log.lines().filter(|line| line.contains("crm")).collect();
            let crm_tail = crm_lines[crm_lines.len().saturating_sub(30)..].join("\n");
            panic!(
                "CRM never read the replayed event again: {before} CRM dead letters before the replay, now:\n{again}\n\
                 the listing before:\n{listing}\nthe replay: {replayed}\nCRM's log lines:\n{crm_tail}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let status = processes.remove(0).terminate();
    assert!(status.success(), "all services drain and exit 0: {status}");
}
