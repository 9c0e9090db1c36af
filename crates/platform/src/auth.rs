//! Turns an API key into a [`Principal`]. Keys arrive as
//! `authorization: Bearer <key>` and are compared by SHA-256 digest; the
//! tenant of a principal comes only from the key's configuration or its
//! record in the credential store (`switchboard.access.v1`), which every
//! replica reads again whenever its revision moves ([`AccessControl::keep_fresh`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use switchboard_core::{AgentId, Error, Principal, Role, TenantId};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Request, Status};

use crate::config::{AuthConfig, TenantPolicyConfig};
use crate::credentials::runtime::RuntimeAccess;
use crate::credentials::{CredentialStore, TenantLimits, TenantPolicy};
use crate::grpc::CallContext;
use crate::oidc::OidcVerifier;
use crate::rate_limit::{Rate, TokenBuckets};
use crate::status::to_status;
use crate::stream_limit::{StreamLimit, StreamSlot};

/// How often a replica asks the credential store whether anything changed:
/// well within the 2 s in which a new, rotated or revoked key must be
/// honoured everywhere.
pub const CREDENTIALS_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The hex SHA-256 of an API key, as stored in configuration.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// `message` with `authorization: Bearer <key>`, as a client sends it; a
/// key that is not valid header text is left out (the call is then
/// unauthenticated).
pub fn authorized<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {key}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Verifies credentials and knows which tenants exist.
#[derive(Default)]
pub struct AccessControl {
    principals_by_key_hash: HashMap<String, Principal>,
    tenants: HashSet<TenantId>,
    /// The operator's policies for tenants of the configuration file.
    configured_policies: HashMap<TenantId, TenantPolicy>,
    /// `Bearer <service key>`, presented on calls to other services.
    service_authorization: Option<AsciiMetadataValue>,
    /// Tenants and keys made through the API, if the deployment has them.
    credentials: Option<Arc<dyn CredentialStore>>,
    runtime: RwLock<Arc<RuntimeAccess>>,
    /// Bearer JWTs of the operator's identity provider (`auth.oidc`).
    oidc: Option<Arc<OidcVerifier>>,
    /// Requests per key and per tenant (`auth.rate_limit`).
    per_key: Option<TokenBuckets>,
    per_tenant: Option<TokenBuckets>,
    /// Server streams per key (`auth.rate_limit.streams_per_key`).
    streams: Option<Arc<StreamLimit>>,
}

/// The principal of the deployment's service key.
pub fn service_principal() -> Principal {
    Principal { key_name: "service".to_owned(), role: Role::Service, tenant: None, agent: None, expires_at_ms: None }
}

impl AccessControl {
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Arc<AccessControl>> {
        AccessControl::configured(config).map(Arc::new)
    }

    /// [`AccessControl::from_config`] plus the tenants and keys of
    /// `credentials`, read by [`AccessControl::refresh`].
    pub fn with_credentials(
        config: &AuthConfig,
        credentials: Arc<dyn CredentialStore>,
    ) -> anyhow::Result<Arc<AccessControl>> {
        let access = AccessControl::configured(config)?;
        Ok(Arc::new(AccessControl { credentials: Some(credentials), ..access }))
    }

    fn configured(config: &AuthConfig) -> anyhow::Result<AccessControl> {
        // Every replica shares the service key: their page tokens are
        // signed alike (see `pagination`).
        if let Some(service_key) = &config.service_key {
            crate::pagination::sign_tokens_with(service_key);
        }
        let limits = &config.rate_limit;
        let mut access = AccessControl {
            per_key: Some(TokenBuckets::new(Rate {
                per_second: limits.per_key_per_second,
                burst: limits.per_key_burst,
            })),
            per_tenant: Some(TokenBuckets::new(Rate {
                per_second: limits.per_tenant_per_second,
                burst: limits.per_tenant_burst,
            })),
            streams: Some(StreamLimit::new(usize::try_from(limits.streams_per_key).unwrap_or(usize::MAX))),
            ..AccessControl::default()
        };
        for tenant in &config.tenants {
            access.tenants.insert(TenantId::parse(tenant, "auth.tenants")?);
        }
        if let Some(oidc) = &config.oidc {
            access.oidc = Some(Arc::new(OidcVerifier::new(oidc)?));
        }
        for (tenant, policy) in &config.tenant_policies {
            let field = format!("auth.tenant_policies.{tenant}");
            let tenant = TenantId::parse(tenant, &field)?;
            // A tenant made through the API keeps its policy in the store;
            // a file entry for it would silently override what GetTenant shows.
            if !access.tenants.contains(&tenant) {
                anyhow::bail!(
                    "{field}: `{tenant}` is not in auth.tenants (set an API tenant's policy with UpdateTenant)"
                );
            }
            let policy = policy_of_config(policy, &field)?;
            access.configured_policies.insert(tenant, policy);
        }
        for key in &config.api_keys {
            let role = Role::parse(&key.role).ok_or_else(|| anyhow::anyhow!("unknown role `{}`", key.role))?;
            let tenant = key.tenant.as_deref().map(|tenant| TenantId::parse(tenant, "tenant")).transpose()?;
            let agent = key.agent.as_deref().map(|agent| AgentId::parse(agent, "agent")).transpose()?;
            let principal = Principal { key_name: key.name.clone(), role, tenant, agent, expires_at_ms: None };
            access.principals_by_key_hash.insert(key.sha256.clone(), principal);
        }
        if let Some(service_key) = &config.service_key {
            access.principals_by_key_hash.insert(hash_api_key(service_key), service_principal());
            let authorization = format!("Bearer {service_key}")
                .parse()
                .map_err(|_| anyhow::anyhow!("auth.service_key is not valid header text"))?;
            access.service_authorization = Some(authorization);
        }
        Ok(access)
    }

    /// The store of tenants and keys made through the API, if any.
    pub fn credentials(&self) -> Option<Arc<dyn CredentialStore>> {
        self.credentials.clone()
    }

    /// The operator's weight and limits for `tenant` (the defaults for a
    /// tenant nobody set them for, or an unknown one).
    pub fn tenant_policy(&self, tenant: &TenantId) -> TenantPolicy {
        if let Some(policy) = self.configured_policies.get(tenant) {
            return policy.clone();
        }
        self.runtime().policy(tenant).cloned().unwrap_or_default()
    }

    /// Whether `tenant`'s contacts are offered to agents: not for a
    /// suspended or deleted tenant made through the API.
    pub fn routes_tenant(&self, tenant: &TenantId) -> bool {
        self.tenants.contains(tenant) || self.runtime().routes(tenant)
    }

    /// Whether `tenant` is deleted or being deleted (see
    /// [`RuntimeAccess::is_deleted`]).
    pub fn is_deleted_tenant(&self, tenant: &TenantId) -> bool {
        self.runtime().is_deleted(tenant)
    }

    /// The tenants deleted or being deleted, as `service` stands with them.
    pub fn deletions_for(&self, service: &str) -> Vec<crate::credentials::runtime::PendingErasure> {
        self.runtime().deletions_for(service)
    }

    /// Every tenant in service: the configuration file's and the active
    /// ones made through the API, by id.
    pub fn active_tenants(&self) -> Vec<TenantId> {
        let mut tenants: Vec<TenantId> = self.tenants.iter().cloned().collect();
        tenants.extend(self.runtime().active_tenants());
        tenants.sort();
        tenants.dedup();
        tenants
    }

    /// Whether `tenant` is declared in the configuration file.
    pub fn is_configured_tenant(&self, tenant: &TenantId) -> bool {
        self.tenants.contains(tenant)
    }

    fn runtime(&self) -> Arc<RuntimeAccess> {
        Arc::clone(&self.runtime.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Reads the credential store again if its revision moved since the
    /// last read.
    pub async fn refresh(&self) -> Result<(), Error> {
        let Some(credentials) = &self.credentials else { return Ok(()) };
        if credentials.revision().await? == self.runtime().revision {
            return Ok(());
        }
        let snapshot = credentials.snapshot().await?;
        let runtime = Arc::new(RuntimeAccess::from_snapshot(&snapshot));
        let mut current = self.runtime.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A slower concurrent refresh never replaces a newer snapshot.
        if runtime.revision > current.revision {
            tracing::debug!(revision = runtime.revision, "credentials reloaded");
            *current = runtime;
        }
        Ok(())
    }

    /// The identity provider's verifier, if `auth.oidc` is configured.
    pub fn oidc(&self) -> Option<Arc<OidcVerifier>> {
        self.oidc.clone()
    }

    /// Refreshes every [`CREDENTIALS_POLL_INTERVAL`] until `shutdown`, and
    /// the identity provider's keys on their own schedule; a failed read is
    /// logged and retried (the last snapshot or keys stay in force).
    pub async fn keep_fresh(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let identity_provider = match self.oidc() {
            Some(oidc) => futures::future::Either::Left(oidc.keep_fresh(shutdown.clone())),
            None => futures::future::Either::Right(std::future::ready(())),
        };
        tokio::join!(identity_provider, self.poll_credentials(shutdown));
    }

    async fn poll_credentials(&self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(error) = self.refresh().await {
                tracing::warn!(error = %error, "credentials not refreshed, the last ones stay in force");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(CREDENTIALS_POLL_INTERVAL) => {}
            }
        }
    }

    /// The context of a call this service makes as itself (the service
    /// key), if the deployment configured one.
    pub fn service_call(&self) -> Option<CallContext> {
        self.service_authorization.clone().map(CallContext::with_authorization)
    }

    /// The principal of the request's bearer key.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Error> {
        let Some(header) = metadata.get("authorization") else {
            return Err(Error::unauthenticated("missing `authorization: Bearer <api key>` metadata")
                .with_reason("MISSING_CREDENTIAL"));
        };
        // Two credentials are ambiguous: which one acts is not the caller's
        // to leave to the server.
        if metadata.get_all("authorization").iter().nth(1).is_some() {
            return Err(Error::unauthenticated("send one `authorization` metadata entry, not several")
                .with_reason("MALFORMED_AUTHORIZATION"));
        }
        let header = header.to_str().map_err(|_| Error::unauthenticated("`authorization` metadata is not ASCII"))?;
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        let key = match header.trim().split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => {
                return Err(Error::unauthenticated("`authorization` must be `Bearer <api key>`")
                    .with_reason("MALFORMED_AUTHORIZATION"));
            }
        };
        if let Some(oidc) = &self.oidc
            && crate::oidc::looks_like_jwt(key)
        {
            let principal = oidc.verify(key, switchboard_core::time::now_millis())?;
            // A suspended tenant's people are refused like its keys; a
            // deleted tenant's are no one's.
            if let Some(tenant) = &principal.tenant
                && self.runtime().knows(tenant)
            {
                if self.runtime().is_deleted(tenant) {
                    return Err(
                        Error::unauthenticated(format!("tenant `{tenant}` was deleted")).with_reason("TENANT_DELETED")
                    );
                }
                self.runtime().require_active(tenant)?;
            }
            return Ok(principal);
        }
        let sha256 = hash_api_key(key);
        if let Some(principal) = self.principals_by_key_hash.get(&sha256) {
            return Ok(principal.clone());
        }
        self.runtime()
            .principal(&sha256, switchboard_core::time::now_millis())?
            .ok_or_else(|| Error::unauthenticated("unknown API key").with_reason("UNKNOWN_API_KEY"))
    }

    /// The principal may read `tenant`, and `tenant` exists. A tenant-scoped
    /// principal gets PERMISSION_DENIED for any other tenant, existing or
    /// not, so it learns nothing about other tenants.
    /// A suspended tenant stays readable (its own keys already fail, so
    /// this is the operator, e.g. before deleting it).
    pub fn authorize_read(&self, principal: &Principal, tenant: &TenantId) -> Result<(), Error> {
        principal.authorize_read(tenant)?;
        self.require_readable(tenant)
    }

    /// `tenant` exists and is not deleted; suspended or not (see
    /// [`AccessControl::authorize_read`]).
    pub fn require_readable(&self, tenant: &TenantId) -> Result<(), Error> {
        if self.tenants.contains(tenant) {
            return Ok(());
        }
        self.runtime().require_present(tenant)
    }

    pub fn authorize_write(&self, principal: &Principal, tenant: &TenantId) -> Result<(), Error> {
        principal.authorize_write(tenant)?;
        self.require_tenant(tenant)
    }

    /// `tenant` exists and is not suspended: declared in the configuration,
    /// or made through the API and active (FAILED_PRECONDITION
    /// `TENANT_SUSPENDED` if suspended, NOT_FOUND if unknown).
    pub fn authorize_intake(&self, principal: &Principal, tenant: &TenantId) -> Result<(), Error> {
        principal.authorize_intake(tenant)?;
        self.require_tenant(tenant)
    }

    pub fn authorize_intake_read(&self, principal: &Principal, tenant: &TenantId) -> Result<(), Error> {
        principal.authorize_intake_read(tenant)?;
        self.require_readable(tenant)
    }

    pub fn require_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        if self.tenants.contains(tenant) {
            return Ok(());
        }
        self.runtime().require_active(tenant)
    }

    /// Takes one request of `principal`'s key's and tenant's rate
    /// (RESOURCE_EXHAUSTED `RATE_LIMITED` when spent); the service key is
    /// never limited.
    pub fn admit(&self, principal: &Principal) -> Result<(), Error> {
        if principal.is_service() {
            return Ok(());
        }
        let now = switchboard_core::time::now_millis();
        if let Some(per_key) = &self.per_key {
            per_key.take(&principal.key_name, now, &format!("key `{}`", principal.key_name))?;
        }
        if let (Some(per_tenant), Some(tenant)) = (&self.per_tenant, &principal.tenant) {
            per_tenant.take(tenant.as_str(), now, &format!("tenant `{tenant}`"))?;
        }
        Ok(())
    }

    /// A slot for one more server stream of `principal`'s key (see
    /// [`StreamLimit`]), to hold while the stream lasts.
    pub fn open_stream(&self, principal: &Principal) -> Result<Option<StreamSlot>, Error> {
        self.streams.as_ref().map(|streams| streams.open(principal)).transpose()
    }

    /// A tonic interceptor that authenticates every call, takes it from the
    /// caller's rate limits and puts the [`Principal`] into the request
    /// extensions.
    pub fn interceptor(self: &Arc<Self>) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let access = Arc::clone(self);
        move |mut request: Request<()>| {
            let principal = access.authenticate(request.metadata()).map_err(|error| to_status(&error))?;
            access.admit(&principal).map_err(|error| to_status(&error))?;
            request.extensions_mut().insert(principal);
            Ok(request)
        }
    }
}

fn policy_of_config(config: &TenantPolicyConfig, field: &str) -> Result<TenantPolicy, Error> {
    let millis = |value: Option<u64>| value.map(|value| i64::try_from(value).unwrap_or(i64::MAX));
    let policy = TenantPolicy {
        routing_weight: config.routing_weight,
        limits: TenantLimits {
            max_queues: config.max_queues,
            max_agents: config.max_agents,
            max_channels: config.max_channels,
            max_waiting_contacts: config.max_waiting_contacts,
            max_offer_timeout_ms: millis(config.max_offer_timeout_ms),
            max_wrap_up_ms: millis(config.max_wrap_up_ms),
        },
    };
    policy.validate(field)?;
    Ok(policy)
}

/// How a principal appears in logs: an API key by its name; a person
/// signed in through the identity provider by a pseudonym (`oidc:` and 12
/// hex digits of a digest of the subject), since subjects are often e-mail
/// addresses. Audit records, which are access-controlled, keep the subject.
pub struct LogName<'principal>(pub &'principal Principal);

impl std::fmt::Display for LogName<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.key_name.strip_prefix("oidc:") {
            Some(subject) => write!(formatter, "oidc:{}", &hash_api_key(subject)[..12]),
            None => formatter.write_str(&self.0.key_name),
        }
    }
}

/// Completes when `principal`'s credential expires (a JWT's `exp` and the
/// allowed skew); never for one that does not. Streams end with it.
pub async fn credential_expired(principal: &Principal) {
    match principal.expires_at_ms {
        Some(at_ms) => {
            let left_ms = u64::try_from(at_ms - switchboard_core::time::now_millis()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(left_ms)).await;
        }
        None => std::future::pending().await,
    }
}

impl AccessControl {
    /// Completes once `principal`'s credential no longer stands (see
    /// [`RuntimeAccess::still_stands`]): its key revoked or expired, or
    /// its tenant suspended or deleted; looked at every second. Streams
    /// end with it.
    pub async fn credential_withdrawn(&self, principal: &Principal) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !self.runtime().still_stands(principal, switchboard_core::time::now_millis()) {
                return;
            }
        }
    }
}

/// The refusal that ends a stream whose credential was revoked, or whose
/// tenant was suspended or deleted.
pub fn credential_withdrawn_error() -> Error {
    Error::unauthenticated("the credential was revoked or its tenant suspended or deleted")
        .with_reason("CREDENTIAL_WITHDRAWN")
}

/// The refusal that ends a stream whose credential expired.
pub fn credential_expired_error() -> Error {
    Error::unauthenticated("the credential expired: sign in again and reopen the stream").with_reason("TOKEN_EXPIRED")
}

/// The principal the auth interceptor attached to a request.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| to_status(&Error::unauthenticated("request was not authenticated")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    fn access() -> Arc<AccessControl> {
        let config = AuthConfig {
            tenants: vec!["acme".to_owned()],
            api_keys: vec![ApiKeyConfig::for_key("acme-admin", "secret", "tenant_admin", Some("acme"), None)],
            service_key: Some(SERVICE_KEY.to_owned()),
            rate_limit: Default::default(),
            tenant_policies: Default::default(),
            oidc: None,
        };
        AccessControl::from_config(&config).expect("access")
    }

    const SERVICE_KEY: &str = "service-key-of-this-test-0123456789";

    fn metadata(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().expect("ascii"));
        metadata
    }

    #[test]
    fn keys_resolve_to_their_principal_only() {
        let access = access();
        let principal = access.authenticate(&metadata("Bearer secret")).expect("known key");
        assert_eq!(principal.tenant.as_ref().map(TenantId::as_str), Some("acme"));
        for scheme in ["bearer secret", "BEARER secret", "Bearer  secret "] {
            assert!(access.authenticate(&metadata(scheme)).is_ok(), "{scheme}");
        }
        assert!(access.authenticate(&metadata("Basic secret")).is_err());
        assert!(access.authenticate(&metadata("Bearersecret")).is_err());
        assert!(access.authenticate(&metadata("Bearer wrong")).is_err());
        assert!(access.authenticate(&metadata("secret")).is_err());
        assert!(access.authenticate(&MetadataMap::new()).is_err());
        let mut twice = metadata("Bearer secret");
        twice.append("authorization", "Bearer secret".parse().expect("ascii"));
        let refused = access.authenticate(&twice).expect_err("two credentials");
        assert_eq!(refused.reason(), "MALFORMED_AUTHORIZATION");
    }

    #[test]
    fn other_and_unknown_tenants_are_hidden() {
        let access = access();
        let principal = access.authenticate(&metadata("Bearer secret")).expect("known key");
        let unknown = TenantId::parse("initech", "t").expect("tenant");
        let error = access.authorize_read(&principal, &unknown).expect_err("other tenant");
        assert_eq!(error.code, switchboard_core::ErrorCode::PermissionDenied);
    }

    #[test]
    fn the_service_key_is_the_service_principal_and_is_what_service_calls_present() {
        let access = access();
        let principal = access.authenticate(&metadata(&format!("Bearer {SERVICE_KEY}"))).expect("service key");
        assert_eq!(principal, service_principal());
        let request = access.service_call().expect("configured").request(());
        let presented = access.authenticate(request.metadata()).expect("a service call authenticates");
        assert!(presented.is_service());
        let acme = TenantId::parse("acme", "t").expect("tenant");
        assert!(access.authorize_read(&presented, &acme).is_err(), "the service role reads no tenant's data");
        let without = AccessControl::from_config(&AuthConfig::default()).expect("access");
        assert!(without.service_call().is_none());
    }

    #[test]
    fn a_file_policy_only_names_tenants_of_the_file() {
        let policy = crate::config::TenantPolicyConfig { routing_weight: 3, ..Default::default() };
        let mut config = AuthConfig { tenants: vec!["acme".to_owned()], ..AuthConfig::default() };
        config.tenant_policies.insert("acme".to_owned(), policy.clone());
        let access = AccessControl::from_config(&config).expect("a tenant of the file");
        assert_eq!(access.tenant_policy(&TenantId::parse("acme", "t").expect("tenant")).routing_weight, 3);
        config.tenant_policies.insert("initech".to_owned(), policy);
        assert!(AccessControl::from_config(&config).is_err(), "an API tenant's policy is set with UpdateTenant");
    }

    mod runtime_credentials {
        use super::*;
        use crate::credentials::{
            ApiKeyId, KeyHolder, KeyRecord, MemoryCredentialStore, TenantChange, TenantRecord, new_secret,
            secret_prefix,
        };
        use switchboard_core::ErrorCode;
        use switchboard_core::time::now_millis;

        fn initech() -> TenantId {
            TenantId::parse("initech", "t").expect("tenant")
        }

        async fn with_initech() -> (Arc<MemoryCredentialStore>, Arc<AccessControl>) {
            let store = Arc::new(MemoryCredentialStore::new());
            let tenant = TenantRecord {
                id: initech(),
                display_name: "Initech".to_owned(),
                suspended: false,
                policy: Default::default(),
                create_time_ms: 1,
                update_time_ms: 1,
                deletion: None,
            };
            store.create_tenant(&tenant).await.expect("tenant");
            let access = AccessControl::with_credentials(&AuthConfig::default(), store.clone()).expect("access");
            (store, access)
        }

        async fn add_key(store: &MemoryCredentialStore, expire_time_ms: Option<i64>) -> (ApiKeyId, String) {
            let secret = new_secret();
            let key = KeyRecord {
                id: ApiKeyId::generate(),
                display_name: "integration".to_owned(),
                holder: KeyHolder::TenantAdmin(initech()),
                expire_time_ms,
                create_time_ms: 1,
                revoke_time_ms: None,
                secret_sha256: hash_api_key(&secret),
                secret_prefix: secret_prefix(&secret),
                previous_secret: None,
            };
            store.create_key(&key).await.expect("key");
            (key.id, secret)
        }

        fn bearer(secret: &str) -> MetadataMap {
            metadata(&format!("Bearer {secret}"))
        }

        #[tokio::test]
        async fn a_key_made_at_runtime_works_once_read_and_stops_once_revoked() {
            let (store, access) = with_initech().await;
            let (key, secret) = add_key(&store, None).await;
            assert!(access.authenticate(&bearer(&secret)).is_err(), "not read yet");
            access.refresh().await.expect("refresh");
            let principal = access.authenticate(&bearer(&secret)).expect("read");
            assert_eq!((principal.role, principal.tenant.clone()), (Role::TenantAdmin, Some(initech())));
            access.authorize_write(&principal, &initech()).expect("its tenant exists");
            store.revoke_key(&key, now_millis()).await.expect("revoke");
            access.refresh().await.expect("refresh");
            let error = access.authenticate(&bearer(&secret)).expect_err("revoked");
            assert_eq!(error.code, ErrorCode::Unauthenticated);
        }

        #[tokio::test]
        async fn an_expired_key_and_a_rotated_out_secret_past_its_overlap_stop_working() {
            let (store, access) = with_initech().await;
            let (_, expired) = add_key(&store, Some(now_millis() - 1)).await;
            let (key, old_secret) = add_key(&store, None).await;
            let new_secret_value = new_secret();
            let overlap_end = now_millis() + 60_000;
            store
                .rotate_key(&key, &hash_api_key(&new_secret_value), &secret_prefix(&new_secret_value), overlap_end)
                .await
                .expect("rotate");
            access.refresh().await.expect("refresh");
            assert!(access.authenticate(&bearer(&expired)).is_err(), "expired");
            assert!(access.authenticate(&bearer(&old_secret)).is_ok(), "the old secret during the overlap");
            assert!(access.authenticate(&bearer(&new_secret_value)).is_ok(), "the new secret");
            store
                .rotate_key(&key, &hash_api_key(&new_secret()), "sbk_00000000", now_millis() - 1)
                .await
                .expect("again");
            access.refresh().await.expect("refresh");
            assert!(access.authenticate(&bearer(&old_secret)).is_err(), "two rotations ago");
            assert!(access.authenticate(&bearer(&new_secret_value)).is_err(), "its overlap ended at once");
        }

        #[tokio::test]
        async fn a_suspended_tenant_is_refused_and_its_keys_stop_until_it_resumes() {
            let (store, access) = with_initech().await;
            let (_, secret) = add_key(&store, None).await;
            let suspend = TenantChange { suspended: Some(true), ..TenantChange::default() };
            store.update_tenant(&initech(), &suspend, 2).await.expect("suspend");
            access.refresh().await.expect("refresh");
            let refused = access.authenticate(&bearer(&secret)).expect_err("suspended");
            assert_eq!(
                (refused.code, refused.explicit_reason),
                (ErrorCode::FailedPrecondition, Some("TENANT_SUSPENDED"))
            );
            assert_eq!(access.require_tenant(&initech()).expect_err("suspended").code, ErrorCode::FailedPrecondition);
            let resume = TenantChange { suspended: Some(false), ..TenantChange::default() };
            store.update_tenant(&initech(), &resume, 3).await.expect("resume");
            access.refresh().await.expect("refresh");
            assert!(access.authenticate(&bearer(&secret)).is_ok());
            let unknown = TenantId::parse("umbrella", "t").expect("tenant");
            assert_eq!(access.require_tenant(&unknown).expect_err("unknown").code, ErrorCode::NotFound);
        }
    }
}
