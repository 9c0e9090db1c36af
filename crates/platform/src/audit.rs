//! The audit of administrative changes: each API that changes a tenant, a
//! key, a queue, a channel or an agent records who did what to which
//! resource, with the resource before and after, in the credential store
//! (`AccessService.ListAuditRecords` reads it).

use switchboard_core::time::now_millis;
use switchboard_core::{Principal, TenantId};

use crate::auth::AccessControl;
use crate::credentials::AuditEntry;

/// One administrative change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The tenant it is of; `None` for the deployment's own resources.
    pub tenant: Option<TenantId>,
    /// The RPC, e.g. `switchboard.routing.v1.RoutingService/UpdateQueue`.
    pub action: &'static str,
    pub resource: String,
    pub before: Option<prost_types::Any>,
    pub after: Option<prost_types::Any>,
}

impl Change {
    pub fn new(tenant: Option<&TenantId>, action: &'static str, resource: impl Into<String>) -> Change {
        Change { tenant: tenant.cloned(), action, resource: resource.into(), before: None, after: None }
    }

    /// The resource before, as the API message of type `type_name`.
    pub fn before(mut self, type_name: &str, message: &impl prost::Message) -> Change {
        self.before = Some(any_of(type_name, message));
        self
    }

    /// The resource after, as the API message of type `type_name`.
    pub fn after(mut self, type_name: &str, message: &impl prost::Message) -> Change {
        self.after = Some(any_of(type_name, message));
        self
    }
}

/// `message` of the fully qualified type `type_name` as an `Any`.
pub fn any_of(type_name: &str, message: &impl prost::Message) -> prost_types::Any {
    prost_types::Any { type_url: format!("type.googleapis.com/{type_name}"), value: message.encode_to_vec() }
}

impl AccessControl {
    /// Records `change`, made by `principal`, in the audit. The change has
    /// happened: a failure to record it is logged as an error, not undone.
    pub async fn audit(&self, principal: &Principal, change: Change) {
        let Some(store) = self.credentials() else { return };
        let entry = AuditEntry {
            sequence: 0,
            tenant: change.tenant,
            actor: principal.key_name.clone(),
            action: change.action.to_owned(),
            resource: change.resource,
            before: change.before,
            after: change.after,
            time_ms: now_millis(),
        };
        if let Err(error) = store.append_audit(&entry).await {
            tracing::error!(action = entry.action, resource = %entry.resource, error = %error, "an administrative change was not audited");
        }
    }
}
