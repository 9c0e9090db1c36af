//! `[auth]`: tenants, API keys, the service key, rate limits, the
//! operator's tenant policies and the identity provider.

use serde::{Deserialize, Serialize};
use switchboard_core::{Role, ids::AgentId};

/// Tenants and API keys. Keys are stored only as SHA-256 hex digests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub tenants: Vec<String>,
    pub api_keys: Vec<ApiKeyConfig>,
    /// The credential Switchboard's services present to each other (the
    /// same on every service, at least 32 printable ASCII characters, from
    /// a Secret as `SWITCHBOARD_AUTH__SERVICE_KEY`; `switchboard service-key
    /// new` makes one). It lets ingestion have CRM resolve the sender of a
    /// channel's message before the contact is routed, so routing's
    /// preferred-agent rule applies across channels. Without it CRM resolves
    /// those senders from the event, after routing.
    pub service_key: Option<String>,
    /// Requests each API key, and each tenant's keys together, may make.
    pub rate_limit: RateLimitConfig,
    /// The operator's weight and limits for tenants of this file, by tenant
    /// id (`[auth.tenant_policies.acme]`); a tenant not named has weight 1
    /// and no limits. Tenants made through the API carry their own.
    pub tenant_policies: std::collections::BTreeMap<String, TenantPolicyConfig>,
    /// Sign-in with the operator's identity provider (`[auth.oidc]`): bearer
    /// JWTs beside API keys. Unset: API keys only.
    pub oidc: Option<OidcConfig>,
}

/// The operator's OIDC identity provider: which tokens are accepted and how
/// their claims map to a role, a tenant and an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` every token must carry, e.g. `https://idp.example.com/realms/cc`.
    pub issuer: String,
    /// One of the token's `aud`.
    pub audience: String,
    /// The provider's JWKS (RS256 and ES256 keys): `https://`, or `http://`
    /// to a loopback address only.
    pub jwks_url: String,
    pub jwks_refresh_secs: u64,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// The claim naming the role (`tenant_admin`, `agent`, ...).
    pub role_claim: String,
    /// The claim naming the tenant id of a tenant role.
    pub tenant_claim: String,
    /// The claim naming the agent id of an agent.
    pub agent_claim: String,
    /// The roles a token may claim; another is refused (`ROLE_NOT_ALLOWED`).
    /// By default every role but `operator_admin`: whoever can edit a
    /// user's claims at the provider should not become an operator of
    /// every tenant unless the operator lists it here.
    pub allowed_roles: Vec<String>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer: String::new(),
            audience: String::new(),
            jwks_url: String::new(),
            jwks_refresh_secs: 300,
            leeway_secs: 60,
            role_claim: "switchboard_role".to_owned(),
            tenant_claim: "switchboard_tenant".to_owned(),
            agent_claim: "switchboard_agent".to_owned(),
            allowed_roles: ["tenant_admin", "tenant_reader", "integration", "supervisor", "agent"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

impl OidcConfig {
    /// Issuer, audience and claims named; the JWKS fetched over TLS unless
    /// it is on this machine.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.issuer.is_empty() || self.audience.is_empty() {
            anyhow::bail!("auth.oidc.issuer and auth.oidc.audience must be set");
        }
        if self.role_claim.is_empty() || self.tenant_claim.is_empty() || self.agent_claim.is_empty() {
            anyhow::bail!("auth.oidc.role_claim, tenant_claim and agent_claim must not be empty");
        }
        for role in &self.allowed_roles {
            if Role::parse(role).is_none_or(|role| role == Role::Service) {
                anyhow::bail!("auth.oidc.allowed_roles: `{role}` is not a role a person can have");
            }
        }
        let url = reqwest::Url::parse(&self.jwks_url)
            .map_err(|error| anyhow::anyhow!("auth.oidc.jwks_url is not a URL: {error}"))?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback());
        match url.scheme() {
            "https" => Ok(()),
            "http" if loopback => Ok(()),
            _ => anyhow::bail!(
                "auth.oidc.jwks_url must be https:// (http:// only to this machine): keys fetched in the clear \
                 could be replaced on the way"
            ),
        }
    }
}

/// One tenant's routing weight and limits in the configuration file; an
/// unset limit is no limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantPolicyConfig {
    pub routing_weight: u32,
    pub max_queues: Option<u32>,
    pub max_agents: Option<u32>,
    pub max_channels: Option<u32>,
    pub max_waiting_contacts: Option<u32>,
    pub max_offer_timeout_ms: Option<u64>,
    pub max_wrap_up_ms: Option<u64>,
}

impl Default for TenantPolicyConfig {
    fn default() -> Self {
        TenantPolicyConfig {
            routing_weight: crate::credentials::DEFAULT_ROUTING_WEIGHT,
            max_queues: None,
            max_agents: None,
            max_channels: None,
            max_waiting_contacts: None,
            max_offer_timeout_ms: None,
            max_wrap_up_ms: None,
        }
    }
}

/// Token buckets per API key and per tenant, in each process (a call over
/// the limit is RESOURCE_EXHAUSTED `RATE_LIMITED` with `RetryInfo`); a
/// rate of 0 turns that limit off. The service key is never limited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_key_per_second: u32,
    pub per_key_burst: u32,
    pub per_tenant_per_second: u32,
    pub per_tenant_burst: u32,
    /// Server streams (`WatchAgentStates`) one key may hold open at once
    /// in a process; 0 is no limit.
    pub streams_per_key: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_key_per_second: 500,
            per_key_burst: 1000,
            per_tenant_per_second: 2000,
            per_tenant_burst: 4000,
            streams_per_key: 32,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Shown in audit logs instead of the key.
    pub name: String,
    /// Lowercase hex SHA-256 of the key (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// `operator_admin`, `tenant_admin`, `tenant_reader`, `integration`,
    /// `supervisor` or `agent`.
    pub role: String,
    /// Required for tenant roles.
    pub tenant: Option<String>,
    /// Required for the agent role.
    pub agent: Option<String>,
}

impl ApiKeyConfig {
    /// The entry `name` of `key` (stored as its SHA-256 only).
    pub fn for_key(name: &str, key: &str, role: &str, tenant: Option<&str>, agent: Option<&str>) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.to_owned(),
            sha256: crate::auth::hash_api_key(key),
            role: role.to_owned(),
            tenant: tenant.map(str::to_owned),
            agent: agent.map(str::to_owned),
        }
    }
}

pub(super) fn validate_api_key(index: usize, key: &ApiKeyConfig, tenants: &[String]) -> anyhow::Result<()> {
    let field = format!("auth.api_keys[{index}]");
    if key.name.is_empty() {
        anyhow::bail!("{field}.name must not be empty");
    }
    if key.sha256.len() != 64 || !key.sha256.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        anyhow::bail!("{field}.sha256 must be 64 lowercase hex digits");
    }
    let Some(role) = Role::parse(&key.role) else {
        anyhow::bail!("{field}.role `{}` is not a role", key.role);
    };
    match role {
        Role::TenantAdmin | Role::TenantReader | Role::Integration | Role::Supervisor => {
            let Some(tenant) = &key.tenant else {
                anyhow::bail!("{field}.tenant is required for role {}", key.role);
            };
            if !tenants.contains(tenant) {
                anyhow::bail!("{field}.tenant `{tenant}` is not in auth.tenants");
            }
        }
        Role::Agent => {
            let Some(agent) = &key.agent else {
                anyhow::bail!("{field}.agent is required for role agent");
            };
            AgentId::parse(agent, "agent").map_err(|error| anyhow::anyhow!("{field}: {error}"))?;
        }
        Role::OperatorAdmin => {}
        // `Role::parse` never yields it: no key can be the service.
        Role::Service => anyhow::bail!("{field}.role `service` is not a key role: set auth.service_key"),
    }
    Ok(())
}
