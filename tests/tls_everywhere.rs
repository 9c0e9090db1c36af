//! Every hop encrypted: five `switchboard <service>` processes on the test
//! backends, with mutual TLS between the services (certificates of a CA the
//! test makes), PostgreSQL over TLS (`sslmode=require`) and Redis over TLS
//! (`rediss://`), both checked against the test environment's CA. A chat
//! contact goes from intake through routing to an agent and onto the CRM
//! timeline; plaintext and callers without a certificate are refused.
//! (Kafka stays plaintext: the local broker, tansu 0.6, serves no TLS.)

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::desktop::AgentDesktop;
use support::{Endpoints, Process, authorized, eventually, real_backend_config, scratch_dir, terminate_cleanly};
use switchboard_platform::config::{ClientAuth, TlsConfig};
use switchboard_platform::grpc::lazy_channel;
use switchboard_platform::tls::Tls;
use switchboard_proto::common::v1::{Channel, ChannelCapacity, ContactStatus, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::ListTimelineEntriesRequest;
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{Contact, CreateContactRequest};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, AgentState, CreateAgentRequest};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use switchboard_test_support::pki::TestCa;
use switchboard_test_support::{backend_url, fresh_tls_database, unique_suffix};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const ACME_ADMIN: &str = "dev-acme-admin";
const ACME_READER: &str = "dev-acme-reader";
const OPERATOR: &str = "dev-operator-admin";
const ALICE: &str = "dev-agent-alice";
const WAIT: Duration = Duration::from_secs(60);
const SERVICES: [&str; 5] = ["ingestion", "routing", "presence", "crm", "kpi"];

fn https(endpoints: &Endpoints, service: &str) -> String {
    endpoints.url(service).replacen("http://127.0.0.1", "https://localhost", 1)
}

async fn wait_until_ready_over_tls(endpoints: &Endpoints, tls: &Arc<Tls>, processes: &mut [Process]) {
    for service in SERVICES {
        let url = https(endpoints, service);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            for process in processes.iter_mut() {
                if let Ok(Some(status)) = process.child.try_wait() {
                    panic!("{} exited early with {status}:\n{}", process.label, process.log_tail());
                }
            }
            let mut health = HealthClient::new(lazy_channel(&url, Some(tls)).unwrap());
            let request = HealthCheckRequest { service: support::readiness_name(service) };
            if health.check(request).await.is_ok_and(|answer| answer.into_inner().status == 1) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let logs: Vec<String> =
                    processes.iter().map(|p| format!("--- {}\n{}", p.label, p.log_tail())).collect();
                panic!("{service} never became ready over TLS:\n{}", logs.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn a_contact_crosses_every_service_and_backend_over_tls() {
    let (Some(kafka), Some(redis), Some(admin), Some(postgres_tls), Some(backend_ca)) = (
        backend_url("SWITCHBOARD_TEST_KAFKA"),
        backend_url("SWITCHBOARD_TEST_REDIS_TLS"),
        backend_url("SWITCHBOARD_TEST_POSTGRES"),
        backend_url("SWITCHBOARD_TEST_POSTGRES_TLS"),
        backend_url("SWITCHBOARD_TEST_TLS_CA"),
    ) else {
        return;
    };
    let dir = scratch_dir("tls-everywhere");
    let services_ca = TestCa::new(&dir, "services");
    let service_leaf = services_ca.leaf("service");
    let client_leaf = services_ca.leaf("client");
    let postgres = fresh_tls_database(&admin, &postgres_tls).await.unwrap();
    let run = unique_suffix();
    let mut config = real_backend_config(&kafka, &redis, &postgres, &run, 2_000);
    // The backends' CA, and the services' own certificates for every server
    // and call, mutual.
    config = config.replacen("[redis]\n", &format!("[redis]\nca_file = \"{backend_ca}\"\n"), 1).replacen(
        "[postgres]\n",
        &format!("[postgres]\nca_file = \"{backend_ca}\"\n"),
        1,
    );
    config.push_str(&format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\nclient_auth = \"required\"\n",
        service_leaf.cert_file.display(),
        service_leaf.key_file.display(),
        services_ca.ca_file().display()
    ));
    let config_path = dir.join("switchboard.toml");
    std::fs::write(&config_path, config).unwrap();
    let endpoints = Endpoints::pick();
    let env: Vec<(String, String)> = endpoints
        .env()
        .into_iter()
        .map(|(key, value)| {
            if key.ends_with("__URL") {
                (key, value.replacen("http://127.0.0.1", "https://localhost", 1))
            } else {
                (key, value)
            }
        })
        .collect();
    let config_arg = config_path.to_string_lossy().to_string();
    let mut processes: Vec<Process> = SERVICES
        .iter()
        .map(|service| Process::spawn(service, &[service, "--config", &config_arg], &env, &dir))
        .collect();
    let client = Tls::load(&TlsConfig {
        cert_file: Some(client_leaf.cert_file.clone()),
        key_file: Some(client_leaf.key_file.clone()),
        ca_file: Some(services_ca.ca_file()),
        client_auth: ClientAuth::Required,
        ..TlsConfig::default()
    })
    .unwrap();
    wait_until_ready_over_tls(&endpoints, &client, &mut processes).await;

    // Plaintext and callers without a certificate of the CA are refused.
    let mut plain = HealthClient::new(lazy_channel(&endpoints.url("routing"), None).unwrap());
    assert!(plain.check(HealthCheckRequest::default()).await.is_err(), "plaintext gRPC");
    let anonymous = Tls::load(&TlsConfig { ca_file: Some(services_ca.ca_file()), ..TlsConfig::default() }).unwrap();
    let mut without_certificate =
        HealthClient::new(lazy_channel(&https(&endpoints, "routing"), Some(&anonymous)).unwrap());
    assert!(without_certificate.check(HealthCheckRequest::default()).await.is_err(), "no client certificate");

    let channel = |service: &str| lazy_channel(&https(&endpoints, service), Some(&client)).unwrap();
    let mut presence = PresenceServiceClient::new(channel("presence"));
    let mut routing = RoutingServiceClient::new(channel("routing"));
    let mut ingestion = IngestionServiceClient::new(channel("ingestion"));
    let crm = CrmServiceClient::new(channel("crm"));
    let alice = Agent {
        tenants: vec!["tenants/acme".to_owned()],
        capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 1 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "alice".to_owned(), agent: Some(alice) };
    presence.create_agent(authorized(OPERATOR, request)).await.expect("alice");
    let queue = Queue { channels: vec![Channel::Chat as i32], ..Queue::default() };
    let request =
        CreateQueueRequest { parent: "tenants/acme".to_owned(), queue_id: "support".to_owned(), queue: Some(queue) };
    routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue");
    let mut desktop = AgentDesktop::connect(channel("presence"), ALICE, "agents/alice").await;
    desktop.set_state(AgentState::Available).await;

    let contact = Contact {
        channel: Channel::Chat as i32,
        from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: "visitor-tls".to_owned() }),
        queue: "tenants/acme/queues/support".to_owned(),
        subject: "encrypted all the way".to_owned(),
        ..Contact::default()
    };
    let request = CreateContactRequest {
        parent: "tenants/acme".to_owned(),
        contact: Some(contact),
        request_id: "tls-1".to_owned(),
    };
    // Ingestion calls CRM and routing over mutual TLS before it answers.
    let created = ingestion.create_contact(authorized(ACME_ADMIN, request)).await.expect("created").into_inner();
    let offer = desktop.next_offer().await;
    assert_eq!(offer.contact, created.name);
    // Presence calls routing over mutual TLS on alice's behalf.
    desktop.accept(&created.name).await;
    desktop.complete(&created.name, "done", "").await;
    let entry = eventually("the completed timeline entry, written over TLS", WAIT, || {
        let mut crm = crm.clone();
        let parent = created.customer.clone();
        async move {
            let request = ListTimelineEntriesRequest { parent, ..Default::default() };
            let entries = crm.list_timeline_entries(authorized(ACME_READER, request)).await.ok()?.into_inner().entries;
            entries.into_iter().find(|entry| entry.status == ContactStatus::Completed as i32)
        }
    })
    .await;
    assert_eq!(entry.contact, created.name);
    drop((desktop, presence, routing, ingestion, crm, plain, without_certificate));
    // Waited for off the runtime: this process's connections must go on
    // answering the servers' goodbyes while they drain.
    tokio::task::spawn_blocking(move || terminate_cleanly(processes)).await.unwrap();
}
