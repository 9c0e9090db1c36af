//! Sign-in with an OIDC provider's JWTs, against a provider the test runs
//! (`TestIdentityProvider`: a JWKS over HTTP, RS256 and ES256 keys): one
//! test per accepted shape and per refusal.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use switchboard_core::{ErrorCode, Role, TenantId};
use switchboard_platform::auth::AccessControl;
use switchboard_platform::config::AuthConfig;
use switchboard_platform::credentials::{CredentialStore, MemoryCredentialStore, TenantChange, TenantRecord};
use switchboard_test_support::identity_provider::{Signer, TestIdentityProvider};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;

async fn signed_in(provider: &TestIdentityProvider) -> Arc<AccessControl> {
    let config =
        AuthConfig { tenants: vec!["acme".to_owned()], oidc: Some(provider.config()), ..AuthConfig::default() };
    let access = AccessControl::from_config(&config).expect("access");
    access.oidc().expect("configured").refresh().await.expect("the JWKS");
    access
}

fn bearer(token: &str) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    metadata
}

fn reason_of(access: &AccessControl, token: &str) -> (ErrorCode, Option<&'static str>) {
    let refused = access.authenticate(&bearer(token)).expect_err("refused");
    (refused.code, refused.explicit_reason)
}

fn admin_claims(valid_for_secs: i64) -> serde_json::Value {
    TestIdentityProvider::claims(
        "ann@acme",
        valid_for_secs,
        json!({"switchboard_role": "tenant_admin", "switchboard_tenant": "acme"}),
    )
}

#[tokio::test]
async fn rs256_and_es256_tokens_map_their_claims_to_role_tenant_and_agent() {
    let provider = TestIdentityProvider::start().await;
    let access = signed_in(&provider).await;
    for signer in [Signer::Rs256, Signer::Es256] {
        let principal = access.authenticate(&bearer(&provider.token(signer, &admin_claims(300)))).expect("admin");
        assert_eq!(
            (principal.role, principal.tenant.as_ref().map(TenantId::as_str), principal.key_name.as_str()),
            (Role::TenantAdmin, Some("acme"), "oidc:ann@acme"),
            "{signer:?}"
        );
    }
    let agent =
        TestIdentityProvider::claims("alice", 300, json!({"switchboard_role": "agent", "switchboard_agent": "alice"}));
    let principal = access.authenticate(&bearer(&provider.token(Signer::Es256, &agent))).expect("agent");
    assert_eq!((principal.role, principal.agent.as_ref().map(|agent| agent.as_str())), (Role::Agent, Some("alice")));
    let operator = TestIdentityProvider::claims("ops", 300, json!({"switchboard_role": "operator_admin"}));
    let operator_token = provider.token(Signer::Rs256, &operator);
    assert_eq!(
        reason_of(&access, &operator_token).1,
        Some("ROLE_NOT_ALLOWED"),
        "operators sign in through the provider only if the operator allows it"
    );
    let mut config = provider.config();
    config.allowed_roles.push("operator_admin".to_owned());
    let allowing = AccessControl::from_config(&AuthConfig { oidc: Some(config), ..AuthConfig::default() }).unwrap();
    allowing.oidc().unwrap().refresh().await.unwrap();
    let principal = allowing.authenticate(&bearer(&operator_token)).expect("operator, allowed");
    assert_eq!((principal.role, principal.tenant), (Role::OperatorAdmin, None));
}

#[tokio::test]
async fn expired_early_foreign_and_unaddressed_tokens_are_refused_by_name() {
    let provider = TestIdentityProvider::start().await;
    let access = signed_in(&provider).await;
    let expired = provider.token(Signer::Es256, &admin_claims(-120));
    assert_eq!(reason_of(&access, &expired), (ErrorCode::Unauthenticated, Some("TOKEN_EXPIRED")));
    let within_leeway = provider.token(Signer::Es256, &admin_claims(-10));
    assert!(access.authenticate(&bearer(&within_leeway)).is_ok(), "60 s of clock skew are allowed");
    let mut early = admin_claims(3_600);
    early["nbf"] = json!(switchboard_core::time::now_millis() / 1000 + 600);
    assert_eq!(reason_of(&access, &provider.token(Signer::Es256, &early)).1, Some("TOKEN_NOT_YET_VALID"));
    let mut foreign = admin_claims(300);
    foreign["iss"] = json!("https://evil.example");
    assert_eq!(reason_of(&access, &provider.token(Signer::Es256, &foreign)).1, Some("WRONG_ISSUER"));
    let mut elsewhere = admin_claims(300);
    elsewhere["aud"] = json!("another-api");
    assert_eq!(reason_of(&access, &provider.token(Signer::Es256, &elsewhere)).1, Some("WRONG_AUDIENCE"));
    let mut forever = admin_claims(300);
    forever.as_object_mut().unwrap().remove("exp");
    assert_eq!(reason_of(&access, &provider.token(Signer::Es256, &forever)).1, Some("TOKEN_INVALID"));
    let mut nobody = admin_claims(300);
    nobody.as_object_mut().unwrap().remove("sub");
    assert_eq!(reason_of(&access, &provider.token(Signer::Es256, &nobody)).1, Some("TOKEN_INVALID"));
}

#[tokio::test]
async fn forged_tampered_and_algorithm_confused_tokens_are_refused() {
    let provider = TestIdentityProvider::start().await;
    let access = signed_in(&provider).await;
    let claims = admin_claims(300);
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let unsigned = format!("{}.{}.", encode(&json!({"alg": "none", "kid": "rsa-1"})), encode(&claims));
    assert_eq!(reason_of(&access, &unsigned).1, Some("TOKEN_INVALID"), "alg none");
    let hmac = provider.signed(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims, Signer::Rs256);
    assert_eq!(reason_of(&access, &hmac).1, Some("TOKEN_INVALID"), "an HMAC algorithm");
    let mislabelled = provider.signed(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims, Signer::Rs256);
    assert_eq!(reason_of(&access, &mislabelled).1, Some("TOKEN_INVALID"), "an RSA key under ES256");
    let genuine = provider.token(Signer::Rs256, &claims);
    let (head, rest) = genuine.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let promoted = json!({"iss": claims["iss"], "aud": claims["aud"], "sub": "ann@acme", "exp": claims["exp"],
        "switchboard_role": "operator_admin"});
    let tampered = format!("{head}.{}.{signature}", encode(&promoted));
    assert_eq!(reason_of(&access, &tampered).1, Some("TOKEN_INVALID"), "claims changed after signing");
    let unknown = provider.signed(&json!({"alg": "ES256", "kid": "es-99"}), &claims, Signer::Es256);
    assert_eq!(reason_of(&access, &unknown).1, Some("UNKNOWN_SIGNING_KEY"));
    for (claim, role_claims) in [
        ("no role", json!({"switchboard_tenant": "acme"})),
        ("the service role", json!({"switchboard_role": "service"})),
        ("an unknown role", json!({"switchboard_role": "root"})),
        ("a tenant role without tenant", json!({"switchboard_role": "tenant_admin"})),
        ("an agent without agent", json!({"switchboard_role": "agent"})),
        ("a malformed tenant", json!({"switchboard_role": "tenant_admin", "switchboard_tenant": "../acme"})),
    ] {
        let token = provider.token(Signer::Es256, &TestIdentityProvider::claims("ann", 300, role_claims));
        assert_eq!(reason_of(&access, &token).1, Some("NO_ROLE"), "{claim}");
    }
    let huge = format!("eyJ{}.e.e", "A".repeat(20_000));
    assert_eq!(reason_of(&access, &huge).1, Some("TOKEN_INVALID"), "longer than 16 KiB");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_when_a_token_first_names_it() {
    let provider = TestIdentityProvider::start().await;
    let access = signed_in(&provider).await;
    let shutdown = CancellationToken::new();
    let refreshing = tokio::spawn(Arc::clone(&access).keep_fresh(shutdown.clone()));
    // The refresher's own first fetch is done: the next one comes in 300 s
    // unless a token names a key it does not know.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while provider.fetches() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the refresher never fetched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old_token = provider.token(Signer::Es256, &admin_claims(300));
    provider.rotate_es256();
    let new_token = provider.token(Signer::Es256, &admin_claims(300));
    assert_eq!(reason_of(&access, &new_token).1, Some("UNKNOWN_SIGNING_KEY"), "not fetched yet");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while access.authenticate(&bearer(&new_token)).is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the new key was never fetched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(access.authenticate(&bearer(&old_token)).is_ok(), "the retired key is still published");
    shutdown.cancel();
    refreshing.await.unwrap();
}

#[tokio::test]
async fn a_suspended_tenants_people_are_refused_like_its_keys() {
    let provider = TestIdentityProvider::start().await;
    let store = Arc::new(MemoryCredentialStore::new());
    let initech = TenantId::parse("initech", "t").unwrap();
    let record = TenantRecord {
        id: initech.clone(),
        display_name: "Initech".to_owned(),
        suspended: false,
        policy: Default::default(),
        create_time_ms: 1,
        update_time_ms: 1,
        deletion: None,
    };
    store.create_tenant(&record).await.unwrap();
    let config = AuthConfig { oidc: Some(provider.config()), ..AuthConfig::default() };
    let access = AccessControl::with_credentials(&config, store.clone()).unwrap();
    access.refresh().await.unwrap();
    access.oidc().unwrap().refresh().await.unwrap();
    let claims = TestIdentityProvider::claims(
        "peter@initech",
        300,
        json!({"switchboard_role": "tenant_admin", "switchboard_tenant": "initech"}),
    );
    let token = provider.token(Signer::Rs256, &claims);
    assert!(access.authenticate(&bearer(&token)).is_ok());
    store.update_tenant(&initech, &TenantChange { suspended: Some(true), ..TenantChange::default() }, 2).await.unwrap();
    access.refresh().await.unwrap();
    assert_eq!(reason_of(&access, &token), (ErrorCode::FailedPrecondition, Some("TENANT_SUSPENDED")));
}

#[test]
fn a_jwks_fetched_in_the_clear_from_another_machine_is_refused_at_start() {
    let provider_config = |jwks_url: &str| switchboard_platform::config::OidcConfig {
        issuer: "https://idp.example".to_owned(),
        audience: "switchboard".to_owned(),
        jwks_url: jwks_url.to_owned(),
        ..Default::default()
    };
    let start = |jwks_url: &str| {
        AccessControl::from_config(&AuthConfig { oidc: Some(provider_config(jwks_url)), ..AuthConfig::default() })
    };
    assert!(start("http://idp.example/jwks").is_err(), "plain HTTP to another host");
    assert!(start("ftp://127.0.0.1/jwks").is_err());
    assert!(start("https://idp.example/jwks").is_ok());
    assert!(start("http://127.0.0.1:8080/jwks").is_ok(), "plain HTTP on this machine");
    assert!(start("http://[::1]:8080/jwks").is_ok());
    let no_audience = AuthConfig {
        oidc: Some(switchboard_platform::config::OidcConfig {
            audience: String::new(),
            ..provider_config("https://idp.example/jwks")
        }),
        ..AuthConfig::default()
    };
    assert!(AccessControl::from_config(&no_audience).is_err());
    let service_role = AuthConfig {
        oidc: Some(switchboard_platform::config::OidcConfig {
            allowed_roles: vec!["service".to_owned()],
            ..provider_config("https://idp.example/jwks")
        }),
        ..AuthConfig::default()
    };
    assert!(AccessControl::from_config(&service_role).is_err(), "no person is the service");
}
