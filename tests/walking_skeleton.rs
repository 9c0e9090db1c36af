//! The walking skeleton, end to end through the public gRPC API only: a
//! chat contact of tenant `acme` is ingested, its customer resolved, routed
//! to a connected agent who accepts and completes it; CRM shows it on the
//! customer's timeline and KPI counts it; a second contact is abandoned;
//! tenant `globex` sees none of it; bad input changes nothing.
//!
//! Run twice: against `switchboard dev` (embedded backends) and against
//! five `switchboard <service>` processes on real Kafka, Redis and
//! PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use prost_types::Duration as ProtoDuration;
use support::desktop::AgentDesktop;
use support::{
    Endpoints, Process, authorized, eventually, expect_code, scratch_dir, violated_fields, wait_until_serving,
};
use switchboard_core::time::millis_from_timestamp;
use switchboard_proto::common::v1::{Channel, ChannelCapacity, ContactStatus, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::crm::v1::{GetCustomerRequest, ListTimelineEntriesRequest};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{
    AbandonContactRequest, Contact, CreateContactRequest, GetContactRequest, ListContactsRequest,
};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{GetKpiSummaryRequest, KpiFilter, KpiSummary};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, AgentState, CreateAgentRequest, DeleteAgentRequest};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetAssignmentRequest, GetQueueRequest, Queue};
use tonic::Code;

const ACME_ADMIN: &str = "dev-acme-admin";
const ACME_READER: &str = "dev-acme-reader";
const GLOBEX_ADMIN: &str = "dev-globex-admin";
const OPERATOR: &str = "dev-operator-admin";
const ALICE: &str = "dev-agent-alice";
const WAIT: Duration = Duration::from_secs(60);

fn chat_contact(visitor: &str) -> Contact {
    Contact {
        channel: Channel::Chat as i32,
        from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: visitor.to_owned() }),
        queue: "tenants/acme/queues/support".to_owned(),
        subject: "where is my order?".to_owned(),
        body: "hello, order 1234 has not arrived".to_owned(),
        ..Contact::default()
    }
}

async fn create_contact(
    ingestion: &mut IngestionServiceClient<tonic::transport::Channel>,
    key: &str,
    parent: &str,
    contact: Contact,
    request_id: &str,
) -> Result<tonic::Response<Contact>, tonic::Status> {
    let request =
        CreateContactRequest { parent: parent.to_owned(), contact: Some(contact), request_id: request_id.to_owned() };
    ingestion.create_contact(authorized(key, request)).await
}

async fn kpis(kpi: &mut KpiServiceClient<tonic::transport::Channel>, key: &str) -> Result<KpiSummary, tonic::Status> {
    let filter = KpiFilter { parent: "tenants/acme".to_owned(), ..KpiFilter::default() };
    kpi.get_kpi_summary(authorized(key, GetKpiSummaryRequest { filter: Some(filter) })).await.map(|r| r.into_inner())
}

fn millis(duration: &Option<ProtoDuration>) -> i64 {
    duration.as_ref().map_or(0, |duration| duration.seconds * 1000 + i64::from(duration.nanos) / 1_000_000)
}

async fn walking_skeleton(endpoints: &Endpoints) {
    let mut ingestion = IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let mut presence = PresenceServiceClient::new(endpoints.channel("presence").await);
    let mut crm = CrmServiceClient::new(endpoints.channel("crm").await);
    let mut kpi = KpiServiceClient::new(endpoints.channel("kpi").await);

    // Setup: an agent of the operator serving acme, and acme's chat queue
    // where every abandon counts (no short-abandon allowance).
    let alice = Agent {
        display_name: "Alice".to_owned(),
        tenants: vec!["tenants/acme".to_owned()],
        capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 2 }],
        ..Agent::default()
    };
    // `switchboard dev` creates a development alice (serving acme and
    // globex): this story's alice serves acme only.
    let delete =
        presence.delete_agent(authorized(OPERATOR, DeleteAgentRequest { name: "agents/alice".to_owned() })).await;
    assert!(delete.as_ref().map_or_else(|status| status.code() == Code::NotFound, |_| true), "{delete:?}");
    let create_agent = CreateAgentRequest { agent_id: "alice".to_owned(), agent: Some(alice) };
    presence.create_agent(authorized(OPERATOR, create_agent)).await.expect("operator creates alice");
    let queue = Queue {
        display_name: "Support".to_owned(),
        channels: vec![Channel::Chat as i32],
        short_abandon_threshold: Some(ProtoDuration { seconds: 0, nanos: 0 }),
        ..Queue::default()
    };
    let create_queue =
        CreateQueueRequest { parent: "tenants/acme".to_owned(), queue_id: "support".to_owned(), queue: Some(queue) };
    routing.create_queue(authorized(ACME_ADMIN, create_queue)).await.expect("acme admin creates its queue");

    // Alice connects her desktop and becomes available.
    let mut desktop = AgentDesktop::connect(endpoints.channel("presence").await, ALICE, "agents/alice").await;
    desktop.set_state(AgentState::Available).await;

    // 1-2. A chat contact arrives; CRM resolves a customer for the visitor.
    let created =
        create_contact(&mut ingestion, ACME_ADMIN, "tenants/acme", chat_contact("visitor-42"), "walking-skeleton-1")
            .await
            .expect("contact created")
            .into_inner();
    assert!(created.name.starts_with("tenants/acme/contacts/ct_"), "{}", created.name);
    assert!(created.customer.starts_with("tenants/acme/customers/cu_"), "{}", created.customer);
    let retried =
        create_contact(&mut ingestion, ACME_ADMIN, "tenants/acme", chat_contact("visitor-42"), "walking-skeleton-1")
            .await
            .expect("retry succeeds")
            .into_inner();
    assert_eq!(retried.name, created.name, "a retried create returns the same contact");
    let customer = crm
        .get_customer(authorized(
            ACME_READER,
            GetCustomerRequest { name: created.customer.clone(), ..Default::default() },
        ))
        .await
        .expect("customer exists")
        .into_inner();
    assert!(customer.identities.iter().any(|identity| identity.value == "visitor-42"));

    // 3. Routing offers it to Alice on her stream.
    let offer = desktop.next_offer().await;
    assert_eq!(offer.contact, created.name);
    assert_eq!(offer.queue, "tenants/acme/queues/support");

    // 4. Alice accepts, then completes with a disposition, resolved.
    desktop.accept(&created.name).await;
    let assignment = routing
        .get_assignment(authorized(ACME_READER, GetAssignmentRequest { contact: created.name.clone() }))
        .await
        .expect("assignment")
        .into_inner();
    assert_eq!(assignment.status, ContactStatus::Answered as i32);
    assert_eq!(assignment.agent, "agents/alice");
    let measured_wait_ms = millis_from_timestamp(&assignment.answer_time.expect("answer time"))
        - millis_from_timestamp(&assignment.enqueue_time.expect("enqueue time"));
    assert!(measured_wait_ms >= 0);
    desktop.complete(&created.name, "order-status", "parcel located").await;

    // 5. CRM's timeline shows the contact; KPI counts it with the measured ASA.
    let entry = eventually("the completed timeline entry", WAIT, || {
        let mut crm = crm.clone();
        let parent = created.customer.clone();
        async move {
            let entries = crm
                .list_timeline_entries(authorized(
                    ACME_READER,
                    ListTimelineEntriesRequest { parent, ..Default::default() },
                ))
                .await
                .ok()?
                .into_inner()
                .entries;
            entries.into_iter().find(|entry| entry.status == ContactStatus::Completed as i32)
        }
    })
    .await;
    assert_eq!(entry.contact, created.name);
    assert_eq!((entry.disposition.as_str(), entry.resolved), ("order-status", true));
    assert_eq!(entry.channel, Channel::Chat as i32);
    assert_eq!(entry.agent, "agents/alice");
    let first = eventually("KPIs of the answered contact", WAIT, || {
        let mut kpi = kpi.clone();
        async move { kpis(&mut kpi, ACME_READER).await.ok().filter(|summary| summary.completed == 1) }
    })
    .await;
    assert_eq!((first.offered, first.answered, first.abandoned), (1, 1, 0));
    assert_eq!(millis(&first.asa), measured_wait_ms, "ASA is the measured wait");
    assert_eq!(first.resolved, 1);

    // A second contact whose customer leaves while waiting.
    desktop.set_state(AgentState::Away).await;
    let second =
        create_contact(&mut ingestion, ACME_ADMIN, "tenants/acme", chat_contact("visitor-77"), "walking-skeleton-2")
            .await
            .expect("second contact created")
            .into_inner();
    eventually("the second contact to wait in queue", WAIT, || {
        let mut routing = routing.clone();
        let contact = second.name.clone();
        async move {
            let assignment =
                routing.get_assignment(authorized(ACME_READER, GetAssignmentRequest { contact })).await.ok()?;
            (assignment.get_ref().status == ContactStatus::Queued as i32 && assignment.get_ref().position == 1)
                .then_some(())
        }
    })
    .await;
    let abandoned = ingestion
        .abandon_contact(authorized(
            ACME_ADMIN,
            AbandonContactRequest { name: second.name.clone(), reason: "visitor closed the chat".to_owned() },
        ))
        .await
        .expect("abandon")
        .into_inner();
    assert!(abandoned.abandon_time.is_some());
    let both = eventually("KPIs with the abandoned contact", WAIT, || {
        let mut kpi = kpi.clone();
        async move {
            kpis(&mut kpi, ACME_READER).await.ok().filter(|summary| summary.offered == 2 && summary.abandoned == 1)
        }
    })
    .await;
    assert_eq!((both.answered, both.abandoned, both.lost), (1, 1, 1));
    assert!((both.lcr - 0.5).abs() < 1e-9, "LCR is 50%, got {}", both.lcr);
    // KPI may count the abandon from ingestion's event before routing has
    // handled it, so routing's terminal state is awaited, not sampled.
    eventually("routing to end the second contact as abandoned", WAIT, || {
        let mut routing = routing.clone();
        let contact = second.name.clone();
        async move {
            let assignment =
                routing.get_assignment(authorized(ACME_READER, GetAssignmentRequest { contact })).await.ok()?;
            (assignment.get_ref().status == ContactStatus::Abandoned as i32).then_some(())
        }
    })
    .await;

    // 6. Tenant globex sees none of it.
    let denied =
        ingestion.get_contact(authorized(GLOBEX_ADMIN, GetContactRequest { name: created.name.clone() })).await;
    expect_code(denied, Code::PermissionDenied, "globex reads acme's contact");
    let denied = crm
        .list_timeline_entries(authorized(
            GLOBEX_ADMIN,
            ListTimelineEntriesRequest { parent: created.customer.clone(), ..Default::default() },
        ))
        .await;
    expect_code(denied, Code::PermissionDenied, "globex reads acme's timeline");
    expect_code(kpis(&mut kpi, GLOBEX_ADMIN).await, Code::PermissionDenied, "globex reads acme's KPIs");
    let denied = routing
        .get_queue(authorized(GLOBEX_ADMIN, GetQueueRequest { name: "tenants/acme/queues/support".to_owned() }))
        .await;
    expect_code(denied, Code::PermissionDenied, "globex reads acme's queue");
    let globex_contacts = ingestion
        .list_contacts(authorized(
            GLOBEX_ADMIN,
            ListContactsRequest { parent: "tenants/globex".to_owned(), ..Default::default() },
        ))
        .await
        .expect("globex lists its own")
        .into_inner();
    assert!(globex_contacts.contacts.is_empty(), "globex has no contacts of its own");

    // Bad input gets a typed error naming the problem, and changes nothing.
    let mut missing_from = chat_contact("x");
    missing_from.from = None;
    let bad = create_contact(&mut ingestion, ACME_ADMIN, "tenants/acme", missing_from, "bad-1").await;
    let status = expect_code(bad, Code::InvalidArgument, "contact without sender");
    assert!(violated_fields(&status).iter().any(|field| field.starts_with("contact.from")), "{status:?}");
    let mut unknown_queue = chat_contact("x");
    unknown_queue.queue = "tenants/acme/queues/nope".to_owned();
    let bad = create_contact(&mut ingestion, ACME_ADMIN, "tenants/acme", unknown_queue, "bad-2").await;
    let status = expect_code(bad, Code::NotFound, "unknown queue");
    assert!(status.message().contains("tenants/acme/queues/nope"), "{}", status.message());
    let bad = create_contact(&mut ingestion, OPERATOR, "tenants/globex", chat_contact("x"), "bad-3").await;
    expect_code(bad, Code::InvalidArgument, "queue of another tenant than the parent");
    let bad = ingestion
        .list_contacts(authorized(
            OPERATOR,
            ListContactsRequest { parent: "tenants/initech".to_owned(), ..Default::default() },
        ))
        .await;
    expect_code(bad, Code::NotFound, "unknown tenant");
    let mut oversized = chat_contact("x");
    oversized.body = "x".repeat(1024 * 1024);
    let bad = create_contact(&mut ingestion, ACME_ADMIN, "tenants/acme", oversized, "bad-4").await;
    expect_code(bad, Code::ResourceExhausted, "oversized payload");
    let bad = create_contact(&mut ingestion, "not-a-key", "tenants/acme", chat_contact("x"), "bad-5").await;
    expect_code(bad, Code::Unauthenticated, "wrong key");
    let bad = create_contact(&mut ingestion, ACME_READER, "tenants/acme", chat_contact("x"), "bad-6").await;
    expect_code(bad, Code::PermissionDenied, "a reader cannot create contacts");
    let acme_contacts = ingestion
        .list_contacts(authorized(
            ACME_READER,
            ListContactsRequest { parent: "tenants/acme".to_owned(), ..Default::default() },
        ))
        .await
        .expect("acme lists")
        .into_inner();
    assert_eq!(acme_contacts.contacts.len(), 2, "rejected requests created nothing");
    let after = kpis(&mut kpi, ACME_READER).await.expect("kpis");
    assert_eq!((after.offered, after.answered, after.abandoned), (2, 1, 1), "rejected requests changed no KPI");
}

/// The customer's identity and words, which the story sends, appear in no
/// log line of any process.
fn assert_no_personal_data_in_logs(processes: &[Process]) {
    for personal in ["visitor-42", "order 1234", "where is my order", "parcel located"] {
        assert_eq!(support::count_in_logs(processes, "", personal), 0, "`{personal}` was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_skeleton_on_switchboard_dev() {
    let dir = scratch_dir("dev");
    let endpoints = Endpoints::pick();
    let mut processes = vec![Process::spawn("dev", &["dev"], &endpoints.env(), &dir)];
    wait_until_serving(&endpoints, &mut processes).await;
    walking_skeleton(&endpoints).await;
    assert_no_personal_data_in_logs(&processes);
    let status = processes.pop().expect("dev process").terminate();
    assert!(status.success(), "switchboard dev exits cleanly on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_skeleton_on_kafka_redis_postgres() {
    let Some(real) = support::real_run("real", 2_000).await else { return };
    let endpoints = Endpoints::pick();
    let mut processes = real.spawn_services(&endpoints.env());
    wait_until_serving(&endpoints, &mut processes).await;
    walking_skeleton(&endpoints).await;
    assert_no_personal_data_in_logs(&processes);
    support::terminate_cleanly(processes);
}
