//! `switchboard kpi recompute` on the real backends: contacts go through
//! the five services, the KPI store is then damaged (facts lost, buckets
//! garbled), and the command rebuilds it from the events the broker
//! retains: the KPIs come back exactly as they were, for the whole log and
//! for a range.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Endpoints, authorized, eventually, terminate_cleanly, wait_until_ready};
use switchboard_proto::common::v1::{Channel as ChannelKind, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{AbandonContactRequest, Contact, CreateContactRequest};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{GetKpiSummaryRequest, KpiFilter, KpiSummary};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use switchboard_test_support::leftovers::execute_sql;

const ACME_ADMIN: &str = "dev-acme-admin";
const ACME_READER: &str = "dev-acme-reader";

async fn summary(kpi: &mut KpiServiceClient<tonic::transport::Channel>) -> KpiSummary {
    let filter = KpiFilter { parent: "tenants/acme".to_owned(), ..KpiFilter::default() };
    kpi.get_kpi_summary(authorized(ACME_READER, GetKpiSummaryRequest { filter: Some(filter) }))
        .await
        .expect("summary")
        .into_inner()
}

fn recompute(config: &str, range: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["kpi", "recompute", "--config", config])
        .args(range)
        .env("SWITCHBOARD_TELEMETRY__LOG_FILTER", "warn")
        .output()
        .expect("run switchboard kpi recompute");
    assert!(output.status.success(), "kpi recompute: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_kpi_store_is_rebuilt_from_the_log() {
    let Some(real) = support::real_run("kpi-recompute", 2_000).await else { return };
    let endpoints = Endpoints::pick();
    let mut processes = real.spawn_services(&endpoints.env());
    wait_until_ready(&endpoints, &mut processes).await;

    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let request = CreateQueueRequest {
        parent: "tenants/acme".to_owned(),
        queue_id: "recompute".to_owned(),
        queue: Some(Queue::default()),
    };
    routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue");
    let mut ingestion = IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let mut names = Vec::new();
    for number in 0..3 {
        let contact = Contact {
            channel: ChannelKind::Chat as i32,
            from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: format!("visitor-{number}") }),
            queue: "tenants/acme/queues/recompute".to_owned(),
            ..Contact::default()
        };
        let request = CreateContactRequest {
            parent: "tenants/acme".to_owned(),
            contact: Some(contact),
            request_id: format!("recompute-{number}"),
        };
        names.push(ingestion.create_contact(authorized(ACME_ADMIN, request)).await.expect("contact").into_inner().name);
    }
    let abandon = AbandonContactRequest { name: names[0].clone(), ..AbandonContactRequest::default() };
    ingestion.abandon_contact(authorized(ACME_ADMIN, abandon)).await.expect("abandon");
    let mut kpi = KpiServiceClient::new(endpoints.channel("kpi").await);
    let settled = eventually("the KPIs of the three contacts", Duration::from_secs(30), || {
        let mut kpi = kpi.clone();
        async move {
            let summary = summary(&mut kpi).await;
            (summary.offered == 3 && summary.waiting == 2).then_some(summary)
        }
    })
    .await;

    // Facts lost and buckets garbled.
    let damage = "DELETE FROM kpi.contact_facts WHERE answered_ms IS NULL AND abandoned_ms IS NOT NULL;
                  UPDATE kpi.interval_counts SET offered = offered + 100; UPDATE kpi.day_counts SET offered = offered + 100;";
    execute_sql(&real.postgres, damage).await.expect("damage");
    let damaged = summary(&mut kpi).await;
    assert_ne!(damaged, settled, "the damage shows");

    let said = recompute(&real.config, &[]);
    assert!(said.contains("contacts' facts rebuilt"), "{said}");
    assert_eq!(summary(&mut kpi).await, settled, "rebuilt from the whole log");

    execute_sql(&real.postgres, damage).await.expect("damage again");
    let today = jiff::Timestamp::now();
    let from = (today - jiff::SignedDuration::from_hours(1)).to_string();
    let to = (today + jiff::SignedDuration::from_hours(1)).to_string();
    recompute(&real.config, &["--from", &from, "--to", &to]);
    assert_eq!(summary(&mut kpi).await, settled, "rebuilt for the range");
    terminate_cleanly(processes);
}
