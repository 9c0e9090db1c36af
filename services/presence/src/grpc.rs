//! `switchboard.presence.v1.PresenceService`: agent definitions for the
//! operator, read access for tenants whose work the agent does, and the
//! agent desktop's `AgentSession` stream.

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::names::{agent_name, parse_agent, parse_contact, parse_tenant};
use switchboard_core::time::{millis_from_timestamp, optional_timestamp};
use switchboard_core::{AgentId, Error, Principal, Role, TenantId};
use switchboard_platform::auth::{
    AccessControl, credential_expired, credential_expired_error, credential_withdrawn_error, principal,
};
use switchboard_platform::grpc::CallContext;
use switchboard_platform::pagination::{page, page_request};
use switchboard_platform::status::{IntoStatus, to_status};
use switchboard_proto::common::v1::ContactStatus;
use switchboard_proto::presence::v1::presence_service_server::PresenceService;
use switchboard_proto::presence::v1::{
    Agent, AgentSessionRequest, AgentSessionResponse, AgentStateChanged, ContactInProgress, CreateAgentRequest,
    DeleteAgentRequest, GetAgentRequest, ListAgentsRequest, ListAgentsResponse, Offer, SessionStarted,
    SetAgentStateRequest, UpdateAgentRequest, WatchAgentStatesRequest, agent_session_request, agent_session_response,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::agent_session::{InFlight, Session};
use crate::sessions::{PresenceCore, SessionSender, response};
use crate::store::serves;

/// How long a new stream may take to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const SESSION_BUFFER: usize = 64;

pub struct PresenceApi {
    pub presence: Arc<PresenceCore>,
    pub access: Arc<AccessControl>,
    pub routing: RoutingServiceClient<Channel>,
    pub shutdown: CancellationToken,
}

/// What a principal may see of an agent: a tenant-scoped principal must not
/// learn which other tenants a shared agent serves.
pub(crate) fn redacted_for(principal: &Principal, mut agent: Agent) -> Agent {
    if let Some(tenant) = &principal.tenant {
        let own = switchboard_core::names::tenant_name(tenant);
        agent.tenants.retain(|served| *served == own);
        // Levels for other tenants say whom else the agent serves.
        agent.skills.retain(|skill| skill.tenant.is_empty() || skill.tenant == own);
    }
    agent
}

/// The tenant an agent serves if it serves exactly one: where its changes
/// are audited (a shared agent's are the deployment's).
pub(crate) fn only_tenant(agent: &Agent) -> Option<TenantId> {
    match agent.tenants.as_slice() {
        [tenant] => parse_tenant(tenant, "agent.tenants").ok(),
        _ => None,
    }
}

fn calling_agent(principal: &Principal) -> Result<AgentId, Error> {
    match (&principal.role, &principal.agent) {
        (Role::Agent, Some(agent)) => Ok(agent.clone()),
        _ => Err(Error::permission_denied(format!("key `{}` is not an agent key", principal.key_name))),
    }
}

impl PresenceApi {
    /// The agent as `principal` may see it, with its live state and the
    /// work it holds (a tenant-scoped principal sees only its own tenant's).
    pub(crate) async fn as_seen_by(
        &self,
        principal: &Principal,
        agent: Agent,
        agent_id: &AgentId,
    ) -> Result<Agent, Error> {
        let mut agent = redacted_for(principal, agent);
        let live = self.presence.live.get_state(agent_id).await?;
        agent.state = live.state as i32;
        agent.state_time = optional_timestamp(live.since_ms);
        agent.state_reason = live.reason;
        agent.wrap_up_end_time = optional_timestamp(live.wrap_up_until_ms);
        let mut contacts = self.presence.live.active_contacts(agent_id).await?;
        if let Some(tenant) = &principal.tenant {
            contacts.retain(|held| parse_contact(&held.contact, "contact").is_ok_and(|(owner, _)| owner == *tenant));
        }
        agent.active_contacts = contacts;
        Ok(agent)
    }

    /// The agent, if the principal may see it: the operator, the agent
    /// itself, or a tenant principal of a tenant the agent serves. Anyone
    /// else gets NOT_FOUND, as if it did not exist.
    pub(crate) async fn visible_agent(&self, principal: &Principal, agent_id: &AgentId) -> Result<Agent, Error> {
        let not_found = || Error::not_found(agent_name(agent_id));
        let agent = self.presence.agents.get_agent(agent_id).await?.ok_or_else(not_found)?;
        let visible = match principal.role {
            Role::OperatorAdmin => true,
            Role::Agent => principal.agent.as_ref() == Some(agent_id),
            Role::TenantAdmin | Role::TenantReader | Role::Supervisor => {
                principal.tenant.as_ref().is_some_and(|tenant| serves(&agent, tenant))
            }
            Role::Integration | Role::Service => false,
        };
        if !visible {
            return Err(not_found());
        }
        self.as_seen_by(principal, agent, agent_id).await
    }

    /// The tenant a listing or watch is limited to: the requested one for
    /// the operator, always its own for a tenant principal (which may not
    /// ask for another); agents may not list.
    pub(crate) fn tenant_filter(&self, principal: &Principal, requested: &str) -> Result<Option<TenantId>, Error> {
        let requested_tenant = (!requested.is_empty()).then(|| parse_tenant(requested, "tenant")).transpose()?;
        let tenant = match principal.role {
            Role::OperatorAdmin => requested_tenant,
            Role::TenantAdmin | Role::TenantReader | Role::Supervisor => {
                let own = principal.tenant.clone().ok_or_else(|| Error::permission_denied("key has no tenant"))?;
                if let Some(requested) = &requested_tenant {
                    self.access.authorize_read(principal, requested)?;
                }
                Some(own)
            }
            Role::Agent | Role::Integration | Role::Service => {
                return Err(Error::permission_denied(format!(
                    "key `{}` with role {} may not list or watch agents",
                    principal.key_name,
                    principal.role.as_str()
                )));
            }
        };
        if let Some(tenant) = &tenant {
            self.access.require_readable(tenant)?;
        }
        Ok(tenant)
    }

    async fn list(&self, principal: Principal, request: ListAgentsRequest) -> Result<ListAgentsResponse, Error> {
        let tenant = self.tenant_filter(&principal, &request.tenant)?;
        let list = format!("presence.ListAgents {}", tenant.as_ref().map_or("*", TenantId::as_str));
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let agents = self.presence.agents.list_agents(tenant.as_ref(), &page_request).await?;
        let (agents, next_page_token) =
            page(agents, &page_request, |agent| agent.name.trim_start_matches("agents/").to_owned());
        let mut with_state = Vec::with_capacity(agents.len());
        for agent in agents {
            let agent_id = parse_agent(&agent.name, "name")?;
            with_state.push(self.as_seen_by(&principal, agent, &agent_id).await?);
        }
        Ok(ListAgentsResponse { agents: with_state, next_page_token })
    }
}

#[tonic::async_trait]
impl PresenceService for PresenceApi {
    async fn create_agent(&self, request: Request<CreateAgentRequest>) -> Result<Response<Agent>, Status> {
        let principal = principal(&request)?;
        self.create(principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn get_agent(&self, request: Request<GetAgentRequest>) -> Result<Response<Agent>, Status> {
        let principal = principal(&request)?;
        let outcome = async {
            let agent_id = parse_agent(&request.get_ref().name, "name")?;
            self.visible_agent(&principal, &agent_id).await
        };
        outcome.await.into_status().map(Response::new)
    }

    async fn list_agents(&self, request: Request<ListAgentsRequest>) -> Result<Response<ListAgentsResponse>, Status> {
        let principal = principal(&request)?;
        self.list(principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn delete_agent(&self, request: Request<DeleteAgentRequest>) -> Result<Response<()>, Status> {
        let principal = principal(&request)?;
        self.delete(principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn update_agent(&self, request: Request<UpdateAgentRequest>) -> Result<Response<Agent>, Status> {
        let principal = principal(&request)?;
        self.update(principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn set_agent_state(&self, request: Request<SetAgentStateRequest>) -> Result<Response<Agent>, Status> {
        let principal = principal(&request)?;
        self.force_state(principal, request.into_inner()).await.into_status().map(Response::new)
    }

    type WatchAgentStatesStream = ReceiverStream<Result<AgentStateChanged, Status>>;

    async fn watch_agent_states(
        &self,
        request: Request<WatchAgentStatesRequest>,
    ) -> Result<Response<Self::WatchAgentStatesStream>, Status> {
        let principal = principal(&request)?;
        self.watch(principal, request.into_inner()).await.into_status().map(Response::new)
    }

    type AgentSessionStream = ReceiverStream<Result<AgentSessionResponse, Status>>;

    async fn agent_session(
        &self,
        request: Request<Streaming<AgentSessionRequest>>,
    ) -> Result<Response<Self::AgentSessionStream>, Status> {
        let principal = principal(&request)?;
        let agent_id = calling_agent(&principal).into_status()?;
        let call_context = CallContext::from_metadata(request.metadata());
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| to_status(&Error::invalid_field("hello", "the first message must arrive within 10 s")))??;
        let Some(AgentSessionRequest { kind: Some(agent_session_request::Kind::Hello(hello)) }) = first else {
            return Err(to_status(&Error::invalid_field("hello", "the first message must be `hello`")));
        };
        let hello_agent = parse_agent(&hello.agent, "hello.agent").into_status()?;
        principal.authorize_agent(&hello_agent).into_status()?;
        let agent = self.presence.agents.get_agent(&agent_id).await.into_status()?;
        if agent.is_none() {
            return Err(to_status(&Error::not_found(agent_name(&agent_id))));
        }
        let live = self.presence.live.get_state(&agent_id).await.into_status()?;

        let (sender, receiver) = mpsc::channel(SESSION_BUFFER);
        let session_id = uuid_v4();
        let closed = self.presence.register(&agent_id, &session_id, sender.clone());
        self.presence.live.claim_session(&agent_id, &session_id, self.presence.lease_until()).await.into_status()?;
        tracing::info!(agent = %agent_id, session = %session_id, "agent session started");
        let started =
            SessionStarted { agent: agent_name(&agent_id), session_id: session_id.clone(), state: live.state as i32 };
        let _ = sender.send(Ok(response(agent_session_response::Kind::SessionStarted(started)))).await;

        let session = Session {
            closed: closed.clone(),
            presence: self.presence.clone(),
            routing: self.routing.clone(),
            call_context,
            agent_id: agent_id.clone(),
            sender,
        };
        let access = Arc::clone(&self.access);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            // In the task, not before the response: the stream must be
            // handed to the client before more than its buffer is sent.
            resend_work(&session.presence, &session.agent_id, &session.sender).await;
            let mut in_flight = InFlight::default();
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = closed.cancelled() => break,
                    () = credential_expired(&principal) => {
                        // The desktop signs in again and reconnects within
                        // the grace period, keeping its work.
                        let _ = session.sender.try_send(Err(to_status(&credential_expired_error())));
                        break;
                    }
                    () = access.credential_withdrawn(&principal) => {
                        let _ = session.sender.try_send(Err(to_status(&credential_withdrawn_error())));
                        break;
                    }
                    () = in_flight.next_finished() => continue,
                    message = inbound.message(), if in_flight.has_room() => message,
                };
                match message {
                    Ok(Some(message)) => {
                        let session = session.clone();
                        in_flight
                            .start(message, move |message| Box::pin(async move { session.handle(message).await }))
                            .await;
                    }
                    Ok(None) => break,
                    Err(status) => {
                        if let Some(refusal) = refusal_of_inbound(&status) {
                            // The desktop sent something unusable: end the
                            // stream with a status that says so, not OK.
                            tracing::info!(agent = %session.agent_id, code = ?refusal.code(), "agent session sent a bad message, ending it");
                            let _ = session.sender.try_send(Err(refusal));
                        } else {
                            tracing::info!(agent = %session.agent_id, status = ?status.message(), "agent session broke");
                        }
                        break;
                    }
                }
            }
            // Decisions already sent are carried out, as if the stream had
            // stayed open until they were answered.
            in_flight.drain().await;
            // No longer renewed, the session's lease runs out after the grace
            // period unless the agent reconnects (on any replica) first.
            if session.presence.unregister(&session.agent_id, &session_id) {
                tracing::info!(agent = %session.agent_id, session = %session_id, "agent session ended, grace period starts");
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// The status that ends a session whose inbound stream failed because of
/// what the desktop sent: a message that is not valid protobuf
/// (INVALID_ARGUMENT, from the codec) or one over the size limit (tonic's
/// OUT_OF_RANGE, answered as RESOURCE_EXHAUSTED). `None` when the stream
/// broke for another reason (the desktop went away).
fn refusal_of_inbound(status: &Status) -> Option<Status> {
    match status.code() {
        tonic::Code::InvalidArgument => Some(status.clone()),
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            let error = Error::new(switchboard_core::ErrorCode::ResourceExhausted, status.message())
                .with_reason(switchboard_core::error::MESSAGE_TOO_LARGE);
            Some(to_status(&error))
        }
        _ => None,
    }
}

/// Sends a new session the work its agent holds: offers still ringing, and
/// contacts answered and not completed, so a desktop that reconnects after
/// a crash or a presence restart sees its work again. Best effort: the
/// session stays open if the work cannot be read.
async fn resend_work(presence: &PresenceCore, agent_id: &AgentId, sender: &SessionSender) {
    let held = match presence.live.active_contacts(agent_id).await {
        Ok(held) => held,
        Err(error) => {
            tracing::warn!(agent = %agent_id, error = %error, "could not read the agent's work to send it again");
            return;
        }
    };
    let now = presence.clock.now_millis();
    for held in held {
        let kind = if held.status == ContactStatus::Answered as i32 {
            agent_session_response::Kind::ContactInProgress(ContactInProgress {
                contact: held.contact,
                queue: held.queue,
                channel: held.channel,
                customer: held.customer,
                subject: held.subject,
                answer_time: held.answer_time,
                session_url: held.session_url,
                conversation: held.conversation,
            })
        } else if held.expire_time.as_ref().is_some_and(|expire| millis_from_timestamp(expire) > now) {
            agent_session_response::Kind::Offer(Offer {
                contact: held.contact,
                queue: held.queue,
                channel: held.channel,
                customer: held.customer,
                expire_time: held.expire_time,
                subject: held.subject,
                callback_number: held.callback_number,
                session_url: held.session_url,
                conversation: held.conversation,
            })
        } else {
            continue;
        };
        let ringing = match &kind {
            agent_session_response::Kind::Offer(offer) => Some(offer.contact.clone()),
            _ => None,
        };
        if sender.send(Ok(response(kind))).await.is_err() {
            return;
        }
        if let Some(contact) = ringing
            && let Err(error) = presence.live.mark_offer_seen(agent_id, &contact).await
        {
            tracing::warn!(agent = %agent_id, error = %error, "could not record that the offer was seen");
        }
    }
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}
