//! The wallboard in a real browser: headless Chromium opens the page the
//! KPI service serves, signs in with acme's reader key and watches the
//! tiles follow contacts driven through the public API — two arrive and
//! wait, the customer of one leaves, an agent comes online, answers and
//! completes the other, and her occupancy shows. Another tenant's key is refused acme's feed, and the operator's
//! view lists every tenant. A screenshot is kept in
//! `target/test-artifacts/`.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::path::PathBuf;

use support::browser::{Browser, Page};
use support::desktop::AgentDesktop;
use support::{Endpoints, Process, authorized, free_port, scratch_dir, terminate_cleanly, wait_until_ready};
use switchboard_proto::common::v1::{Channel as ChannelKind, ChannelCapacity, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{AbandonContactRequest, Contact, CreateContactRequest};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, AgentState, CreateAgentRequest};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};

const ACME_ADMIN: &str = "dev-acme-admin";
const ACME_READER: &str = "dev-acme-reader";
const ALICE: &str = "dev-agent-alice";
const OPERATOR: &str = "dev-operator-admin";

/// Waits until the tile `id` shows `value`.
async fn tile(page: &mut Page, id: &str, value: &str) {
    let shows = format!("document.getElementById('{id}')?.dataset.value === '{value}'");
    page.until(&format!("{id} = {value}"), &shows).await;
}

async fn create_contact(
    ingestion: &mut IngestionServiceClient<tonic::transport::Channel>,
    request_id: &str,
) -> Contact {
    let contact = Contact {
        channel: ChannelKind::Chat as i32,
        from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: format!("visitor-{request_id}") }),
        queue: "tenants/acme/queues/wallboard".to_owned(),
        subject: "on the wallboard".to_owned(),
        ..Contact::default()
    };
    let request = CreateContactRequest {
        parent: "tenants/acme".to_owned(),
        contact: Some(contact),
        request_id: request_id.to_owned(),
    };
    ingestion.create_contact(authorized(ACME_ADMIN, request)).await.expect("contact").into_inner()
}

async fn wallboard_in_a_browser(endpoints: &Endpoints, kpi_http: u16, label: &str) {
    let Some(chromium) = switchboard_test_support::backend_url("SWITCHBOARD_TEST_CHROMIUM") else { return };
    // Alice, as `dev` has her (the real backends start without agents).
    let mut presence = PresenceServiceClient::new(endpoints.channel("presence").await);
    let alice = Agent {
        display_name: "Alice".to_owned(),
        tenants: vec!["tenants/acme".to_owned()],
        capacities: vec![ChannelCapacity { channel: ChannelKind::Chat as i32, max_concurrent: 3 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "alice".to_owned(), agent: Some(alice) };
    if let Err(status) = presence.create_agent(authorized(OPERATOR, request)).await {
        assert_eq!(status.code(), tonic::Code::AlreadyExists, "alice: {status:?}");
    }
    let mut routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let queue = Queue { display_name: "Wallboard".to_owned(), ..Queue::default() };
    let request =
        CreateQueueRequest { parent: "tenants/acme".to_owned(), queue_id: "wallboard".to_owned(), queue: Some(queue) };
    routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue");

    let browser = Browser::launch(&chromium, &scratch_dir(&format!("chromium-wallboard-{label}"))).await;
    let mut page = browser.page().await;
    let board = format!("http://127.0.0.1:{kpi_http}/wallboard");
    page.navigate(&format!("{board}#tenant=acme")).await;
    page.until("the sign-in form", "document.getElementById('connect') !== null").await;
    page.evaluate(&format!("document.getElementById('key').value = '{ACME_READER}'")).await;
    page.evaluate("document.getElementById('connect').click()").await;
    page.until("the live board", "document.getElementById('status').textContent.startsWith('live')").await;
    tile(&mut page, "tile-offered", "0").await;
    tile(&mut page, "tile-waiting", "0").await;

    // Two contacts arrive and wait.
    let mut ingestion = IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let first = create_contact(&mut ingestion, "wallboard-1").await;
    let second = create_contact(&mut ingestion, "wallboard-2").await;
    tile(&mut page, "tile-offered", "2").await;
    tile(&mut page, "tile-waiting", "2").await;
    page.until("a longest wait", "document.getElementById('tile-longest-wait').dataset.value !== ''").await;

    // The first customer leaves.
    let request = AbandonContactRequest { name: first.name.clone(), ..AbandonContactRequest::default() };
    ingestion.abandon_contact(authorized(ACME_ADMIN, request)).await.expect("abandon");
    tile(&mut page, "tile-waiting", "1").await;

    // Alice comes online and answers the second.
    let mut alice = AgentDesktop::connect(endpoints.channel("presence").await, ALICE, "agents/alice").await;
    alice.set_state(AgentState::Available).await;
    tile(&mut page, "agents-available", "1").await;
    let offer = alice.next_offer().await;
    assert_eq!(offer.contact, second.name);
    alice.accept(&offer.contact).await;
    tile(&mut page, "tile-answered", "1").await;
    tile(&mut page, "tile-waiting", "0").await;
    // Her handle time over her time staffed shows once she completes it.
    alice.complete(&offer.contact, "resolved", "").await;
    page.until("her occupancy", "Number(document.getElementById('tile-occupancy').dataset.value) > 0").await;
    page.until("the day's chart", "document.querySelectorAll('#chart rect').length >= 2").await;
    let screenshot =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("../test-artifacts/wallboard-{label}.png"));
    page.screenshot(&screenshot).await;

    // Another tenant's key is refused acme's feed; the operator sees all.
    let foreign = "fetch('/wallboard/live?tenant=acme', {headers: {Authorization: 'Bearer dev-globex-reader'}})\
                   .then((response) => { window.foreignStatus = response.status; })";
    page.evaluate(foreign).await;
    page.until("globex refused acme's feed", "window.foreignStatus === 403").await;
    page.evaluate("sessionStorage.clear()").await;
    page.navigate(&board).await;
    page.until("the sign-in form", "document.getElementById('connect') !== null").await;
    page.evaluate("document.getElementById('key').value = 'dev-operator-admin'").await;
    page.evaluate("document.getElementById('connect').click()").await;
    page.until("acme's row", "document.getElementById('tenant-acme')?.dataset.offered === '2'").await;
    page.until("globex's row", "document.getElementById('tenant-globex') !== null").await;
}

/// Every service's env, with the KPI service's HTTP server on `kpi_http`.
fn env_with_wallboard(endpoints: &Endpoints, kpi_http: u16) -> Vec<(String, String)> {
    let mut env = endpoints.env();
    env.push(("SWITCHBOARD_SERVICES__KPI__HTTP_LISTEN".to_owned(), format!("127.0.0.1:{kpi_http}")));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallboard_follows_contacts_in_a_browser_on_switchboard_dev() {
    let endpoints = Endpoints::pick();
    let kpi_http = free_port();
    let dir = scratch_dir("wallboard-dev");
    let mut processes = vec![Process::spawn("dev", &["dev"], &env_with_wallboard(&endpoints, kpi_http), &dir)];
    wait_until_ready(&endpoints, &mut processes).await;
    wallboard_in_a_browser(&endpoints, kpi_http, "dev").await;
    terminate_cleanly(processes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallboard_follows_contacts_in_a_browser_on_kafka_redis_postgres() {
    let Some(real) = support::real_run("wallboard-real", 2_000).await else { return };
    let endpoints = Endpoints::pick();
    let kpi_http = free_port();
    let mut processes = real.spawn_services(&env_with_wallboard(&endpoints, kpi_http));
    wait_until_ready(&endpoints, &mut processes).await;
    wallboard_in_a_browser(&endpoints, kpi_http, "real").await;
    terminate_cleanly(processes);
}
