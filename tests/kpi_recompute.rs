//! `switchboard kpi recompute` on the real backends: contacts go through
//! the five services, the KPI store is then damaged (facts lost, buckets
//! garbled, an agent's time in state lost and counts inflated), and the
//! command rebuilds it from the events the broker retains: the KPIs and
//! the agent's figures come back exactly as they were, for the whole log
//! and (contacts) for a range.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::desktop::AgentDesktop;
use support::{Endpoints, authorized, eventually, terminate_cleanly, wait_until_ready};
use switchboard_proto::common::v1::{Channel as ChannelKind, ChannelCapacity, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{AbandonContactRequest, Contact, CreateContactRequest};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{
    GetKpiSummaryRequest, KpiFilter, KpiSummary, ListAgentKpisRequest, ListAgentKpisResponse,
};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, AgentState, CreateAgentRequest};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetQueueStatusRequest, Queue};
use switchboard_test_support::leftovers::execute_sql;

const ACME_ADMIN: &str = "dev-acme-admin";
const ACME_READER: &str = "dev-acme-reader";
const ALICE: &str = "dev-agent-alice";
const OPERATOR: &str = "dev-operator-admin";

async fn summary(kpi: &mut KpiServiceClient<tonic::transport::Channel>) -> KpiSummary {
    let filter = KpiFilter { parent: "tenants/acme".to_owned(), ..KpiFilter::default() };
    kpi.get_kpi_summary(authorized(ACME_READER, GetKpiSummaryRequest { filter: Some(filter) }))
        .await
        .expect("summary")
        .into_inner()
}

/// Acme's agents' figures today, every state closed (so the answer does
/// not move with the clock).
async fn agent_figures(kpi: &mut KpiServiceClient<tonic::transport::Channel>) -> ListAgentKpisResponse {
    let now = jiff::Timestamp::now();
    let request = ListAgentKpisRequest {
        parent: "tenants/acme".to_owned(),
        start_time: Some(prost_types::Timestamp { seconds: now.as_second() - 3_600, nanos: 0 }),
        end_time: Some(prost_types::Timestamp { seconds: now.as_second() + 3_600, nanos: 0 }),
        ..ListAgentKpisRequest::default()
    };
    kpi.list_agent_kpis(authorized(ACME_READER, request)).await.expect("agent kpis").into_inner()
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
    // Routing learns of the abandon from the event, not from the call: wait
    // for it, or Alice could be offered the abandoned contact.
    eventually("routing to see two contacts waiting", Duration::from_secs(30), || {
        let mut routing = routing.clone();
        async move {
            let request = GetQueueStatusRequest { name: "tenants/acme/queues/recompute".to_owned() };
            let status = routing.get_queue_status(authorized(ACME_ADMIN, request)).await.ok()?.into_inner();
            (status.channels.iter().map(|channel| channel.waiting).sum::<i32>() == 2).then_some(())
        }
    })
    .await;

    // Alice comes online, handles one contact and goes offline.
    let mut presence = PresenceServiceClient::new(endpoints.channel("presence").await);
    let alice = Agent {
        tenants: vec!["tenants/acme".to_owned()],
        capacities: vec![ChannelCapacity { channel: ChannelKind::Chat as i32, max_concurrent: 1 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "alice".to_owned(), agent: Some(alice) };
    presence.create_agent(authorized(OPERATOR, request)).await.expect("alice");
    let mut desktop = AgentDesktop::connect(endpoints.channel("presence").await, ALICE, "agents/alice").await;
    desktop.set_state(AgentState::Available).await;
    let offer = desktop.next_offer().await;
    desktop.accept(&offer.contact).await;
    desktop.complete(&offer.contact, "resolved", "").await;
    desktop.set_state(AgentState::Offline).await;

    let mut kpi = KpiServiceClient::new(endpoints.channel("kpi").await);
    let settled = eventually("the KPIs of the three contacts", Duration::from_secs(30), || {
        let mut kpi = kpi.clone();
        async move {
            let summary = summary(&mut kpi).await;
            (summary.offered == 3 && summary.waiting == 1 && summary.handled == 1).then_some(summary)
        }
    })
    .await;
    let agents_settled = eventually("alice's figures", Duration::from_secs(30), || {
        let mut kpi = kpi.clone();
        async move {
            let figures = agent_figures(&mut kpi).await;
            let alice = figures.agents.first()?;
            // Her presence changes reach KPI on another topic than the
            // routing counts, so both are waited for: time available
            // counted, and offline counted too (the figures no longer
            // grow with the clock). (She may be offered the other
            // contact before going offline.)
            let staffed = alice.staffed_time.is_some_and(|staffed| staffed.seconds > 0 || staffed.nanos > 0);
            let settled =
                alice.answered == 1 && alice.handled == 1 && staffed && agent_figures(&mut kpi).await == figures;
            settled.then_some(figures)
        }
    })
    .await;

    // Facts lost and buckets garbled.
    let damage = "DELETE FROM kpi.contact_facts WHERE answered_ms IS NULL AND abandoned_ms IS NOT NULL;
                  UPDATE kpi.interval_counts SET offered = offered + 100; UPDATE kpi.day_counts SET offered = offered + 100;";
    execute_sql(&real.postgres, damage).await.expect("damage");
    let damaged = summary(&mut kpi).await;
    assert_ne!(damaged, settled, "the damage shows");

    execute_sql(&real.postgres, "DELETE FROM kpi.agent_state_time; UPDATE kpi.agent_counts SET offered = offered + 5;")
        .await
        .expect("damage the agents' figures");
    assert_ne!(agent_figures(&mut kpi).await, agents_settled, "the damage shows");

    let said = recompute(&real.config, &[]);
    assert!(said.contains("contacts' facts rebuilt") && said.contains("agent figures rebuilt"), "{said}");
    assert_eq!(summary(&mut kpi).await, settled, "rebuilt from the whole log");
    assert_eq!(
        agent_figures(&mut kpi).await,
        agents_settled,
        "agents' figures rebuilt from the whole log; recompute said: {said}"
    );

    execute_sql(&real.postgres, damage).await.expect("damage again");
    let today = jiff::Timestamp::now();
    let from = (today - jiff::SignedDuration::from_hours(1)).to_string();
    let to = (today + jiff::SignedDuration::from_hours(1)).to_string();
    recompute(&real.config, &["--from", &from, "--to", &to]);
    assert_eq!(summary(&mut kpi).await, settled, "rebuilt for the range");
    terminate_cleanly(processes);
}
