//! Tenants and API keys managed at runtime (`switchboard.access.v1`): the
//! port [`CredentialStore`] with an in-memory implementation for `dev` and
//! a PostgreSQL one shared by every service of a deployment, both held to
//! the suite in `contract`.
//!
//! Guarantees every implementation gives:
//! - every change moves [`CredentialStore::revision`] forward, in the same
//!   atomic step as the change, so a replica that saw a revision and then
//!   reads a [`Snapshot`] of a later one misses nothing;
//! - only a secret's SHA-256 is stored, never the secret;
//! - a revoked key stays revoked (revoking again changes nothing and
//!   nothing un-revokes it).

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod memory;
pub mod postgres;
pub mod runtime;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use switchboard_core::{AgentId, Error, Role, TenantId};

pub use memory::MemoryCredentialStore;
pub use postgres::PostgresCredentialStore;

/// The id of an API key made through the API: `k_` and 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiKeyId(String);

impl ApiKeyId {
    pub fn generate() -> ApiKeyId {
        ApiKeyId(format!("k_{}", &random_hex(8)))
    }

    pub fn parse(value: &str, field: &str) -> Result<ApiKeyId, Error> {
        let well_formed = value.len() == 18
            && value.starts_with("k_")
            && value[2..].bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !well_formed {
            return Err(Error::invalid_field(field, "must be `apiKeys/k_` and 16 lowercase hex digits"));
        }
        Ok(ApiKeyId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ApiKeyId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// `apiKeys/{key}`.
pub fn api_key_name(key: &ApiKeyId) -> String {
    format!("apiKeys/{key}")
}

/// The key id of `apiKeys/{key}`.
pub fn parse_api_key_name(name: &str, field: &str) -> Result<ApiKeyId, Error> {
    let Some(id) = name.strip_prefix("apiKeys/") else {
        return Err(Error::invalid_field(field, "must be `apiKeys/{key}`"));
    };
    ApiKeyId::parse(id, field)
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut random = vec![0_u8; bytes];
    rand::rng().fill_bytes(&mut random);
    hex::encode(random)
}

/// A new secret: `sbk_`, 48 random hex digits, `_` and the first 8 hex
/// digits of the SHA-256 of what precedes them (a checksum secret scanners
/// can verify offline).
pub fn new_secret() -> String {
    let body = format!("sbk_{}", random_hex(24));
    let checksum = &hex::encode(Sha256::digest(body.as_bytes()))[..8];
    format!("{body}_{checksum}")
}

/// `secret` has the shape and checksum [`new_secret`] gives.
pub fn has_valid_checksum(secret: &str) -> bool {
    let Some((body, checksum)) = secret.rsplit_once('_') else { return false };
    body.starts_with("sbk_") && checksum.len() == 8 && hex::encode(Sha256::digest(body.as_bytes()))[..8] == *checksum
}

/// What a secret shows of itself in listings: `sbk_` and 8 more.
pub fn secret_prefix(secret: &str) -> String {
    secret.chars().take(12).collect()
}

/// The weight of a tenant the operator set nothing for.
pub const DEFAULT_ROUTING_WEIGHT: u32 = 1;
/// The largest routing weight: a tenant may be given at most 1000 times the
/// share of another.
pub const MAX_ROUTING_WEIGHT: u32 = 1000;

/// What the operator decides for a tenant, and the tenant cannot change:
/// its share of the agents it shares with other tenants and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    /// 1..=[`MAX_ROUTING_WEIGHT`]: when several tenants wait for the same
    /// shared agents, each is offered them in proportion to its weight
    /// (routing's fair share); its own queue and contact priorities order
    /// only its own contacts.
    pub routing_weight: u32,
    pub limits: TenantLimits,
}

impl Default for TenantPolicy {
    fn default() -> TenantPolicy {
        TenantPolicy { routing_weight: DEFAULT_ROUTING_WEIGHT, limits: TenantLimits::default() }
    }
}

/// The largest count limit (queues, agents, channels, waiting contacts).
pub const MAX_COUNT_LIMIT: u32 = 1_000_000;
/// The largest time cap (offer timeout, wrap-up): one day.
pub const MAX_TIME_LIMIT_MS: i64 = 86_400_000;

impl TenantPolicy {
    /// INVALID_ARGUMENT naming `{field}.routing_weight` or `{field}.limits.*`
    /// if the weight is outside 1..=[`MAX_ROUTING_WEIGHT`], a count limit
    /// over [`MAX_COUNT_LIMIT`] or a time cap outside 1 ms..=1 day.
    pub fn validate(&self, field: &str) -> Result<(), Error> {
        if !(1..=MAX_ROUTING_WEIGHT).contains(&self.routing_weight) {
            return Err(Error::invalid_field(
                format!("{field}.routing_weight"),
                format!("must be 1-{MAX_ROUTING_WEIGHT}"),
            ));
        }
        let limits = &self.limits;
        let counts = [
            ("max_queues", limits.max_queues),
            ("max_agents", limits.max_agents),
            ("max_channels", limits.max_channels),
            ("max_waiting_contacts", limits.max_waiting_contacts),
        ];
        for (name, limit) in counts {
            if limit.is_some_and(|limit| limit > MAX_COUNT_LIMIT) {
                return Err(Error::invalid_field(
                    format!("{field}.limits.{name}"),
                    format!("must be at most {MAX_COUNT_LIMIT}"),
                ));
            }
        }
        let times = [("max_offer_timeout", limits.max_offer_timeout_ms), ("max_wrap_up", limits.max_wrap_up_ms)];
        for (name, limit) in times {
            if limit.is_some_and(|limit| !(1..=MAX_TIME_LIMIT_MS).contains(&limit)) {
                return Err(Error::invalid_field(
                    format!("{field}.limits.{name}"),
                    "must be positive and at most one day",
                ));
            }
        }
        Ok(())
    }
}

/// Quotas and caps of one tenant; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantLimits {
    pub max_queues: Option<u32>,
    /// Agents serving the tenant (shared agents count for each tenant).
    pub max_agents: Option<u32>,
    pub max_channels: Option<u32>,
    /// Contacts waiting in its queues at once; a contact over it ends at
    /// once, refused as `TENANT_QUEUE_FULL`.
    pub max_waiting_contacts: Option<u32>,
    /// Caps its queues' offer timeout and wrap-up time: a queue asking for
    /// more is refused, and one made before the cap was lowered is held to it.
    pub max_offer_timeout_ms: Option<i64>,
    pub max_wrap_up_ms: Option<i64>,
}

/// A tenant made through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: TenantId,
    pub display_name: String,
    pub suspended: bool,
    pub policy: TenantPolicy,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
    /// Set once the tenant is being deleted; never unset, so the record
    /// stays as a tombstone and the id is never given out again.
    pub deletion: Option<TenantDeletion>,
}

impl TenantRecord {
    /// Being erased or erased: its keys do not work, nothing is done for it.
    pub fn is_deleted(&self) -> bool {
        self.deletion.is_some()
    }
}

/// The services that hold a tenant's data: each erases its own part, and
/// the tenant is deleted once all of them have ([`CredentialStore::record_erasure`]).
pub const ERASING_SERVICES: [&str; 5] = ["ingestion", "routing", "presence", "crm", "kpi"];

/// A tenant's deletion: asked for at `request_time_ms`, then carried out
/// by every service of [`ERASING_SERVICES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDeletion {
    pub request_time_ms: i64,
    pub progress: DeletionProgress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionProgress {
    /// These services have erased their part; the others have not yet.
    Erasing { erased_by: std::collections::BTreeSet<String> },
    /// Every service erased its part at or before `delete_time_ms`.
    Deleted { delete_time_ms: i64 },
}

impl TenantDeletion {
    /// The services that have not erased their part yet.
    pub fn pending(&self) -> Vec<&'static str> {
        match &self.progress {
            DeletionProgress::Erasing { erased_by } => {
                ERASING_SERVICES.into_iter().filter(|service| !erased_by.contains(*service)).collect()
            }
            DeletionProgress::Deleted { .. } => Vec::new(),
        }
    }
}

/// Who a key acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHolder {
    Operator,
    TenantAdmin(TenantId),
    TenantReader(TenantId),
    Integration(TenantId),
    Supervisor(TenantId),
    Agent(AgentId),
}

impl KeyHolder {
    pub fn role(&self) -> Role {
        match self {
            KeyHolder::Operator => Role::OperatorAdmin,
            KeyHolder::TenantAdmin(_) => Role::TenantAdmin,
            KeyHolder::TenantReader(_) => Role::TenantReader,
            KeyHolder::Integration(_) => Role::Integration,
            KeyHolder::Supervisor(_) => Role::Supervisor,
            KeyHolder::Agent(_) => Role::Agent,
        }
    }

    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            KeyHolder::TenantAdmin(tenant)
            | KeyHolder::TenantReader(tenant)
            | KeyHolder::Integration(tenant)
            | KeyHolder::Supervisor(tenant) => Some(tenant),
            KeyHolder::Operator | KeyHolder::Agent(_) => None,
        }
    }

    pub fn agent(&self) -> Option<&AgentId> {
        match self {
            KeyHolder::Agent(agent) => Some(agent),
            _ => None,
        }
    }
}

/// A rotated-out secret that still works until `expire_time_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub sha256: String,
    pub expire_time_ms: i64,
}

/// An API key made through the API (its secret only as SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: ApiKeyId,
    pub display_name: String,
    pub holder: KeyHolder,
    pub expire_time_ms: Option<i64>,
    pub create_time_ms: i64,
    pub revoke_time_ms: Option<i64>,
    pub secret_sha256: String,
    pub secret_prefix: String,
    pub previous_secret: Option<PreviousSecret>,
}

/// Every tenant and key, as of `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: i64,
    pub tenants: Vec<TenantRecord>,
    pub keys: Vec<KeyRecord>,
}

/// One administrative change, as the audit keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Assigned by the store, increasing; 0 until stored.
    pub sequence: i64,
    pub tenant: Option<TenantId>,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub before: Option<prost_types::Any>,
    pub after: Option<prost_types::Any>,
    pub time_ms: i64,
}

/// A change to a tenant; `None` leaves the field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantChange {
    pub display_name: Option<String>,
    pub suspended: Option<bool>,
    pub policy: Option<TenantPolicy>,
}

#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// Moves forward with every change (0 before the first).
    async fn revision(&self) -> Result<i64, Error>;

    /// Every tenant and key (revoked ones too) and the revision they are of.
    async fn snapshot(&self) -> Result<Snapshot, Error>;

    /// ALREADY_EXISTS naming the tenant if its id is taken.
    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), Error>;

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>, Error>;

    /// At most `limit` tenants by id, each after `after`; deleted ones (and
    /// ones being deleted) only with `with_deleted`.
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
        with_deleted: bool,
    ) -> Result<Vec<TenantRecord>, Error>;

    /// The tenant after `change` (at `now_ms`); NOT_FOUND if absent.
    async fn update_tenant(&self, tenant: &TenantId, change: &TenantChange, now_ms: i64)
    -> Result<TenantRecord, Error>;

    async fn create_key(&self, key: &KeyRecord) -> Result<(), Error>;

    async fn get_key(&self, key: &ApiKeyId) -> Result<Option<KeyRecord>, Error>;

    /// At most `limit` keys by id, each after `after`, only `tenant`'s if
    /// given.
    async fn list_keys(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, Error>;

    /// The key revoked at `now_ms` (or when it was revoked before);
    /// NOT_FOUND if absent.
    async fn revoke_key(&self, key: &ApiKeyId, now_ms: i64) -> Result<KeyRecord, Error>;

    /// Stores `entry` with the next sequence number; returns it.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, Error>;

    /// At most `limit` audit entries, newest first, each before
    /// `before_sequence`, only `tenant`'s if given.
    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        before_sequence: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error>;

    /// The key with a new current secret, the current one kept as
    /// `previous`; NOT_FOUND if absent, FAILED_PRECONDITION `KEY_REVOKED`
    /// if revoked.
    async fn rotate_key(
        &self,
        key: &ApiKeyId,
        secret_sha256: &str,
        secret_prefix: &str,
        previous_expire_time_ms: i64,
    ) -> Result<KeyRecord, Error>;

    /// Starts deleting the tenant at `now_ms`, in one atomic step with
    /// revoking every key of its roles; the tenant as it is then. Asking
    /// again changes nothing. NOT_FOUND if absent.
    async fn begin_deletion(&self, tenant: &TenantId, now_ms: i64) -> Result<TenantRecord, Error>;

    /// Records that `service` erased its part of a tenant being deleted;
    /// the recording that completes [`ERASING_SERVICES`] marks the tenant
    /// deleted at `now_ms`. Recording again, or after the deletion
    /// completed, changes nothing. NOT_FOUND if absent, FAILED_PRECONDITION
    /// if the tenant is not being deleted.
    async fn record_erasure(&self, tenant: &TenantId, service: &str, now_ms: i64) -> Result<TenantRecord, Error>;

    /// Removes the tenant's audit records except those whose resource is
    /// the tenant itself (`tenants/{tenant}`: its creation, updates,
    /// suspension and deletion, the operator's record of it).
    async fn erase_audit(&self, tenant: &TenantId) -> Result<(), Error>;
}

/// The refusal to record an erasure of a tenant nobody deletes.
pub fn not_being_deleted(tenant: &TenantId) -> Error {
    Error::failed_precondition(format!("tenant `{tenant}` is not being deleted"))
        .with_reason("TENANT_NOT_DELETING")
        .with_resource(switchboard_core::names::tenant_name(tenant))
}

/// The refusal to change or act for a tenant that is deleted or being
/// deleted: NOT_FOUND, as if absent, with reason `TENANT_DELETED`.
pub fn tenant_deleted(tenant: &TenantId) -> Error {
    Error::not_found(switchboard_core::names::tenant_name(tenant)).with_reason("TENANT_DELETED")
}

/// The refusal to rotate a revoked key.
pub fn key_revoked(key: &ApiKeyId) -> Error {
    Error::failed_precondition(format!("`{}` is revoked", api_key_name(key)))
        .with_reason("KEY_REVOKED")
        .with_resource(api_key_name(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_carry_a_checksum_scanners_can_verify() {
        let secret = new_secret();
        assert!(secret.starts_with("sbk_") && secret.len() == 4 + 48 + 1 + 8, "{secret}");
        assert!(has_valid_checksum(&secret));
        let mut tampered = secret.clone();
        tampered.replace_range(5..6, if &secret[5..6] == "0" { "1" } else { "0" });
        assert!(!has_valid_checksum(&tampered));
        assert!(!has_valid_checksum("sbk_short"));
        assert_ne!(new_secret(), secret);
        assert_eq!(secret_prefix(&secret).len(), 12);
    }

    #[test]
    fn key_ids_are_checked() {
        let id = ApiKeyId::generate();
        assert_eq!(parse_api_key_name(&api_key_name(&id), "name").expect("round trip"), id);
        for bad in ["apiKeys/", "apiKeys/k_XYZ", "keys/k_0123456789abcdef", "apiKeys/k_0123456789abcdef0"] {
            assert!(parse_api_key_name(bad, "name").is_err(), "{bad}");
        }
    }
}
