//! `AccessService` on a real server over the in-memory credential store:
//! who may do what, bad input named by field and changing nothing, and a
//! secret shown once and stored only as a digest.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use switchboard_platform::Config;
use switchboard_platform::auth::{AccessControl, hash_api_key};
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::config::{ApiKeyConfig, AuthConfig};
use switchboard_platform::credentials::{
    ApiKeyId, CredentialStore, MemoryCredentialStore, has_valid_checksum, parse_api_key_name,
};
use switchboard_platform::service::Service;
use switchboard_presence::Presence;
use switchboard_proto::access::v1::access_service_client::AccessServiceClient;
use switchboard_proto::access::v1::{
    ApiKey, CreateApiKeyRequest, CreateTenantRequest, GetApiKeyRequest, GetTenantRequest, ListApiKeysRequest,
    ListTenantsRequest, RevokeApiKeyRequest, RotateApiKeyRequest, SuspendTenantRequest, Tenant, TenantLimits,
    TenantState, UpdateTenantRequest,
};
use switchboard_test_support::{
    RunningService, authorized, connect_when_ready, error_reason, kit, start_service, violated_fields,
};
use tonic::Code;
use tonic::transport::Channel;

const OPERATOR: &str = "operator-key";
const ACME_ADMIN: &str = "acme-admin-key";
const ACME_READER: &str = "acme-reader-key";

struct Server {
    client: AccessServiceClient<Channel>,
    store: Arc<MemoryCredentialStore>,
    service: RunningService,
}

async fn start() -> Server {
    let auth = AuthConfig {
        tenants: vec!["acme".to_owned()],
        api_keys: vec![
            ApiKeyConfig::for_key("operator", OPERATOR, "operator_admin", None, None),
            ApiKeyConfig::for_key("acme-admin", ACME_ADMIN, "tenant_admin", Some("acme"), None),
            ApiKeyConfig::for_key("acme-reader", ACME_READER, "tenant_reader", Some("acme"), None),
        ],
        service_key: None,
        rate_limit: Default::default(),
        tenant_policies: Default::default(),
        oidc: None,
    };
    let store = Arc::new(MemoryCredentialStore::new());
    let access = AccessControl::with_credentials(&auth, store.clone()).expect("access");
    let mut kit = kit::<Presence>(Config::default(), Arc::new(MemoryBus::new()), access);
    let presence = Presence::in_memory(&mut kit);
    let service = start_service(kit, presence).await;
    let client = AccessServiceClient::new(connect_when_ready(service.address).await.expect("connect"));
    Server { client, store, service }
}

async fn create_tenant(server: &mut Server, key: &str, tenant_id: &str) -> Result<Tenant, tonic::Status> {
    let request = CreateTenantRequest {
        tenant_id: tenant_id.to_owned(),
        tenant: Some(Tenant { display_name: "Initech".to_owned(), ..Tenant::default() }),
    };
    Ok(server.client.create_tenant(authorized(key, request)).await?.into_inner())
}

fn key(role: &str, tenant: &str, agent: &str) -> ApiKey {
    ApiKey {
        display_name: "integration".to_owned(),
        role: role.to_owned(),
        tenant: tenant.to_owned(),
        agent: agent.to_owned(),
        ..ApiKey::default()
    }
}

#[tokio::test]
async fn tenants_are_the_operators_and_bad_ids_are_named() {
    let mut server = start().await;
    let created = create_tenant(&mut server, OPERATOR, "initech").await.expect("created");
    assert_eq!((created.name.as_str(), created.state), ("tenants/initech", TenantState::Active as i32));
    assert_eq!(create_tenant(&mut server, OPERATOR, "initech").await.expect_err("twice").code(), Code::AlreadyExists);
    assert_eq!(create_tenant(&mut server, OPERATOR, "acme").await.expect_err("configured").code(), Code::AlreadyExists);
    assert_eq!(
        create_tenant(&mut server, ACME_ADMIN, "umbrella").await.expect_err("admin").code(),
        Code::PermissionDenied
    );
    for bad in ["", "Initech", "../x", "a\u{0}b"] {
        let refused = create_tenant(&mut server, OPERATOR, bad).await.expect_err(bad);
        assert_eq!((refused.code(), violated_fields(&refused)), (Code::InvalidArgument, vec!["tenant_id".to_owned()]));
    }
    let listed = server.client.list_tenants(authorized(OPERATOR, ListTenantsRequest::default())).await.unwrap();
    assert_eq!(listed.into_inner().tenants.len(), 1, "only the one made, nothing of the refusals");
    let across =
        server.client.get_tenant(authorized(ACME_ADMIN, GetTenantRequest { name: "tenants/initech".to_owned() })).await;
    assert_eq!(across.expect_err("another tenant").code(), Code::PermissionDenied);
    let own =
        server.client.get_tenant(authorized(ACME_READER, GetTenantRequest { name: "tenants/acme".to_owned() })).await;
    assert_eq!(own.expect("a configured tenant reads itself").into_inner().state, TenantState::Active as i32);

    let no_mask = UpdateTenantRequest {
        tenant: Some(Tenant { name: "tenants/initech".to_owned(), ..Tenant::default() }),
        update_mask: None,
    };
    let refused = server.client.update_tenant(authorized(OPERATOR, no_mask)).await.expect_err("no mask");
    assert_eq!(violated_fields(&refused), ["update_mask"]);
    let configured = server
        .client
        .suspend_tenant(authorized(OPERATOR, SuspendTenantRequest { name: "tenants/acme".to_owned() }))
        .await;
    assert_eq!(error_reason(&configured.expect_err("configured")).as_deref(), Some("CONFIGURED_TENANT"));
    let suspended = server
        .client
        .suspend_tenant(authorized(OPERATOR, SuspendTenantRequest { name: "tenants/initech".to_owned() }))
        .await
        .expect("suspended")
        .into_inner();
    assert_eq!(suspended.state, TenantState::Suspended as i32);
    server.service.stop().await;
}

#[tokio::test]
async fn a_key_is_shown_once_stored_as_a_digest_and_managed_by_its_tenant_only() {
    let mut server = start().await;
    create_tenant(&mut server, OPERATOR, "initech").await.expect("initech");
    let request = CreateApiKeyRequest { api_key: Some(key("tenant_reader", "tenants/acme", "")) };
    let created =
        server.client.create_api_key(authorized(ACME_ADMIN, request)).await.expect("acme's admin").into_inner();
    assert!(has_valid_checksum(&created.secret), "{}", created.secret);
    let api_key = created.api_key.expect("the key");
    let id: ApiKeyId = parse_api_key_name(&api_key.name, "name").expect("a key name");
    let stored = server.store.get_key(&id).await.unwrap().expect("stored");
    assert_eq!(stored.secret_sha256, hash_api_key(&created.secret), "only the digest is kept");
    let read = server.client.get_api_key(authorized(ACME_ADMIN, GetApiKeyRequest { name: api_key.name.clone() })).await;
    assert_eq!(read.expect("its admin reads it").into_inner(), api_key, "no secret in a read");

    // Tenant admins make only their own tenant's reader and admin keys.
    for (wanted, code) in [
        (key("tenant_admin", "tenants/initech", ""), Code::PermissionDenied),
        (key("operator_admin", "", ""), Code::PermissionDenied),
        (key("agent", "", "agents/ann"), Code::PermissionDenied),
    ] {
        let request = CreateApiKeyRequest { api_key: Some(wanted.clone()) };
        let refused =
            server.client.create_api_key(authorized(ACME_ADMIN, request)).await.expect_err("not acme's to make");
        assert_eq!(refused.code(), code, "{wanted:?}");
    }
    for (wanted, field) in [
        (key("root", "", ""), "api_key.role"),
        (key("tenant_admin", "", ""), "api_key.tenant"),
        (key("tenant_admin", "tenants/acme", "agents/ann"), "api_key.agent"),
        (key("agent", "", ""), "api_key.agent"),
        (key("operator_admin", "tenants/acme", ""), "api_key.tenant"),
        (ApiKey { display_name: String::new(), ..key("tenant_reader", "tenants/acme", "") }, "api_key.display_name"),
        (
            ApiKey {
                expire_time: Some(prost_types::Timestamp { seconds: 1, nanos: 0 }),
                ..key("tenant_reader", "tenants/acme", "")
            },
            "api_key.expire_time",
        ),
    ] {
        let request = CreateApiKeyRequest { api_key: Some(wanted.clone()) };
        let refused = server.client.create_api_key(authorized(OPERATOR, request)).await.expect_err("bad input");
        assert_eq!(
            (refused.code(), violated_fields(&refused)),
            (Code::InvalidArgument, vec![field.to_owned()]),
            "{wanted:?}"
        );
    }
    let unknown_agent = CreateApiKeyRequest { api_key: Some(key("agent", "", "agents/nobody")) };
    let refused = server.client.create_api_key(authorized(OPERATOR, unknown_agent)).await.expect_err("no such agent");
    assert_eq!(refused.code(), Code::NotFound);

    // Another tenant's admin and a reader see nothing of it.
    let initech_admin = CreateApiKeyRequest { api_key: Some(key("tenant_admin", "tenants/initech", "")) };
    let initech = server.client.create_api_key(authorized(OPERATOR, initech_admin)).await.unwrap().into_inner();
    let initech_name = initech.api_key.unwrap().name;
    let hidden =
        server.client.get_api_key(authorized(ACME_ADMIN, GetApiKeyRequest { name: initech_name.clone() })).await;
    assert_eq!(hidden.expect_err("initech's").code(), Code::NotFound);
    let revoke =
        server.client.revoke_api_key(authorized(ACME_ADMIN, RevokeApiKeyRequest { name: initech_name.clone() })).await;
    assert_eq!(revoke.expect_err("initech's").code(), Code::NotFound);
    let listed =
        server.client.list_api_keys(authorized(ACME_ADMIN, ListApiKeysRequest::default())).await.unwrap().into_inner();
    assert_eq!(listed.api_keys.iter().map(|key| key.name.as_str()).collect::<Vec<_>>(), [api_key.name.as_str()]);
    let reader = server.client.list_api_keys(authorized(ACME_READER, ListApiKeysRequest::default())).await;
    assert_eq!(reader.expect_err("readers list no keys").code(), Code::PermissionDenied);

    // Rotated: a new secret; revoked: nothing more can be done to it.
    let rotate = RotateApiKeyRequest {
        name: api_key.name.clone(),
        previous_secret_valid_for: Some(prost_types::Duration { seconds: 8 * 24 * 3600, nanos: 0 }),
    };
    let too_long = server.client.rotate_api_key(authorized(ACME_ADMIN, rotate.clone())).await.expect_err("8 days");
    assert_eq!(violated_fields(&too_long), ["previous_secret_valid_for"]);
    let rotate = RotateApiKeyRequest { previous_secret_valid_for: None, ..rotate };
    let rotated =
        server.client.rotate_api_key(authorized(ACME_ADMIN, rotate.clone())).await.expect("rotated").into_inner();
    assert_ne!(rotated.secret, created.secret);
    assert!(rotated.api_key.expect("key").previous_secret_expire_time.is_some(), "the old secret still works a while");
    server
        .client
        .revoke_api_key(authorized(ACME_ADMIN, RevokeApiKeyRequest { name: api_key.name.clone() }))
        .await
        .expect("revoked");
    let after = server.client.rotate_api_key(authorized(ACME_ADMIN, rotate)).await.expect_err("revoked");
    assert_eq!(error_reason(&after).as_deref(), Some("KEY_REVOKED"));
    server.service.stop().await;
}

#[tokio::test]
async fn a_tenants_weight_and_limits_are_set_by_the_operator_checked_and_changed_by_mask() {
    let mut server = start().await;
    let limits = TenantLimits {
        max_queues: Some(5),
        max_agents: Some(20),
        max_offer_timeout: Some(prost_types::Duration { seconds: 20, nanos: 0 }),
        ..TenantLimits::default()
    };
    let request = CreateTenantRequest {
        tenant_id: "initech".to_owned(),
        tenant: Some(Tenant { routing_weight: 3, limits: Some(limits), ..Tenant::default() }),
    };
    let created = server.client.create_tenant(authorized(OPERATOR, request)).await.expect("created").into_inner();
    assert_eq!((created.routing_weight, created.limits.as_ref()), (3, Some(&limits)));
    let defaults = create_tenant(&mut server, OPERATOR, "umbrella").await.expect("created");
    assert_eq!((defaults.routing_weight, defaults.limits), (1, Some(TenantLimits::default())), "weight 1, no limits");

    let named = |tenant: Tenant| Tenant { name: "tenants/initech".to_owned(), ..tenant };
    let change = |tenant: Tenant, paths: &[&str]| UpdateTenantRequest {
        tenant: Some(named(tenant)),
        update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|path| (*path).to_owned()).collect() }),
    };
    let one_limit = Tenant {
        limits: Some(TenantLimits { max_waiting_contacts: Some(100), max_queues: Some(1), ..TenantLimits::default() }),
        ..Tenant::default()
    };
    let updated = server
        .client
        .update_tenant(authorized(OPERATOR, change(one_limit, &["limits.max_waiting_contacts"])))
        .await
        .expect("one limit")
        .into_inner();
    let expected = TenantLimits { max_waiting_contacts: Some(100), ..limits };
    assert_eq!(updated.limits.as_ref(), Some(&expected), "only the masked limit changed");
    assert_eq!(updated.routing_weight, 3);

    let bad_duration = prost_types::Duration { seconds: 1, nanos: -5 };
    let refusals: Vec<(&str, UpdateTenantRequest, &str)> = vec![
        (
            "weight 0",
            change(Tenant { routing_weight: 0, ..Tenant::default() }, &["routing_weight"]),
            "tenant.routing_weight",
        ),
        (
            "weight 1001",
            change(Tenant { routing_weight: 1001, ..Tenant::default() }, &["routing_weight"]),
            "tenant.routing_weight",
        ),
        (
            "a negative limit",
            change(
                Tenant {
                    limits: Some(TenantLimits { max_queues: Some(-1), ..TenantLimits::default() }),
                    ..Tenant::default()
                },
                &["limits.max_queues"],
            ),
            "tenant.limits.max_queues",
        ),
        (
            "a malformed duration",
            change(
                Tenant {
                    limits: Some(TenantLimits { max_wrap_up: Some(bad_duration), ..TenantLimits::default() }),
                    ..Tenant::default()
                },
                &["limits"],
            ),
            "tenant.limits.max_wrap_up",
        ),
        (
            "a cap of zero",
            change(
                Tenant {
                    limits: Some(TenantLimits {
                        max_offer_timeout: Some(prost_types::Duration::default()),
                        ..TenantLimits::default()
                    }),
                    ..Tenant::default()
                },
                &["limits.max_offer_timeout"],
            ),
            "tenant.limits.max_offer_timeout",
        ),
        ("an unknown limit", change(Tenant::default(), &["limits.max_everything"]), "update_mask"),
        ("an output field", change(Tenant::default(), &["state"]), "update_mask"),
    ];
    for (case, request, field) in refusals {
        let refused = server.client.update_tenant(authorized(OPERATOR, request)).await.expect_err(case);
        assert_eq!(
            (refused.code(), violated_fields(&refused)),
            (Code::InvalidArgument, vec![field.to_owned()]),
            "{case}"
        );
    }
    let own_weight = change(Tenant { routing_weight: 1000, ..Tenant::default() }, &["routing_weight"]);
    let refused = server.client.update_tenant(authorized(ACME_ADMIN, own_weight)).await.expect_err("the operator's");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let configured = UpdateTenantRequest {
        tenant: Some(Tenant { name: "tenants/acme".to_owned(), routing_weight: 5, ..Tenant::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["routing_weight".to_owned()] }),
    };
    let refused = server.client.update_tenant(authorized(OPERATOR, configured)).await.expect_err("configured");
    assert_eq!(error_reason(&refused).as_deref(), Some("CONFIGURED_TENANT"));
    let read = server.client.get_tenant(authorized(OPERATOR, GetTenantRequest { name: "tenants/initech".to_owned() }));
    let read = read.await.expect("read").into_inner();
    assert_eq!((read.routing_weight, read.limits), (3, Some(expected)), "no refusal changed anything");
    let stored = server.store.get_tenant(&switchboard_core::TenantId::parse("initech", "t").unwrap()).await.unwrap();
    assert_eq!(stored.expect("stored").policy.limits.max_waiting_contacts, Some(100));
    server.service.stop().await;
}
