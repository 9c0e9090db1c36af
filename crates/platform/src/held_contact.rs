//! Whether the calling agent holds a contact, as routing says: what an
//! agent may read (a conversation, its customer's history) follows from
//! the contacts it is offered or handling.

use switchboard_core::names::agent_name;
use switchboard_core::{Error, Principal, Role};
use switchboard_proto::common::v1::ContactStatus;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{Assignment, GetAssignmentRequest};
use tonic::Code;
use tonic::transport::Channel;

use crate::grpc::CallContext;
use crate::status::from_status;

/// How the calling agent holds a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Offered to the agent, not yet accepted.
    Offered,
    /// The agent is handling it.
    Answered,
}

/// The contact `contact` (`tenants/{tenant}/contacts/{contact}`) with how
/// the calling agent holds it, asked of routing on the agent's own
/// credential; `None` when the caller is no agent or does not hold it
/// (absent, another agent's, waiting, ended all look the same).
pub async fn held_by_caller(
    routing: &RoutingServiceClient<Channel>,
    call: &CallContext,
    principal: &Principal,
    contact: &str,
) -> Result<Option<(Holding, Assignment)>, Error> {
    let Some(agent) = principal.agent.as_ref().filter(|_| principal.role == Role::Agent) else {
        return Ok(None);
    };
    let request = call.request(GetAssignmentRequest { contact: contact.to_owned() });
    let assignment = match routing.clone().get_assignment(request).await {
        Ok(assignment) => assignment.into_inner(),
        Err(status) if matches!(status.code(), Code::NotFound | Code::PermissionDenied) => return Ok(None),
        Err(status) => return Err(from_status(&status)),
    };
    if assignment.agent != agent_name(agent) {
        return Ok(None);
    }
    let holding = match ContactStatus::try_from(assignment.status) {
        Ok(ContactStatus::Offered) => Holding::Offered,
        Ok(ContactStatus::Answered) => Holding::Answered,
        _ => return Ok(None),
    };
    Ok(Some((holding, assignment)))
}

/// The error for a request naming no contact where an agent must: what the
/// agent's access to `what` hangs on.
pub fn contact_required(field: &str, what: &str) -> Error {
    Error::invalid_field(
        field,
        format!("is required for agent keys: the contact you are offered or handling whose {what} this is"),
    )
}
