//! Who is calling, and what they may touch. The tenant of a tenant-scoped
//! principal comes only from its verified credential, never from a request.

use crate::error::Error;
use crate::ids::{AgentId, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs the deployment: every tenant, agents, configuration.
    OperatorAdmin,
    /// Manages one tenant: queues, contacts, its reports.
    TenantAdmin,
    /// Reads one tenant's data and reports.
    TenantReader,
    /// An agent: its own session and the work offered to it.
    Agent,
    /// A channel adapter or IVR of one tenant: takes contacts in (create,
    /// abandon, transfer, callbacks, call events), resolves customers, and
    /// reads where a contact or queue stands; nothing else.
    Integration,
    /// A supervisor of one tenant: reads the tenant's data and KPIs,
    /// watches its agents and sets their states.
    Supervisor,
    /// Switchboard's own services calling each other with the deployment's
    /// service key: only what one service needs of another (CRM resolving
    /// the sender of a channel's message and saying whom a merged customer
    /// went to, routing saying where a contact stands), never a tenant's
    /// data otherwise.
    /// No API key can have this role.
    Service,
}

impl Role {
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "operator_admin" => Some(Role::OperatorAdmin),
            "tenant_admin" => Some(Role::TenantAdmin),
            "tenant_reader" => Some(Role::TenantReader),
            "agent" => Some(Role::Agent),
            "integration" => Some(Role::Integration),
            "supervisor" => Some(Role::Supervisor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::OperatorAdmin => "operator_admin",
            Role::TenantAdmin => "tenant_admin",
            Role::TenantReader => "tenant_reader",
            Role::Agent => "agent",
            Role::Integration => "integration",
            Role::Supervisor => "supervisor",
            Role::Service => "service",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The name of the API key, for audit logs (never the key itself).
    pub key_name: String,
    pub role: Role,
    /// Set for tenant admins and readers.
    pub tenant: Option<TenantId>,
    /// Set for agents.
    pub agent: Option<AgentId>,
    /// When the credential stops being valid (a JWT's `exp` and the
    /// allowed skew), in ms since the epoch: streams opened with it end
    /// then. `None`: until revoked.
    pub expires_at_ms: Option<i64>,
}

impl Principal {
    fn scoped_to(&self, tenant: &TenantId) -> bool {
        self.tenant.as_ref() == Some(tenant)
    }

    /// May read `tenant`'s data: the operator admin, or the tenant's own
    /// admins, readers and supervisors.
    pub fn authorize_read(&self, tenant: &TenantId) -> Result<(), Error> {
        match self.role {
            Role::OperatorAdmin => Ok(()),
            Role::TenantAdmin | Role::TenantReader | Role::Supervisor if self.scoped_to(tenant) => Ok(()),
            _ => Err(self.denied(tenant, "read", "an operator admin, or its tenant admin, reader or supervisor")),
        }
    }

    /// May take `tenant`'s customers' contacts in (create, abandon,
    /// transfer, book callbacks, report calls, resolve customers): the
    /// operator admin, the tenant's admins and its integrations.
    pub fn authorize_intake(&self, tenant: &TenantId) -> Result<(), Error> {
        match self.role {
            Role::OperatorAdmin => Ok(()),
            Role::TenantAdmin | Role::Integration if self.scoped_to(tenant) => Ok(()),
            _ => {
                Err(self.denied(tenant, "take in contacts of", "an operator admin, or its tenant admin or integration"))
            }
        }
    }

    /// May read where one of `tenant`'s contacts, calls or queues stands:
    /// whoever reads the tenant's data, and its integrations.
    pub fn authorize_intake_read(&self, tenant: &TenantId) -> Result<(), Error> {
        if self.role == Role::Integration && self.scoped_to(tenant) {
            return Ok(());
        }
        self.authorize_read(tenant)
    }

    /// Whether the role acts for exactly one tenant (and needs it).
    pub fn is_tenant_role(role: Role) -> bool {
        matches!(role, Role::TenantAdmin | Role::TenantReader | Role::Integration | Role::Supervisor)
    }

    /// May change `tenant`'s data: the operator admin or the tenant's admin.
    pub fn authorize_write(&self, tenant: &TenantId) -> Result<(), Error> {
        match self.role {
            Role::OperatorAdmin => Ok(()),
            Role::TenantAdmin if self.scoped_to(tenant) => Ok(()),
            _ => Err(self.denied(tenant, "change", "an operator admin or its tenant admin")),
        }
    }

    /// The caller is one of Switchboard's own services (the service key).
    pub fn is_service(&self) -> bool {
        self.role == Role::Service
    }

    pub fn authorize_operator(&self) -> Result<(), Error> {
        if self.role == Role::OperatorAdmin {
            return Ok(());
        }
        Err(Error::permission_denied(format!(
            "key `{}` with role {} may not manage operator resources",
            self.key_name,
            self.role.as_str()
        )))
    }

    /// The principal is the agent `agent` itself.
    pub fn authorize_agent(&self, agent: &AgentId) -> Result<(), Error> {
        if self.role == Role::Agent && self.agent.as_ref() == Some(agent) {
            return Ok(());
        }
        Err(Error::permission_denied(format!("key `{}` does not belong to agent `{agent}`", self.key_name)))
    }

    /// Refuses `what` on `tenant`: a key of another tenant (or of none)
    /// may not access it at all; a key of the tenant lacks the role, which
    /// the message names (`who_may`).
    fn denied(&self, tenant: &TenantId, what: &str, who_may: &str) -> Error {
        let (key, role) = (&self.key_name, self.role.as_str());
        if self.scoped_to(tenant) {
            return Error::permission_denied(format!(
                "key `{key}` with role {role} may not {what} tenant `{tenant}`: only {who_may} may"
            ));
        }
        Error::permission_denied(format!("key `{key}` with role {role} may not access tenant `{tenant}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, tenant: Option<&str>) -> Principal {
        Principal {
            key_name: "k".into(),
            role,
            tenant: tenant.map(|tenant| TenantId::parse(tenant, "t").expect("tenant")),
            agent: None,
            expires_at_ms: None,
        }
    }

    #[test]
    fn tenant_scoped_principals_see_only_their_tenant() {
        let acme = TenantId::parse("acme", "t").expect("acme");
        let globex = TenantId::parse("globex", "t").expect("globex");
        let admin = principal(Role::TenantAdmin, Some("acme"));
        let reader = principal(Role::TenantReader, Some("acme"));
        assert!(admin.authorize_write(&acme).is_ok());
        assert!(admin.authorize_write(&globex).is_err());
        assert!(admin.authorize_read(&globex).is_err());
        assert!(reader.authorize_read(&acme).is_ok());
        let refused = reader.authorize_write(&acme).expect_err("a reader changes nothing");
        assert!(refused.message.contains("may not change tenant `acme`"), "names what it lacks: {}", refused.message);
        let foreign = admin.authorize_read(&globex).expect_err("another tenant");
        assert!(foreign.message.contains("may not access tenant `globex`"), "{}", foreign.message);
        let operator = principal(Role::OperatorAdmin, None);
        assert!(operator.authorize_write(&globex).is_ok());
        let agent = principal(Role::Agent, None);
        assert!(agent.authorize_read(&acme).is_err());
    }

    #[test]
    fn the_service_role_reads_and_writes_no_tenant_and_is_no_key_role() {
        let acme = TenantId::parse("acme", "t").expect("acme");
        let service = principal(Role::Service, None);
        assert!(service.authorize_read(&acme).is_err());
        assert!(service.authorize_write(&acme).is_err());
        assert!(service.authorize_operator().is_err());
        assert_eq!(Role::parse(Role::Service.as_str()), None);
    }
}
