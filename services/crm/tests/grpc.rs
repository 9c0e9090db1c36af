//! The CRM service end to end on in-memory backends: a real server on a
//! local port, a real tonic client with bearer keys, and events published on
//! the in-process bus.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::event::{CONTACTS_TOPIC, ROUTING_TOPIC, envelope};
use switchboard_core::names::contact_name;
use switchboard_core::time::timestamp_from_millis;
use switchboard_core::{ContactId, CustomerId, TenantId};
use switchboard_crm::Crm;
use switchboard_crm::store::CrmStore;
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{EventBus, StartFrom, Subscription};
use switchboard_platform::config::{ApiKeyConfig, AuthConfig};
use switchboard_platform::service::Service;
use switchboard_proto::common::v1::{Channel as ContactChannel, ContactStatus, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::crm::v1::{
    Customer, GetCustomerRequest, ListCustomersRequest, ListTimelineEntriesRequest, MergeCustomersRequest,
    ResolveCustomerRequest, TimelineEntry,
};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{Contact, ContactCreated, ContactEvent, CustomerResolved, contact_event};
use switchboard_proto::routing::v1::{
    ContactAbandoned, ContactAnswered, ContactCompleted, ContactOffered, ContactQueued, ContactTransferred,
    OfferWithdrawn, RoutingEvent, TransferReason, routing_event,
};
use switchboard_test_support::{RunningService, authorized, error_reason, kit, start_service, violated_fields};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const ACME_ADMIN: &str = "acme-admin-key";
const ACME_READER: &str = "acme-reader-key";
const GLOBEX_ADMIN: &str = "globex-admin-key";
const OPERATOR: &str = "operator-key";
const ALICE: &str = "alice-agent-key";
const SERVICE_KEY: &str = "crm-test-service-key-0123456789abcdef";
const WAIT_LIMIT: Duration = Duration::from_secs(10);

struct TestServer {
    client: CrmServiceClient<Channel>,
    /// The service's store, for what the API does not show yet.
    store: Arc<dyn CrmStore>,
    bus: MemoryBus,
    service: RunningService,
}

impl TestServer {
    async fn start() -> TestServer {
        let key = |name: &str, secret: &str, role: &str, tenant: Option<&str>| {
            ApiKeyConfig::for_key(name, secret, role, tenant, None)
        };
        let auth = AuthConfig {
            tenants: vec!["acme".to_owned(), "globex".to_owned()],
            api_keys: vec![
                key("acme-admin", ACME_ADMIN, "tenant_admin", Some("acme")),
                key("acme-reader", ACME_READER, "tenant_reader", Some("acme")),
                key("globex-admin", GLOBEX_ADMIN, "tenant_admin", Some("globex")),
                key("operator", OPERATOR, "operator_admin", None),
                ApiKeyConfig::for_key("alice", ALICE, "agent", None, Some("alice")),
            ],
            service_key: Some(SERVICE_KEY.to_owned()),
            rate_limit: Default::default(),
            tenant_policies: Default::default(),
            oidc: None,
        };
        let access = AccessControl::from_config(&auth).expect("access control");
        let bus = MemoryBus::new();
        let mut kit = kit::<Crm>(Config::default(), Arc::new(bus.clone()), access);
        let crm = Crm::in_memory(&mut kit);
        let store = Arc::clone(&crm.store);
        let service = start_service(kit, crm).await;
        let client = connect(&service.url()).await;
        TestServer { client, store, bus, service }
    }

    async fn stop(self) {
        self.service.stop().await;
    }

    async fn publish(&self, topic: &str, tenant: &TenantId, contact: &ContactId, payload: Payload) {
        self.bus.publish(topic, &envelope(Some(tenant), contact.as_str(), payload)).await.expect("publish");
    }

    async fn resolve(
        &self,
        key: &str,
        parent: &str,
        kind: IdentityKind,
        value: &str,
    ) -> Result<(Customer, bool), Status> {
        let identity = CustomerIdentity { kind: kind.into(), value: value.to_owned() };
        let request = ResolveCustomerRequest {
            parent: parent.to_owned(),
            identity: Some(identity),
            display_name: "Alice".to_owned(),
        };
        let response = self.client.clone().resolve_customer(authorized(key, request)).await?.into_inner();
        Ok((response.customer.expect("customer in response"), response.created))
    }

    async fn timeline(
        &self,
        key: &str,
        customer: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<TimelineEntry>, String), Status> {
        let request = ListTimelineEntriesRequest {
            parent: customer.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
            ..Default::default()
        };
        let response = self.client.clone().list_timeline_entries(authorized(key, request)).await?.into_inner();
        Ok((response.entries, response.next_page_token))
    }
}

/// Connects, retrying until the server accepts or the wait limit passes.
async fn connect(url: &str) -> CrmServiceClient<Channel> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        match CrmServiceClient::connect(url.to_owned()).await {
            Ok(client) => return client,
            Err(error) if Instant::now() < deadline => {
                eprintln!("server not accepting yet: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("server at {url} never accepted: {error}"),
        }
    }
}

#[tokio::test]
async fn resolve_finds_one_customer_per_identity() {
    let server = TestServer::start().await;
    let (created, was_created) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Email, " Alice@Example.com").await.expect("resolve");
    assert!(was_created);
    assert!(created.name.starts_with("tenants/acme/customers/cu_"), "{}", created.name);
    assert_eq!(created.identities[0].value, "alice@example.com");
    let (found, was_created) =
        server.resolve(OPERATOR, "tenants/acme", IdentityKind::Email, "alice@EXAMPLE.com").await.expect("resolve");
    assert!(!was_created);
    assert_eq!(found, created);

    let fetched = server
        .client
        .clone()
        .get_customer(authorized(ACME_READER, GetCustomerRequest { name: created.name.clone(), ..Default::default() }))
        .await
        .expect("reader may get")
        .into_inner();
    assert_eq!(fetched, created);
    let listed = server
        .client
        .clone()
        .list_customers(authorized(
            ACME_READER,
            ListCustomersRequest { parent: "tenants/acme".to_owned(), ..Default::default() },
        ))
        .await
        .expect("reader may list")
        .into_inner();
    assert_eq!(listed.customers, vec![created]);

    let denied = server.resolve(ACME_READER, "tenants/acme", IdentityKind::Email, "bob@example.com").await;
    assert_eq!(denied.expect_err("reader may not write").code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_rejected_with_the_field_and_changes_nothing() {
    let server = TestServer::start().await;
    let missing_identity = ResolveCustomerRequest { parent: "tenants/globex".to_owned(), ..Default::default() };
    let status = server
        .client
        .clone()
        .resolve_customer(authorized(GLOBEX_ADMIN, missing_identity))
        .await
        .expect_err("no identity");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), vec!["identity"]);

    let cases = [
        ("tenants/globex", IdentityKind::Phone, "12-34", "identity.value"),
        ("tenants/globex", IdentityKind::Email, "not-an-address", "identity.value"),
        ("tenants/globex", IdentityKind::Unspecified, "x", "identity.kind"),
        ("globex", IdentityKind::Email, "a@b.c", "parent"),
    ];
    for (parent, kind, value, field) in cases {
        let status = server.resolve(GLOBEX_ADMIN, parent, kind, value).await.expect_err(value);
        assert_eq!(status.code(), Code::InvalidArgument, "{value}");
        assert_eq!(violated_fields(&status), vec![field], "{value}");
    }
    let long_name = ResolveCustomerRequest {
        parent: "tenants/globex".to_owned(),
        identity: Some(CustomerIdentity { kind: IdentityKind::Email.into(), value: "a@b.c".to_owned() }),
        display_name: "x".repeat(201),
    };
    let status =
        server.client.clone().resolve_customer(authorized(GLOBEX_ADMIN, long_name)).await.expect_err("long name");
    assert_eq!(violated_fields(&status), vec!["display_name"]);
    let bad_token =
        ListCustomersRequest { parent: "tenants/globex".to_owned(), page_size: 1, page_token: "zz".to_owned() };
    let status = server.client.clone().list_customers(authorized(GLOBEX_ADMIN, bad_token)).await.expect_err("token");
    assert_eq!(violated_fields(&status), vec!["page_token"]);

    let listed = server
        .client
        .clone()
        .list_customers(authorized(
            GLOBEX_ADMIN,
            ListCustomersRequest { parent: "tenants/globex".to_owned(), ..Default::default() },
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.customers.is_empty(), "bad requests created {:?}", listed.customers);
    server.stop().await;
}

#[tokio::test]
async fn tenants_and_credentials_are_enforced() {
    let server = TestServer::start().await;
    let (acme_customer, _) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Phone, "+1 555 0100").await.expect("resolve");

    let across = server
        .client
        .clone()
        .get_customer(authorized(
            GLOBEX_ADMIN,
            GetCustomerRequest { name: acme_customer.name.clone(), ..Default::default() },
        ))
        .await
        .expect_err("globex reads acme");
    assert_eq!(across.code(), Code::PermissionDenied);
    let across_timeline = server.timeline(GLOBEX_ADMIN, &acme_customer.name, 0, "").await.expect_err("timeline");
    assert_eq!(across_timeline.code(), Code::PermissionDenied);
    let across_write = server.resolve(GLOBEX_ADMIN, "tenants/acme", IdentityKind::Phone, "+1 555 0100").await;
    assert_eq!(across_write.expect_err("globex writes acme").code(), Code::PermissionDenied);

    let anonymous = server
        .client
        .clone()
        .get_customer(Request::new(GetCustomerRequest { name: acme_customer.name.clone(), ..Default::default() }))
        .await
        .expect_err("no key");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let wrong_key = server.resolve("not-a-key", "tenants/acme", IdentityKind::Email, "a@b.c").await;
    assert_eq!(wrong_key.expect_err("unknown key").code(), Code::Unauthenticated);

    let unknown_tenant = server.resolve(OPERATOR, "tenants/initech", IdentityKind::Email, "a@b.c").await;
    assert_eq!(unknown_tenant.expect_err("unknown tenant").code(), Code::NotFound);
    let unknown_customer = server
        .client
        .clone()
        .get_customer(authorized(
            ACME_ADMIN,
            GetCustomerRequest { name: "tenants/acme/customers/cu_0123".to_owned(), ..Default::default() },
        ))
        .await
        .expect_err("unknown customer");
    assert_eq!(unknown_customer.code(), Code::NotFound);
    let unknown_timeline = server.timeline(ACME_ADMIN, "tenants/acme/customers/cu_0123", 0, "").await;
    assert_eq!(unknown_timeline.expect_err("unknown customer timeline").code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn the_service_key_resolves_senders_and_learns_nothing_about_them() {
    let server = TestServer::start().await;
    let (customer, created) =
        server.resolve(SERVICE_KEY, "tenants/acme", IdentityKind::Email, "dana@example.com").await.expect("resolve");
    assert!(created);
    let (again, created) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Email, "Dana@Example.com").await.expect("resolve");
    assert_eq!((again.name.as_str(), created), (customer.name.as_str(), false), "the same customer");
    let unknown_tenant = server.resolve(SERVICE_KEY, "tenants/initech", IdentityKind::Email, "a@b.c").await;
    assert_eq!(unknown_tenant.expect_err("unknown tenant").code(), Code::NotFound);
    let read = server
        .client
        .clone()
        .get_customer(authorized(
            SERVICE_KEY,
            GetCustomerRequest { name: customer.name.clone(), contact: String::new() },
        ))
        .await
        .expect("the service reads where a customer is")
        .into_inner();
    assert_eq!((read.name.as_str(), read.identities.len()), (customer.name.as_str(), 0), "and nothing about them");
    let listed = server
        .client
        .clone()
        .list_customers(authorized(
            SERVICE_KEY,
            ListCustomersRequest { parent: "tenants/acme".to_owned(), ..Default::default() },
        ))
        .await
        .expect_err("the service lists no customers");
    assert_eq!(listed.code(), Code::PermissionDenied);
    let timeline = server.timeline(SERVICE_KEY, &customer.name, 0, "").await.expect_err("nor a timeline");
    assert_eq!(timeline.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn a_tenant_admin_merges_two_customers_of_its_tenant() {
    let server = TestServer::start().await;
    let (by_mail, _) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Email, "gus@example.com").await.expect("resolve");
    let (by_phone, _) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Phone, "+1 555 010 0042").await.expect("resolve");
    let (globex, _) =
        server.resolve(GLOBEX_ADMIN, "tenants/globex", IdentityKind::Email, "gus@example.com").await.expect("resolve");
    let merge = |key: &str, customer: &str, merged: &str| {
        let request = MergeCustomersRequest { customer: customer.to_owned(), merged_customer: merged.to_owned() };
        let mut client = server.client.clone();
        let request = authorized(key, request);
        async move { client.merge_customers(request).await.map(tonic::Response::into_inner) }
    };
    for (customer, merged, field) in [
        (by_mail.name.as_str(), by_mail.name.as_str(), "merged_customer"),
        (by_mail.name.as_str(), globex.name.as_str(), "merged_customer"),
        ("tenants/acme", by_phone.name.as_str(), "customer"),
        (by_mail.name.as_str(), "", "merged_customer"),
    ] {
        let refused = merge(ACME_ADMIN, customer, merged).await.expect_err("a bad request");
        assert_eq!((refused.code(), violated_fields(&refused)), (Code::InvalidArgument, vec![field.to_owned()]));
    }
    let reader = merge(ACME_READER, &by_mail.name, &by_phone.name).await.expect_err("readers do not merge");
    assert_eq!(reader.code(), Code::PermissionDenied);
    let across = merge(GLOBEX_ADMIN, &by_mail.name, &by_phone.name).await.expect_err("another tenant");
    assert_eq!(across.code(), Code::PermissionDenied);
    let service = merge(SERVICE_KEY, &by_mail.name, &by_phone.name).await.expect_err("the service merges nothing");
    assert_eq!(service.code(), Code::PermissionDenied);
    let phone_still_apart = server
        .client
        .clone()
        .get_customer(authorized(
            ACME_ADMIN,
            GetCustomerRequest { name: by_phone.name.clone(), contact: String::new() },
        ))
        .await
        .expect("read")
        .into_inner();
    assert!(phone_still_apart.merged_into.is_empty(), "refusals changed nothing");

    let merged = merge(ACME_ADMIN, &by_mail.name, &by_phone.name).await.expect("merged");
    assert_eq!(merged.name, by_mail.name);
    assert_eq!(merged.identities.len(), 2, "{merged:?}");
    let (by_phone_now, created) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Phone, "+15550100042").await.expect("resolve");
    assert_eq!((by_phone_now.name, created), (by_mail.name.clone(), false), "the phone is gus's now");
    let gone = server
        .client
        .clone()
        .get_customer(authorized(
            ACME_ADMIN,
            GetCustomerRequest { name: by_phone.name.clone(), contact: String::new() },
        ))
        .await
        .expect("a merged customer is still read")
        .into_inner();
    assert_eq!((gone.merged_into.as_str(), gone.identities.len()), (by_mail.name.as_str(), 0));
    let again = merge(ACME_ADMIN, &by_mail.name, &by_phone.name).await.expect("merging again");
    assert_eq!(again, merged, "changes nothing");
    let backwards = merge(ACME_ADMIN, &by_phone.name, &by_mail.name).await.expect_err("into a merged customer");
    assert_eq!(backwards.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&backwards).as_deref(), Some("CUSTOMER_MERGED"));

    // The service key learns where a customer went, and nothing about them.
    let seen = server
        .client
        .clone()
        .get_customer(authorized(
            SERVICE_KEY,
            GetCustomerRequest { name: by_mail.name.clone(), contact: String::new() },
        ))
        .await
        .expect("the service reads a customer's name")
        .into_inner();
    assert!(seen.identities.is_empty() && seen.display_name.is_empty(), "{seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_agent_names_the_contact_it_holds_of_that_customer() {
    let server = TestServer::start().await;
    let (customer, _) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Email, "erin@example.com").await.expect("resolve");
    let get = |contact: &str| {
        let request = GetCustomerRequest { name: customer.name.clone(), contact: contact.to_owned() };
        let mut client = server.client.clone();
        async move { client.get_customer(authorized(ALICE, request)).await }
    };
    let unnamed = get("").await.expect_err("an agent names its contact");
    assert_eq!(unnamed.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unnamed), ["contact"]);
    let malformed = get("contacts/ct_1").await.expect_err("not a contact name");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&malformed), ["contact"]);
    // Another tenant's contact never opens this tenant's customer (routing
    // is not even asked: this test runs none).
    let elsewhere = get(&format!("tenants/globex/contacts/{}", ContactId::generate())).await.expect_err("globex");
    assert_eq!(elsewhere.code(), Code::NotFound, "{elsewhere:?}");
    server.stop().await;
}

/// Publishes one contact's whole life, the outcome first and the rest
/// after it, with the completion delivered twice.
async fn publish_completed_contact(server: &TestServer, tenant: &TenantId, customer: &str, contact: &ContactId) {
    let contact_name = contact_name(tenant, contact);
    let queue = "tenants/acme/queues/support".to_owned();
    let completed = routing_event::Kind::Completed(ContactCompleted {
        contact: contact_name.clone(),
        queue: queue.clone(),
        channel: ContactChannel::Email.into(),
        customer: customer.to_owned(),
        agent: "agents/bob".to_owned(),
        disposition: "order-status".to_owned(),
        resolved: true,
        answer_time: Some(timestamp_from_millis(1_700_000_030_000)),
        end_time: Some(timestamp_from_millis(1_700_000_090_000)),
        wrap_up_time: None,
    });
    let created = ContactEvent {
        kind: Some(contact_event::Kind::Created(ContactCreated {
            contact: Some(Contact {
                name: contact_name.clone(),
                channel: ContactChannel::Email.into(),
                queue: queue.clone(),
                customer: customer.to_owned(),
                subject: "where is my order".to_owned(),
                create_time: Some(timestamp_from_millis(1_700_000_000_000)),
                ..Contact::default()
            }),
        })),
    };
    let routing_events = [
        completed.clone(),
        routing_event::Kind::Queued(ContactQueued {
            contact: contact_name.clone(),
            queue: queue.clone(),
            customer: customer.to_owned(),
            enqueue_time: Some(timestamp_from_millis(1_700_000_001_000)),
            ..ContactQueued::default()
        }),
        routing_event::Kind::Offered(ContactOffered {
            contact: contact_name.clone(),
            customer: customer.to_owned(),
            agent: "agents/alice".to_owned(),
            ..ContactOffered::default()
        }),
        routing_event::Kind::OfferWithdrawn(OfferWithdrawn {
            contact: contact_name.clone(),
            ..OfferWithdrawn::default()
        }),
        routing_event::Kind::Answered(ContactAnswered {
            contact: contact_name.clone(),
            customer: customer.to_owned(),
            agent: "agents/bob".to_owned(),
            answer_time: Some(timestamp_from_millis(1_700_000_030_000)),
            ..ContactAnswered::default()
        }),
        completed,
    ];
    for kind in routing_events {
        server.publish(ROUTING_TOPIC, tenant, contact, Payload::Routing(RoutingEvent { kind: Some(kind) })).await;
    }
    server.publish(CONTACTS_TOPIC, tenant, contact, Payload::Contact(created)).await;
}

/// Polls the timeline until `done` holds for its entries, or fails.
async fn wait_for_timeline(
    server: &TestServer,
    customer: &str,
    done: impl Fn(&[TimelineEntry]) -> bool,
) -> Vec<TimelineEntry> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let (entries, _) = server.timeline(ACME_READER, customer, 0, "").await.expect("timeline");
        if done(&entries) {
            return entries;
        }
        assert!(Instant::now() < deadline, "timeline never reached the expected state: {entries:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_build_the_customer_timeline() {
    let server = TestServer::start().await;
    let tenant = TenantId::parse("acme", "tenant").expect("tenant");
    let (customer, _) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Email, "history@example.com").await.expect("resolve");
    let completed_contact = ContactId::generate();
    publish_completed_contact(&server, &tenant, &customer.name, &completed_contact).await;

    let entries = wait_for_timeline(&server, &customer.name, |entries| {
        // The contacts topic may be read after the routing topic: wait for
        // the contact's own create time as well as the outcome.
        entries.iter().any(|entry| {
            entry.status == i32::from(ContactStatus::Completed)
                && entry.create_time == Some(timestamp_from_millis(1_700_000_000_000))
        })
    })
    .await;
    let entry = &entries[0];
    assert_eq!(entry.name, format!("{}/timeline/{completed_contact}", customer.name));
    assert_eq!(entry.contact, contact_name(&tenant, &completed_contact));
    assert_eq!(entry.channel, i32::from(ContactChannel::Email));
    assert_eq!(entry.queue, "tenants/acme/queues/support");
    assert_eq!((entry.agent.as_str(), entry.disposition.as_str()), ("agents/bob", "order-status"));
    assert_eq!(entry.subject, "where is my order");
    assert!(entry.resolved);
    assert_eq!(entry.create_time, Some(timestamp_from_millis(1_700_000_000_000)));
    assert_eq!(entry.answer_time, Some(timestamp_from_millis(1_700_000_030_000)));
    assert_eq!(entry.end_time, Some(timestamp_from_millis(1_700_000_090_000)));

    // A later contact that the customer abandoned lists first.
    let abandoned_contact = ContactId::generate();
    let abandoned = routing_event::Kind::Abandoned(ContactAbandoned {
        contact: contact_name(&tenant, &abandoned_contact),
        customer: customer.name.clone(),
        enqueue_time: Some(timestamp_from_millis(1_700_000_500_000)),
        abandon_time: Some(timestamp_from_millis(1_700_000_510_000)),
        ..ContactAbandoned::default()
    });
    server
        .publish(ROUTING_TOPIC, &tenant, &abandoned_contact, Payload::Routing(RoutingEvent { kind: Some(abandoned) }))
        .await;
    wait_for_timeline(&server, &customer.name, |entries| entries.len() == 2).await;

    let (first_page, token) = server.timeline(ACME_READER, &customer.name, 1, "").await.expect("first page");
    assert_eq!(first_page[0].status, i32::from(ContactStatus::Abandoned));
    assert!(!token.is_empty(), "a second page exists");
    let (second_page, token) = server.timeline(ACME_READER, &customer.name, 1, &token).await.expect("second page");
    assert_eq!(second_page[0].contact, contact_name(&tenant, &completed_contact));
    assert!(token.is_empty(), "two entries fill two pages");
    server.stop().await;
}

/// A contact ingestion took while CRM was down carries no customer: CRM
/// resolves its sender from the event, routing's events that came first
/// (naming no customer) are not lost, and CRM publishes the customer it
/// resolved (`CustomerResolved`).
#[tokio::test]
async fn a_contact_taken_while_crm_was_down_joins_its_senders_timeline() {
    let server = TestServer::start().await;
    let mut contacts =
        server.bus.subscribe("crm-test-watch", &[CONTACTS_TOPIC], StartFrom::Earliest).await.expect("subscribe");
    let tenant = TenantId::parse("acme", "tenant").expect("tenant");
    let contact = ContactId::generate();
    let name = contact_name(&tenant, &contact);
    let answered = routing_event::Kind::Answered(ContactAnswered {
        contact: name.clone(),
        agent: "agents/bob".to_owned(),
        answer_time: Some(timestamp_from_millis(1_700_000_030_000)),
        ..ContactAnswered::default()
    });
    server.publish(ROUTING_TOPIC, &tenant, &contact, Payload::Routing(RoutingEvent { kind: Some(answered) })).await;
    let created = ContactEvent {
        kind: Some(contact_event::Kind::Created(ContactCreated {
            contact: Some(Contact {
                name: name.clone(),
                channel: ContactChannel::Chat.into(),
                from: Some(CustomerIdentity { kind: IdentityKind::Email.into(), value: "late@example.com".to_owned() }),
                subject: "taken while crm restarted".to_owned(),
                create_time: Some(timestamp_from_millis(1_700_000_000_000)),
                ..Contact::default()
            }),
        })),
    };
    server.publish(CONTACTS_TOPIC, &tenant, &contact, Payload::Contact(created)).await;
    // The sender's one customer, whoever resolves the identity first.
    let (customer, _) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Email, "late@example.com").await.expect("resolve");
    let entries = wait_for_timeline(&server, &customer.name, |entries| {
        entries.iter().any(|entry| entry.status == i32::from(ContactStatus::Answered))
    })
    .await;
    assert_eq!(entries[0].contact, name);
    assert_eq!(entries[0].agent, "agents/bob", "the answer that came first is kept");
    assert_eq!(entries[0].subject, "taken while crm restarted");
    // Routing, KPI and ingestion learn the customer from CRM.
    let resolved = next_customer_resolved(&mut contacts).await;
    assert_eq!((resolved.contact.as_str(), resolved.customer.as_str()), (name.as_str(), customer.name.as_str()));
    server.stop().await;
}

/// The next `CustomerResolved` on the contacts topic.
async fn next_customer_resolved(contacts: &mut Box<dyn Subscription>) -> CustomerResolved {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        let delivery = tokio::time::timeout_at(deadline, contacts.next())
            .await
            .expect("a CustomerResolved in time")
            .expect("next");
        if let Some(Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::CustomerResolved(resolved)) })) =
            delivery.envelope.payload
        {
            return resolved;
        }
    }
}

/// A queued callback, answered, transferred (redelivered) and answered
/// again: the entry keeps the callback number and the transfer, and the
/// status and first answer do not move. The API has no fields for them
/// yet, so the entry is read from the service's store.
#[tokio::test]
async fn transfers_and_callbacks_reach_the_timeline_entry() {
    let server = TestServer::start().await;
    let tenant = TenantId::parse("acme", "tenant").expect("tenant");
    let (customer, _) =
        server.resolve(ACME_ADMIN, "tenants/acme", IdentityKind::Phone, "+15550100").await.expect("resolve");
    let contact = ContactId::generate();
    let name = contact_name(&tenant, &contact);
    let answered = |agent: &str, queue: &str, answer_millis: i64| {
        routing_event::Kind::Answered(ContactAnswered {
            contact: name.clone(),
            queue: format!("tenants/acme/queues/{queue}"),
            customer: customer.name.clone(),
            agent: agent.to_owned(),
            answer_time: Some(timestamp_from_millis(answer_millis)),
            ..ContactAnswered::default()
        })
    };
    let transferred = routing_event::Kind::Transferred(ContactTransferred {
        contact: name.clone(),
        from_queue: "tenants/acme/queues/support".to_owned(),
        to_queue: "tenants/acme/queues/billing".to_owned(),
        from_agent: "agents/alice".to_owned(),
        reason: TransferReason::Requested.into(),
    });
    let events = [
        routing_event::Kind::Queued(ContactQueued {
            contact: name.clone(),
            queue: "tenants/acme/queues/support".to_owned(),
            customer: customer.name.clone(),
            enqueue_time: Some(timestamp_from_millis(1_700_000_000_000)),
            ..ContactQueued::default()
        }),
        routing_event::Kind::Offered(ContactOffered {
            contact: name.clone(),
            customer: customer.name.clone(),
            agent: "agents/alice".to_owned(),
            callback_number: "+15550100".to_owned(),
            ..ContactOffered::default()
        }),
        answered("agents/alice", "support", 1_700_000_030_000),
        transferred.clone(),
        transferred,
        answered("agents/bob", "billing", 1_700_000_090_000),
    ];
    for kind in events {
        server.publish(ROUTING_TOPIC, &tenant, &contact, Payload::Routing(RoutingEvent { kind: Some(kind) })).await;
    }

    let customer_id = CustomerId::parse(customer.name.rsplit('/').next().expect("id"), "customer").expect("customer");
    let deadline = Instant::now() + WAIT_LIMIT;
    let entry = loop {
        let entries = server.store.list_timeline_entries(&tenant, &customer_id, None, 10).await.expect("timeline");
        match entries.first() {
            Some(entry) if !entry.transferred_to.is_empty() && entry.answer_time_millis > 0 => break entry.clone(),
            _ => assert!(Instant::now() < deadline, "the transfer never reached the timeline: {entries:#?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry.transferred_to, "tenants/acme/queues/billing");
    assert!(entry.transfer_time_millis > 0, "the transfer carries routing's instant");
    assert_eq!(entry.callback_number, "+15550100");
    assert_eq!(entry.queue, "tenants/acme/queues/support", "the queue it entered");
    assert_eq!((entry.agent.as_str(), entry.answer_time_millis), ("agents/alice", 1_700_000_030_000));
    let (listed, _) = server.timeline(ACME_READER, &customer.name, 0, "").await.expect("timeline");
    assert_eq!(listed[0].status, i32::from(ContactStatus::Answered));
    assert_eq!(
        (listed[0].transferred_to.as_str(), listed[0].callback_number.as_str()),
        ("tenants/acme/queues/billing", "+15550100"),
        "the API shows the transfer and the callback"
    );
    assert!(listed[0].transfer_time.is_some());
    server.stop().await;
}
