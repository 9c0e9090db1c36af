//! A client business leaves: through the public APIs only, the operator
//! deletes tenant `hooli` while one of its contacts is being handled, one
//! rings at an agent it shares with `acme` and one waits. An unforced
//! deletion is refused and changes nothing; a forced one stops its keys and
//! hides it everywhere within 2 seconds, frees the agents (the shared one
//! takes acme's next contact), removes its own agent and keeps the shared
//! one for acme, and ends in `DELETED` with the id never given out again.
//! On the real backends the test then reads PostgreSQL and Redis directly:
//! nothing of `hooli` is left outside the access schema's tombstone.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::desktop::AgentDesktop;
use support::{Endpoints, authorized, eventually, expect_code, terminate_cleanly, wait_until_ready};
use switchboard_proto::access::v1::access_service_client::AccessServiceClient;
use switchboard_proto::access::v1::{
    ApiKey, CreateApiKeyRequest, CreateTenantRequest, DeleteTenantRequest, GetTenantRequest, ListAuditRecordsRequest,
    Tenant, TenantState,
};
use switchboard_proto::common::v1::{Channel as ChannelKind, ChannelCapacity, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{Contact, CreateContactRequest};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    Agent, AgentState, CreateAgentRequest, GetAgentRequest, WatchAgentStatesRequest, agent_session_response,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, ListQueuesRequest, Queue};
use switchboard_test_support::error_reason;
use switchboard_test_support::leftovers::{redis_naming_tenant, rows_naming_tenant};
use tonic::Code;
use tonic::transport::Channel;

const OPERATOR: &str = "dev-operator-admin";
const ACME_ADMIN: &str = "dev-acme-admin";
const TENANT: &str = "tenants/hooli";
/// What "every replica within 2 seconds" allows.
const PROPAGATION: Duration = Duration::from_secs(2);
/// How long the erasure may take: a grace of 3 s, then a pass a second,
/// routing's in two.
const ERASURE: Duration = Duration::from_secs(30);

struct Clients {
    access: AccessServiceClient<Channel>,
    presence: PresenceServiceClient<Channel>,
    routing: RoutingServiceClient<Channel>,
    ingestion: IngestionServiceClient<Channel>,
}

async fn create_key(clients: &mut Clients, key: ApiKey) -> String {
    let request = CreateApiKeyRequest { api_key: Some(key) };
    clients.access.create_api_key(authorized(OPERATOR, request)).await.expect("key created").into_inner().secret
}

async fn create_contact(
    clients: &Clients,
    key: &str,
    parent: &str,
    queue: &str,
    request_id: &str,
) -> Result<Contact, tonic::Status> {
    let contact = Contact {
        channel: ChannelKind::Chat as i32,
        from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: format!("visitor-{request_id}") }),
        queue: format!("{parent}/queues/{queue}"),
        subject: "leaving".to_owned(),
        ..Contact::default()
    };
    let request =
        CreateContactRequest { parent: parent.to_owned(), contact: Some(contact), request_id: request_id.to_owned() };
    clients.ingestion.clone().create_contact(authorized(key, request)).await.map(tonic::Response::into_inner)
}

async fn create_agent(clients: &mut Clients, id: &str, tenants: &[&str]) -> String {
    let agent = Agent {
        display_name: id.to_owned(),
        tenants: tenants.iter().map(|tenant| (*tenant).to_owned()).collect(),
        capacities: vec![ChannelCapacity { channel: ChannelKind::Chat as i32, max_concurrent: 1 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: id.to_owned(), agent: Some(agent) };
    clients.presence.create_agent(authorized(OPERATOR, request)).await.expect("agent");
    let key = ApiKey {
        display_name: format!("{id}'s desktop"),
        role: "agent".to_owned(),
        agent: format!("agents/{id}"),
        ..ApiKey::default()
    };
    create_key(clients, key).await
}

async fn list_queues_code(clients: &Clients, key: &str) -> (Code, Option<String>) {
    let request = ListQueuesRequest { parent: TENANT.to_owned(), ..Default::default() };
    match clients.routing.clone().list_queues(authorized(key, request)).await {
        Ok(_) => (Code::Ok, None),
        Err(status) => (status.code(), error_reason(&status)),
    }
}

async fn tenant_of(clients: &Clients) -> Tenant {
    let request = GetTenantRequest { name: TENANT.to_owned() };
    clients.access.clone().get_tenant(authorized(OPERATOR, request)).await.expect("the tenant").into_inner()
}

async fn a_client_leaves(endpoints: &Endpoints) {
    let mut clients = Clients {
        access: AccessServiceClient::new(endpoints.channel("presence").await),
        presence: PresenceServiceClient::new(endpoints.channel("presence").await),
        routing: RoutingServiceClient::new(endpoints.channel("routing").await),
        ingestion: IngestionServiceClient::new(endpoints.channel("ingestion").await),
    };
    let request = CreateTenantRequest { tenant_id: "hooli".to_owned(), tenant: None };
    clients.access.create_tenant(authorized(OPERATOR, request)).await.expect("hooli");
    let admin = ApiKey {
        display_name: "hooli admin".to_owned(),
        role: "tenant_admin".to_owned(),
        tenant: TENANT.to_owned(),
        ..ApiKey::default()
    };
    let admin_secret = create_key(&mut clients, admin).await;
    eventually("routing honours hooli's admin", PROPAGATION, || async {
        (list_queues_code(&clients, &admin_secret).await.0 == Code::Ok).then_some(())
    })
    .await;
    for (parent, key) in [(TENANT, admin_secret.as_str()), ("tenants/acme", ACME_ADMIN)] {
        let request = CreateQueueRequest {
            parent: parent.to_owned(),
            queue_id: "front".to_owned(),
            queue: Some(Queue::default()),
        };
        clients.routing.create_queue(authorized(key, request)).await.expect("a queue");
    }
    let ivan_secret = create_agent(&mut clients, "ivan", &[TENANT]).await;
    let sam_secret = create_agent(&mut clients, "sam", &[TENANT, "tenants/acme"]).await;
    // Their desktops' accepts go on to routing, another process.
    for secret in [&ivan_secret, &sam_secret] {
        eventually("routing honours the agents' keys", PROPAGATION, || async {
            (list_queues_code(&clients, secret).await.0 == Code::PermissionDenied).then_some(())
        })
        .await;
    }

    // Ivan handles one contact, Sam is offered a second, a third waits.
    let mut ivan = AgentDesktop::connect(endpoints.channel("presence").await, &ivan_secret, "agents/ivan").await;
    ivan.set_state(AgentState::Available).await;
    let handled = create_contact(&clients, &admin_secret, TENANT, "front", "handled").await.expect("first");
    let offer = ivan.next_offer().await;
    assert_eq!(offer.contact, handled.name);
    ivan.accept(&offer.contact).await;
    let ringing = create_contact(&clients, &admin_secret, TENANT, "front", "ringing").await.expect("second");
    let mut sam = AgentDesktop::connect(endpoints.channel("presence").await, &sam_secret, "agents/sam").await;
    sam.set_state(AgentState::Available).await;
    assert_eq!(sam.next_offer().await.contact, ringing.name, "sam is offered hooli's second contact");
    create_contact(&clients, &admin_secret, TENANT, "front", "waiting").await.expect("third");

    // A supervisor screen of hooli's, watching its agents.
    let watch = WatchAgentStatesRequest { tenant: TENANT.to_owned() };
    let mut watching =
        clients.presence.watch_agent_states(authorized(&admin_secret, watch)).await.expect("watch").into_inner();

    // Unforced: refused, naming what is left, and nothing changes.
    let refused = clients
        .access
        .delete_tenant(authorized(OPERATOR, DeleteTenantRequest { name: TENANT.to_owned(), force: false }))
        .await;
    let refused = expect_code(refused, Code::FailedPrecondition, "an unforced deletion of a tenant with data");
    assert_eq!(error_reason(&refused).as_deref(), Some("TENANT_HAS_DATA"));
    for kind in ["agents", "api keys", "queues", "contacts", "customers"] {
        assert!(refused.message().contains(kind), "names {kind}: {}", refused.message());
    }
    assert_eq!(tenant_of(&clients).await.state, TenantState::Active as i32, "still active");
    assert_eq!(list_queues_code(&clients, &admin_secret).await.0, Code::Ok, "its admin still works");
    let denied = clients
        .access
        .delete_tenant(authorized(&admin_secret, DeleteTenantRequest { name: TENANT.to_owned(), force: true }))
        .await;
    expect_code(denied, Code::PermissionDenied, "a tenant admin deletes no tenant");

    // Forced: its keys stop and it is gone everywhere within 2 seconds.
    let deleting = clients
        .access
        .delete_tenant(authorized(OPERATOR, DeleteTenantRequest { name: TENANT.to_owned(), force: true }))
        .await
        .expect("forced deletion")
        .into_inner();
    assert_eq!(deleting.state, TenantState::Deleting as i32, "{deleting:?}");
    assert!(deleting.delete_request_time.is_some() && !deleting.erasure_pending.is_empty(), "{deleting:?}");
    eventually("hooli's admin key stops", PROPAGATION, || async {
        (list_queues_code(&clients, &admin_secret).await.0 == Code::Unauthenticated).then_some(())
    })
    .await;
    let ended = tokio::time::timeout(PROPAGATION * 2, async {
        loop {
            match watching.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the watch ends");
    let ended = ended.expect("with an error");
    assert_eq!(
        (ended.code(), error_reason(&ended).as_deref()),
        (Code::Unauthenticated, Some("CREDENTIAL_WITHDRAWN")),
        "an open stream of the deleted tenant's key ends"
    );
    eventually("routing treats hooli as absent", PROPAGATION, || async {
        (list_queues_code(&clients, OPERATOR).await == (Code::NotFound, Some("TENANT_DELETED".to_owned())))
            .then_some(())
    })
    .await;
    eventually("intake refuses hooli's contacts", PROPAGATION, || async {
        create_contact(&clients, OPERATOR, TENANT, "front", "too-late")
            .await
            .is_err_and(|status| status.code() == Code::NotFound)
            .then_some(())
    })
    .await;

    // Its live contacts end: Sam's offer is withdrawn and Sam is free for acme.
    let revoked = sam
        .next_matching("the withdrawn offer", |kind| match kind {
            agent_session_response::Kind::OfferRevoked(revoked) => Some(revoked),
            _ => None,
        })
        .await;
    assert_eq!(
        (revoked.contact.as_str(), revoked.reason.as_str()),
        (ringing.name.as_str(), "WITHDRAW_REASON_TENANT_DELETED")
    );
    let acme_contact =
        create_contact(&clients, ACME_ADMIN, "tenants/acme", "front", "after-hooli").await.expect("acme's");
    assert_eq!(sam.next_offer().await.contact, acme_contact.name, "the shared agent takes acme's next contact");

    let deleted = eventually("every service erases hooli", ERASURE, || async {
        let tenant = tenant_of(&clients).await;
        (tenant.state == TenantState::Deleted as i32).then_some(tenant)
    })
    .await;
    assert!(deleted.erasure_pending.is_empty() && deleted.delete_time.is_some(), "{deleted:?}");
    let ivan_gone =
        clients.presence.get_agent(authorized(OPERATOR, GetAgentRequest { name: "agents/ivan".to_owned() })).await;
    expect_code(ivan_gone, Code::NotFound, "hooli's own agent is deleted");
    let sam_now = clients
        .presence
        .get_agent(authorized(OPERATOR, GetAgentRequest { name: "agents/sam".to_owned() }))
        .await
        .expect("the shared agent stays")
        .into_inner();
    assert_eq!(sam_now.tenants, ["tenants/acme"], "and serves acme only");
    // The agent's key is revoked with its agent, at the erasure just
    // seen; every replica's credentials follow within their poll.
    eventually("the deleted agent's key to be refused as revoked", PROPAGATION, || async {
        let ivan_key = clients
            .routing
            .clone()
            .list_queues(authorized(
                &ivan_secret,
                ListQueuesRequest { parent: "tenants/acme".to_owned(), ..Default::default() },
            ))
            .await;
        ivan_key.is_err_and(|status| status.code() == Code::Unauthenticated).then_some(())
    })
    .await;
    let again = clients
        .access
        .create_tenant(authorized(OPERATOR, CreateTenantRequest { tenant_id: "hooli".to_owned(), tenant: None }))
        .await;
    expect_code(again, Code::AlreadyExists, "a deleted tenant's id is never given out again");
    let request = ListAuditRecordsRequest { tenant: TENANT.to_owned(), ..Default::default() };
    let audit = clients.access.list_audit_records(authorized(OPERATOR, request)).await.expect("audit").into_inner();
    let actions: Vec<&str> = audit.audit_records.iter().map(|record| record.action.as_str()).collect();
    assert_eq!(
        actions,
        ["switchboard.access.v1.AccessService/DeleteTenant", "switchboard.access.v1.AccessService/CreateTenant"],
        "only the records of the tenant itself are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_client_is_erased_on_switchboard_dev() {
    support::on_dev("deletion-dev", async |endpoints, _| a_client_leaves(endpoints).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_client_is_erased_on_kafka_redis_postgres() {
    let Some(real) = support::real_run("deletion-real", 2_000).await else { return };
    let endpoints = Endpoints::pick();
    let mut processes = real.spawn_services(&endpoints.env());
    wait_until_ready(&endpoints, &mut processes).await;
    a_client_leaves(&endpoints).await;
    // Only the access schema keeps the tenant (its tombstone, revoked keys
    // and the deletion's audit record).
    let rows = rows_naming_tenant(&real.postgres, "hooli", &["access"]).await.expect("postgres");
    assert!(rows.is_empty(), "rows of hooli left: {rows:?}");
    let redis = switchboard_test_support::backend_url("SWITCHBOARD_TEST_REDIS").expect("redis");
    let left = redis_naming_tenant(&redis, &format!("sb:{{e2e-{}}}", real.run), "hooli").await.expect("redis");
    assert!(left.is_empty(), "redis keys, fields or members of hooli left: {left:?}");
    terminate_cleanly(processes);
}
