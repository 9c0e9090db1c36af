//! A client business signed on Monday is served on Monday, without a
//! restart: through the public APIs only, the operator creates tenant
//! `initech`, a key for its admin and an agent with an agent key; within
//! 2 seconds every service (other processes on the real backends) honours
//! them: the admin makes a queue and a contact, the agent is offered it. A
//! rotation with no overlap retires the old secret, a suspension refuses
//! the tenant's work and its keys until it resumes, and a revoked key stops
//! — each within 2 seconds, on another process than the one that changed
//! it. Another tenant's admin sees none of it.
//!
//! Run twice: on `switchboard dev` and on five `switchboard <service>`
//! processes against real Kafka, Redis and PostgreSQL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::future::Future;
use std::time::Duration;

use support::desktop::AgentDesktop;
use support::{Endpoints, authorized};
use switchboard_proto::access::v1::access_service_client::AccessServiceClient;
use switchboard_proto::access::v1::{
    ApiKey, CreateApiKeyRequest, CreateTenantRequest, GetApiKeyRequest, ListApiKeysRequest, ListAuditRecordsRequest,
    ResumeTenantRequest, RevokeApiKeyRequest, RotateApiKeyRequest, SuspendTenantRequest, Tenant, TenantState,
};
use switchboard_proto::common::v1::{Channel as ChannelKind, ChannelCapacity, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{Contact, CreateContactRequest};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, AgentState, CreateAgentRequest};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, ListQueuesRequest, Queue};
use tonic::Code;
use tonic::transport::Channel;

const OPERATOR: &str = "dev-operator-admin";
const ACME_ADMIN: &str = "dev-acme-admin";
/// What "every replica within 2 seconds" allows.
const PROPAGATION: Duration = Duration::from_secs(2);

/// Waits until `probe` holds, failing the test if that takes longer than
/// [`PROPAGATION`] from `since`.
async fn within_propagation<F, Fut>(what: &str, since: tokio::time::Instant, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        if probe().await {
            return;
        }
        assert!(since.elapsed() < PROPAGATION, "{what}: not within {PROPAGATION:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn create_key(access: &mut AccessServiceClient<Channel>, caller: &str, key: ApiKey) -> (ApiKey, String) {
    let request = CreateApiKeyRequest { api_key: Some(key) };
    let created = access.create_api_key(authorized(caller, request)).await.expect("key created").into_inner();
    (created.api_key.expect("the key"), created.secret)
}

/// Lists initech's queues with `key` on routing: the code it gets.
async fn routing_answers(routing: &RoutingServiceClient<Channel>, key: &str) -> Code {
    let request = ListQueuesRequest { parent: "tenants/initech".to_owned(), ..Default::default() };
    match routing.clone().list_queues(authorized(key, request)).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn create_contact(
    ingestion: &IngestionServiceClient<Channel>,
    key: &str,
    request_id: &str,
) -> Result<Contact, tonic::Status> {
    let contact = Contact {
        channel: ChannelKind::Chat as i32,
        from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: format!("visitor-{request_id}") }),
        queue: "tenants/initech/queues/front".to_owned(),
        subject: "first day".to_owned(),
        ..Contact::default()
    };
    let request = CreateContactRequest {
        parent: "tenants/initech".to_owned(),
        contact: Some(contact),
        request_id: request_id.to_owned(),
    };
    ingestion.clone().create_contact(authorized(key, request)).await.map(tonic::Response::into_inner)
}

async fn a_new_client_on_monday(endpoints: &Endpoints, _http_port: u16) {
    let mut access = AccessServiceClient::new(endpoints.channel("presence").await);
    let routing = RoutingServiceClient::new(endpoints.channel("routing").await);
    let ingestion = IngestionServiceClient::new(endpoints.channel("ingestion").await);

    let tenant = Tenant { display_name: "Initech".to_owned(), ..Tenant::default() };
    let request = CreateTenantRequest { tenant_id: "initech".to_owned(), tenant: Some(tenant) };
    let created = access.create_tenant(authorized(OPERATOR, request)).await.expect("tenant").into_inner();
    assert_eq!((created.name.as_str(), created.state), ("tenants/initech", TenantState::Active as i32));
    let again = CreateTenantRequest { tenant_id: "acme".to_owned(), tenant: None };
    let taken = access.create_tenant(authorized(OPERATOR, again)).await.expect_err("acme is configured");
    assert_eq!(taken.code(), Code::AlreadyExists);

    let admin_key = ApiKey {
        display_name: "initech admin".to_owned(),
        role: "tenant_admin".to_owned(),
        tenant: "tenants/initech".to_owned(),
        ..ApiKey::default()
    };
    let (admin, admin_secret) = create_key(&mut access, OPERATOR, admin_key).await;
    assert!(admin_secret.starts_with("sbk_") && admin_secret.starts_with(&admin.secret_prefix), "{admin:?}");
    let since = tokio::time::Instant::now();
    within_propagation("routing honours the new key and tenant", since, || async {
        routing_answers(&routing, &admin_secret).await == Code::Ok
    })
    .await;

    // Monday's work: a queue, an agent with a key, a contact offered.
    let queue = Queue { display_name: "Front desk".to_owned(), ..Queue::default() };
    let request =
        CreateQueueRequest { parent: "tenants/initech".to_owned(), queue_id: "front".to_owned(), queue: Some(queue) };
    routing.clone().create_queue(authorized(&admin_secret, request)).await.expect("the admin makes a queue");
    let agent = Agent {
        display_name: "Ivan".to_owned(),
        tenants: vec!["tenants/initech".to_owned()],
        capacities: vec![ChannelCapacity { channel: ChannelKind::Chat as i32, max_concurrent: 1 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "ivan".to_owned(), agent: Some(agent) };
    let mut presence = PresenceServiceClient::new(endpoints.channel("presence").await);
    presence.create_agent(authorized(OPERATOR, request)).await.expect("ivan");
    let agent_key = ApiKey {
        display_name: "ivan's desktop".to_owned(),
        role: "agent".to_owned(),
        agent: "agents/ivan".to_owned(),
        ..ApiKey::default()
    };
    let (_, ivan_secret) = create_key(&mut access, OPERATOR, agent_key).await;
    // His desktop's accepts go on to routing, another process.
    let since = tokio::time::Instant::now();
    within_propagation("routing honours ivan's key", since, || async {
        routing_answers(&routing, &ivan_secret).await == Code::PermissionDenied
    })
    .await;
    let mut ivan = AgentDesktop::connect(endpoints.channel("presence").await, &ivan_secret, "agents/ivan").await;
    ivan.set_state(AgentState::Available).await;
    let contact = create_contact(&ingestion, &admin_secret, "monday-1").await.expect("initech's first contact");
    let offer = ivan.next_offer().await;
    assert_eq!(offer.contact, contact.name, "ivan is offered initech's contact");
    ivan.accept(&offer.contact).await;

    // Another tenant's admin sees none of it; initech's admin only its own.
    let hidden = access.get_api_key(authorized(ACME_ADMIN, GetApiKeyRequest { name: admin.name.clone() })).await;
    assert_eq!(hidden.expect_err("acme's admin").code(), Code::NotFound);
    let listed = access
        .list_api_keys(authorized(&admin_secret, ListApiKeysRequest::default()))
        .await
        .expect("initech's admin lists")
        .into_inner()
        .api_keys;
    assert_eq!(listed.iter().map(|key| key.name.as_str()).collect::<Vec<_>>(), [admin.name.as_str()]);
    let denied = access.create_tenant(authorized(&admin_secret, CreateTenantRequest::default())).await;
    assert_eq!(denied.expect_err("tenants are the operator's").code(), Code::PermissionDenied);

    // A rotation with no overlap: the old secret stops, the new one works.
    let request = RotateApiKeyRequest {
        name: admin.name.clone(),
        previous_secret_valid_for: Some(prost_types::Duration { seconds: 0, nanos: 0 }),
    };
    let rotated = access.rotate_api_key(authorized(&admin_secret, request)).await.expect("rotated").into_inner();
    let since = tokio::time::Instant::now();
    within_propagation("routing retires the old secret", since, || async {
        routing_answers(&routing, &admin_secret).await == Code::Unauthenticated
    })
    .await;
    let new_secret = rotated.secret;
    within_propagation("routing takes the new secret", since, || async {
        routing_answers(&routing, &new_secret).await == Code::Ok
    })
    .await;

    // Suspended: its work is refused and its keys stop; resumed, both back.
    access
        .suspend_tenant(authorized(OPERATOR, SuspendTenantRequest { name: "tenants/initech".to_owned() }))
        .await
        .expect("suspended");
    let since = tokio::time::Instant::now();
    within_propagation("ingestion refuses the suspended tenant", since, || async {
        create_contact(&ingestion, OPERATOR, "suspended-1")
            .await
            .is_err_and(|status| status.code() == Code::FailedPrecondition)
    })
    .await;
    within_propagation("routing refuses the suspended tenant's keys", since, || async {
        routing_answers(&routing, &new_secret).await == Code::FailedPrecondition
    })
    .await;
    access
        .resume_tenant(authorized(OPERATOR, ResumeTenantRequest { name: "tenants/initech".to_owned() }))
        .await
        .expect("resumed");
    let since = tokio::time::Instant::now();
    within_propagation("the resumed tenant's keys work again", since, || async {
        routing_answers(&routing, &new_secret).await == Code::Ok
    })
    .await;

    // The audit holds who changed what, before and after; acme sees none of it.
    let request = ListAuditRecordsRequest { tenant: "tenants/initech".to_owned(), ..Default::default() };
    let records = access.list_audit_records(authorized(OPERATOR, request)).await.expect("audit").into_inner();
    let actions: Vec<&str> = records.audit_records.iter().map(|record| record.action.as_str()).collect();
    for expected in [
        "switchboard.access.v1.AccessService/CreateTenant",
        "switchboard.access.v1.AccessService/CreateApiKey",
        "switchboard.routing.v1.RoutingService/CreateQueue",
        "switchboard.presence.v1.PresenceService/CreateAgent",
        "switchboard.access.v1.AccessService/RotateApiKey",
        "switchboard.access.v1.AccessService/SuspendTenant",
        "switchboard.access.v1.AccessService/ResumeTenant",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let queue_created = records
        .audit_records
        .iter()
        .find(|record| record.action.ends_with("/CreateQueue"))
        .expect("the queue's creation");
    assert_eq!(
        (queue_created.actor.as_str(), queue_created.resource.as_str()),
        (admin.name.as_str(), "tenants/initech/queues/front")
    );
    let after = queue_created.after.as_ref().expect("the queue as created");
    assert_eq!(after.type_url, "type.googleapis.com/switchboard.routing.v1.Queue");
    let queue = <Queue as prost::Message>::decode(after.value.as_slice()).expect("a queue");
    assert_eq!(queue.display_name, "Front desk");
    let suspended = records.audit_records.iter().find(|record| record.action.ends_with("/SuspendTenant")).unwrap();
    let before = <Tenant as prost::Message>::decode(suspended.before.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(before.state, TenantState::Active as i32, "before the suspension");
    let request = ListAuditRecordsRequest { tenant: "tenants/initech".to_owned(), ..Default::default() };
    let hidden = access.list_audit_records(authorized(ACME_ADMIN, request)).await.expect_err("initech's audit");
    assert_eq!(hidden.code(), Code::PermissionDenied);

    // Revoked: stops everywhere.
    let revoked = access
        .revoke_api_key(authorized(OPERATOR, RevokeApiKeyRequest { name: admin.name.clone() }))
        .await
        .expect("revoked")
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    let since = tokio::time::Instant::now();
    within_propagation("routing refuses the revoked key", since, || async {
        routing_answers(&routing, &new_secret).await == Code::Unauthenticated
    })
    .await;
    within_propagation("ingestion refuses the revoked key", since, || async {
        create_contact(&ingestion, &new_secret, "revoked-1")
            .await
            .is_err_and(|status| status.code() == Code::Unauthenticated)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_served_at_once_on_switchboard_dev() {
    support::on_dev("access-dev", a_new_client_on_monday).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_served_at_once_on_kafka_redis_postgres() {
    support::on_real_backends("access-real", a_new_client_on_monday).await;
}
