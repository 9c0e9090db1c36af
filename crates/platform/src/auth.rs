//! Turns an API key into a [`Principal`]. Keys arrive as
//! `authorization: Bearer <key>` and are compared by SHA-256 digest; the
//! tenant of a principal comes only from the key's configuration.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use switchboard_core::{AgentId, Error, Principal, Role, TenantId};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Request, Status};

use crate::config::AuthConfig;
use crate::grpc::CallContext;
use crate::status::to_status;

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
#[derive(Debug, Default)]
pub struct AccessControl {
    principals_by_key_hash: HashMap<String, Principal>,
    tenants: HashSet<TenantId>,
    /// `Bearer <service key>`, presented on calls to other services.
    service_authorization: Option<AsciiMetadataValue>,
}

/// The principal of the deployment's service key.
pub fn service_principal() -> Principal {
    Principal { key_name: "service".to_owned(), role: Role::Service, tenant: None, agent: None }
}

impl AccessControl {
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Arc<AccessControl>> {
        let mut access = AccessControl::default();
        for tenant in &config.tenants {
            access.tenants.insert(TenantId::parse(tenant, "auth.tenants")?);
        }
        for key in &config.api_keys {
            let role = Role::parse(&key.role).ok_or_else(|| anyhow::anyhow!("unknown role `{}`", key.role))?;
            let tenant = key.tenant.as_deref().map(|tenant| TenantId::parse(tenant, "tenant")).transpose()?;
            let agent = key.agent.as_deref().map(|agent| AgentId::parse(agent, "agent")).transpose()?;
            let principal = Principal { key_name: key.name.clone(), role, tenant, agent };
            access.principals_by_key_hash.insert(key.sha256.clone(), principal);
        }
        if let Some(service_key) = &config.service_key {
            access.principals_by_key_hash.insert(hash_api_key(service_key), service_principal());
            let authorization = format!("Bearer {service_key}")
                .parse()
                .map_err(|_| anyhow::anyhow!("auth.service_key is not valid header text"))?;
            access.service_authorization = Some(authorization);
        }
        Ok(Arc::new(access))
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
        let header = header.to_str().map_err(|_| Error::unauthenticated("`authorization` metadata is not ASCII"))?;
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        let key = match header.trim().split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => {
                return Err(Error::unauthenticated("`authorization` must be `Bearer <api key>`")
                    .with_reason("MALFORMED_AUTHORIZATION"));
            }
        };
        self.principals_by_key_hash
            .get(&hash_api_key(key))
            .cloned()
            .ok_or_else(|| Error::unauthenticated("unknown API key").with_reason("UNKNOWN_API_KEY"))
    }

    /// The principal may read `tenant`, and `tenant` exists. A tenant-scoped
    /// principal gets PERMISSION_DENIED for any other tenant, existing or
    /// not, so it learns nothing about other tenants.
    pub fn authorize_read(&self, principal: &Principal, tenant: &TenantId) -> Result<(), Error> {
        principal.authorize_read(tenant)?;
        self.require_tenant(tenant)
    }

    pub fn authorize_write(&self, principal: &Principal, tenant: &TenantId) -> Result<(), Error> {
        principal.authorize_write(tenant)?;
        self.require_tenant(tenant)
    }

    pub fn require_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        if self.tenants.contains(tenant) {
            return Ok(());
        }
        Err(Error::not_found(switchboard_core::names::tenant_name(tenant)))
    }

    /// A tonic interceptor that authenticates every call and puts the
    /// [`Principal`] into the request extensions.
    pub fn interceptor(self: &Arc<Self>) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let access = Arc::clone(self);
        move |mut request: Request<()>| {
            let principal = access.authenticate(request.metadata()).map_err(|error| to_status(&error))?;
            request.extensions_mut().insert(principal);
            Ok(request)
        }
    }
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
}
