//! A contact taken while CRM is down (intake stays open) gets its customer
//! once CRM is back: CRM resolves the sender from the contact's event and
//! publishes `CustomerResolved`, which reaches routing's assignment and
//! ingestion's record. Five `switchboard <service>` processes on the test
//! backends (Kafka, Redis, PostgreSQL).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{Endpoints, Process, authorized, eventually, terminate_cleanly, wait_until_ready};
use switchboard_proto::common::v1::{Channel, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::ResolveCustomerRequest;
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{Contact, CreateContactRequest, GetContactRequest};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetAssignmentRequest, Queue};

const ACME_ADMIN: &str = "dev-acme-admin";
const ACME_READER: &str = "dev-acme-reader";
const WAIT: Duration = Duration::from_secs(60);

fn sender() -> CustomerIdentity {
    CustomerIdentity { kind: IdentityKind::Email as i32, value: "late@example.com".to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_taken_while_crm_is_down_gets_its_customer_once_crm_is_back() {
    let Some(real) = support::real_run("late-customer", 2_000).await else { return };
    let endpoints = Endpoints::pick();
    let mut processes = real.spawn_services(&endpoints.env());
    wait_until_ready(&endpoints, &mut processes).await;
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let queue = Queue { channels: vec![Channel::Chat as i32], ..Queue::default() };
    let request =
        CreateQueueRequest { parent: "tenants/acme".to_owned(), queue_id: "support".to_owned(), queue: Some(queue) };
    routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue");

    let crm_at = processes.iter().position(|process| process.label == "crm").expect("crm process");
    let stopped = processes.remove(crm_at).terminate();
    assert!(stopped.success(), "crm stops cleanly: {stopped}");
    let mut ingestion = IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let contact = Contact {
        channel: Channel::Chat as i32,
        from: Some(sender()),
        queue: "tenants/acme/queues/support".to_owned(),
        subject: "taken while crm was down".to_owned(),
        ..Contact::default()
    };
    let request = CreateContactRequest {
        parent: "tenants/acme".to_owned(),
        contact: Some(contact),
        request_id: "late-customer-1".to_owned(),
    };
    let created = ingestion.create_contact(authorized(ACME_ADMIN, request)).await.expect("intake stays open");
    let created = created.into_inner();
    assert!(created.customer.is_empty(), "crm could not be asked: {created:?}");

    processes.push(Process::spawn("crm-again", &["crm", "--config", &real.config], &endpoints.env(), &real.dir));
    let ingestion_record = eventually("ingestion's record to name the customer", WAIT, || {
        let (mut ingestion, name) = (ingestion.clone(), created.name.clone());
        async move {
            let request = GetContactRequest { name };
            let contact = ingestion.get_contact(authorized(ACME_READER, request)).await.ok()?.into_inner();
            (!contact.customer.is_empty()).then_some(contact.customer)
        }
    })
    .await;
    let assignment = eventually("routing's assignment to name the customer", WAIT, || {
        let (mut routing, contact) = (routing.clone(), created.name.clone());
        async move {
            let request = GetAssignmentRequest { contact };
            let assignment = routing.get_assignment(authorized(ACME_READER, request)).await.ok()?.into_inner();
            (!assignment.customer.is_empty()).then_some(assignment.customer)
        }
    })
    .await;
    let mut crm = CrmServiceClient::new(endpoints.channel("crm").await);
    let request = ResolveCustomerRequest {
        parent: "tenants/acme".to_owned(),
        identity: Some(sender()),
        display_name: String::new(),
    };
    let resolved = crm.resolve_customer(authorized(ACME_ADMIN, request)).await.expect("resolve").into_inner();
    let customer = resolved.customer.expect("customer").name;
    assert!(!resolved.created, "crm resolved the sender from the event already");
    assert_eq!((ingestion_record.as_str(), assignment.as_str()), (customer.as_str(), customer.as_str()));
    terminate_cleanly(processes);
}
