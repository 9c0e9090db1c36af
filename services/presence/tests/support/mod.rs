//! A presence and a routing service on one in-process bus, and an agent
//! desktop speaking `AgentSession`, for the presence gRPC tests.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::event::{CONTACTS_TOPIC, envelope};
use switchboard_core::names::contact_name;
use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_core::{ContactId, TenantId};
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{EventBus, Subscription};
use switchboard_platform::config::TenantPolicyConfig;
use switchboard_platform::service::Service;
use switchboard_presence::Presence;
use switchboard_proto::common::v1::{Channel, ChannelCapacity, ContactStatus, Skill};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{Contact, ContactCreated, ContactEvent, contact_event};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    AcceptOffer, Agent, AgentSessionRequest, AgentSessionResponse, AgentState, CompleteContact, ContactInProgress,
    CreateAgentRequest, GetAgentRequest, Hello, Offer, OfferRevoked, SetState, StateChanged, agent_session_request,
    agent_session_response, presence_event,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use switchboard_routing::Routing;
use switchboard_test_support::{
    RunningService, access_configured, access_with_keys, access_with_policies, authorized, connect_when_ready, kit,
    start_service,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel as GrpcChannel;
use tonic::{Code, Streaming};

pub const KEYS: [(&str, &str, Option<&str>, Option<&str>); 7] = [
    ("acme-admin", "tenant_admin", Some("acme"), None),
    ("acme-reader", "tenant_reader", Some("acme"), None),
    ("globex-admin", "tenant_admin", Some("globex"), None),
    ("operator", "operator_admin", None, None),
    ("alice", "agent", None, Some("alice")),
    ("bob", "agent", None, Some("bob")),
    ("ghost", "agent", None, Some("ghost")),
];
/// Access control with [`KEYS`] and `configure`d `[auth]`.
pub fn access(configure: impl FnOnce(&mut switchboard_platform::config::AuthConfig)) -> Arc<AccessControl> {
    access_configured(&KEYS, configure)
}

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Cluster {
    pub presence: PresenceServiceClient<GrpcChannel>,
    pub routing: RoutingServiceClient<GrpcChannel>,
    pub bus: MemoryBus,
    services: Vec<RunningService>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(|_| {}).await
    }

    /// A cluster whose presence and routing run with `configure`d settings.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Cluster {
        Cluster::start_with_access(configure, access_with_keys(&KEYS)).await
    }

    /// A cluster whose tenants have the operator's `policies` (by id).
    pub async fn start_with_policies(policies: BTreeMap<String, TenantPolicyConfig>) -> Cluster {
        Cluster::start_with_access(|_| {}, access_with_policies(&KEYS, policies)).await
    }

    /// A cluster whose access is `access` (e.g. with an identity provider).
    pub async fn start_with_access(configure: impl FnOnce(&mut Config), access: Arc<AccessControl>) -> Cluster {
        let bus = MemoryBus::new();
        let mut config = Config::default();
        config.presence.session_grace_ms = 300;
        configure(&mut config);
        let mut routing_kit = kit::<Routing>(config.clone(), Arc::new(bus.clone()), access.clone());
        let routing = Routing::in_memory(&mut routing_kit);
        let routing = start_service(routing_kit, routing).await;
        config.services.routing.url = routing.url();
        let mut presence_kit = kit::<Presence>(config, Arc::new(bus.clone()), access);
        let presence = Presence::in_memory(&mut presence_kit);
        let presence = start_service(presence_kit, presence).await;
        Cluster {
            presence: PresenceServiceClient::new(connect_when_ready(presence.address).await.unwrap()),
            routing: RoutingServiceClient::new(connect_when_ready(routing.address).await.unwrap()),
            bus,
            services: vec![presence, routing],
        }
    }

    pub async fn stop(self) {
        for service in self.services {
            service.stop().await;
        }
    }

    pub async fn create_alice(&mut self) {
        let agent = Agent {
            tenants: vec!["tenants/acme".into()],
            skills: vec![Skill { name: "billing".into(), level: 3, ..Skill::default() }],
            capacities: vec![
                ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 1 },
                ChannelCapacity { channel: Channel::Video as i32, max_concurrent: 1 },
            ],
            ..Agent::default()
        };
        let request = CreateAgentRequest { agent_id: "alice".into(), agent: Some(agent) };
        self.presence.create_agent(authorized("operator", request)).await.unwrap();
    }

    pub async fn open_session(&mut self, key: &str, agent: &str) -> Result<Desktop, tonic::Status> {
        let (requests, outbound) = mpsc::channel(16);
        let hello = Hello { agent: format!("agents/{agent}") };
        requests.send(AgentSessionRequest { kind: Some(agent_session_request::Kind::Hello(hello)) }).await.unwrap();
        let responses = self.presence.agent_session(authorized(key, ReceiverStream::new(outbound))).await?.into_inner();
        Ok(Desktop::new(requests, responses))
    }

    /// Opens `agent`'s session with its own key and makes it AVAILABLE.
    pub async fn available_desktop(&mut self, agent: &str) -> Desktop {
        let mut desktop = self.open_session(agent, agent).await.unwrap();
        assert!(matches!(desktop.next().await, agent_session_response::Kind::SessionStarted(_)));
        assert!(matches!(
            desktop.set_state(AgentState::Available, "").await,
            agent_session_response::Kind::StateChanged(changed) if changed.state == AgentState::Available as i32
        ));
        desktop
    }

    /// Creates bob, serving acme and globex.
    pub async fn create_shared_bob(&mut self) {
        let agent = Agent {
            tenants: vec!["tenants/acme".into(), "tenants/globex".into()],
            capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 1 }],
            ..Agent::default()
        };
        let request = CreateAgentRequest { agent_id: "bob".into(), agent: Some(agent) };
        self.presence.create_agent(authorized("operator", request)).await.unwrap();
    }

    /// Polls until presence records `count` contacts held by `agent`.
    pub async fn wait_for_work(&mut self, agent: &str, count: usize) {
        self.wait_for_agent(agent, |agent| agent.active_contacts.len() == count).await;
    }

    /// Polls until presence records `contact` as answered by `agent`.
    pub async fn wait_for_answered(&mut self, agent: &str, contact: &str) {
        self.wait_for_agent(agent, |agent| {
            agent
                .active_contacts
                .iter()
                .any(|held| held.contact == contact && held.status == ContactStatus::Answered as i32)
        })
        .await;
    }

    async fn wait_for_agent(&mut self, agent: &str, done: impl Fn(&Agent) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let request = GetAgentRequest { name: format!("agents/{agent}") };
            let seen = self.presence.get_agent(authorized("operator", request)).await.unwrap().into_inner();
            if done(&seen) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{agent} never reached the expected state: {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn create_queue(&mut self, queue_id: &str, queue: Queue) {
        let request =
            CreateQueueRequest { parent: "tenants/acme".into(), queue_id: queue_id.into(), queue: Some(queue) };
        self.routing.create_queue(authorized("acme-admin", request)).await.unwrap();
    }

    /// Polls the agent's state until it is `state`, failing after [`WAIT`].
    pub async fn wait_for_state(&mut self, agent: &str, state: AgentState) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.agent_state(agent).await != state as i32 {
            assert!(tokio::time::Instant::now() < deadline, "{agent} never became {state:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn agent_state(&mut self, agent: &str) -> i32 {
        let request = GetAgentRequest { name: format!("agents/{agent}") };
        self.presence.get_agent(authorized("operator", request)).await.unwrap().into_inner().state
    }
}

pub struct Desktop {
    pub requests: mpsc::Sender<AgentSessionRequest>,
    pub responses: Streaming<AgentSessionResponse>,
    /// Responses read while waiting for another kind, handed out first.
    backlog: VecDeque<agent_session_response::Kind>,
}

impl Desktop {
    pub fn new(requests: mpsc::Sender<AgentSessionRequest>, responses: Streaming<AgentSessionResponse>) -> Desktop {
        Desktop { requests, responses, backlog: VecDeque::new() }
    }

    pub async fn send(&self, kind: agent_session_request::Kind) {
        self.requests.send(AgentSessionRequest { kind: Some(kind) }).await.unwrap();
    }

    pub async fn next(&mut self) -> agent_session_response::Kind {
        if let Some(kind) = self.backlog.pop_front() {
            return kind;
        }
        let message = tokio::time::timeout(WAIT, self.responses.message()).await.expect("a response in time");
        message.expect("stream healthy").expect("stream open").kind.expect("kind")
    }

    /// The first response (kept back or new) that `matches`, returning
    /// it; the others read meanwhile are kept for later. Fails after [`WAIT`].
    pub async fn until<T>(&mut self, matches: impl Fn(&agent_session_response::Kind) -> Option<T>) -> T {
        if let Some(index) = self.backlog.iter().position(|kind| matches(kind).is_some()) {
            let kind = self.backlog.remove(index).expect("indexed");
            return matches(&kind).expect("matched");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = tokio::time::timeout(remaining, self.responses.message()).await.expect("a response in time");
            let kind = message.expect("stream healthy").expect("stream open").kind.expect("kind");
            match matches(&kind) {
                Some(found) => return found,
                None => self.backlog.push_back(kind),
            }
        }
    }

    /// Reads responses until the agent is told it is in `state`.
    pub async fn until_state(&mut self, state: AgentState) -> StateChanged {
        self.until(|kind| match kind {
            agent_session_response::Kind::StateChanged(changed) if changed.state == state as i32 => {
                Some(changed.clone())
            }
            _ => None,
        })
        .await
    }

    /// Reads responses until an offer arrives.
    pub async fn until_offer(&mut self) -> Offer {
        self.until(|kind| match kind {
            agent_session_response::Kind::Offer(offer) => Some(offer.clone()),
            _ => None,
        })
        .await
    }

    /// Reads responses until a contact in progress is sent (a reconnect).
    pub async fn until_in_progress(&mut self) -> ContactInProgress {
        self.until(|kind| match kind {
            agent_session_response::Kind::ContactInProgress(in_progress) => Some(in_progress.clone()),
            _ => None,
        })
        .await
    }

    /// Accepts the offer of `contact` and waits for the confirmation.
    pub async fn accept(&mut self, contact: &str) {
        self.send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: contact.to_owned() })).await;
        self.until(|kind| matches!(kind, agent_session_response::Kind::OfferAccepted(_)).then_some(())).await;
    }

    /// Reads responses until an offer is revoked.
    pub async fn until_revoked(&mut self) -> OfferRevoked {
        self.until(|kind| match kind {
            agent_session_response::Kind::OfferRevoked(revoked) => Some(revoked.clone()),
            _ => None,
        })
        .await
    }

    /// Accepts and completes `contact`, reading up to the confirmation of
    /// the completion.
    pub async fn handle(&mut self, contact: &str) {
        self.send(agent_session_request::Kind::AcceptOffer(AcceptOffer { contact: contact.into() })).await;
        self.until(|kind| matches!(kind, agent_session_response::Kind::OfferAccepted(_)).then_some(())).await;
        self.handle_accepted(contact).await;
    }

    /// Completes the accepted `contact`, reading up to the confirmation.
    pub async fn handle_accepted(&mut self, contact: &str) {
        let complete = CompleteContact {
            contact: contact.into(),
            disposition: "done".into(),
            resolved: true,
            notes: String::new(),
        };
        self.send(agent_session_request::Kind::CompleteContact(complete)).await;
        self.until(|kind| matches!(kind, agent_session_response::Kind::ContactCompleted(_)).then_some(())).await;
    }

    /// Asks for a state; returns the reply (a state change or an error),
    /// keeping offers and revocations read meanwhile for later.
    pub async fn set_state(&mut self, state: AgentState, reason: &str) -> agent_session_response::Kind {
        self.send(agent_session_request::Kind::SetState(SetState { state: state as i32, reason: reason.into() })).await;
        self.until(|kind| {
            matches!(kind, agent_session_response::Kind::StateChanged(_) | agent_session_response::Kind::Error(_))
                .then(|| kind.clone())
        })
        .await
    }
}

pub fn status_of<T: std::fmt::Debug>(outcome: Result<T, tonic::Status>) -> (Code, String) {
    let status = outcome.expect_err("the call must fail");
    (status.code(), status.message().to_owned())
}

pub async fn next_state_change(
    events: &mut Box<dyn Subscription>,
) -> switchboard_proto::presence::v1::AgentStateChanged {
    loop {
        let delivery = tokio::time::timeout(WAIT, events.next()).await.expect("in time").expect("delivery");
        events.ack(&delivery).await.unwrap();
        if let Some(Payload::Presence(event)) = delivery.envelope.payload
            && let Some(presence_event::Kind::StateChanged(changed)) = event.kind
        {
            return changed;
        }
    }
}

pub async fn publish_contact(bus: &MemoryBus) -> String {
    publish_contact_to(bus, "support").await
}

/// Publishes a new chat contact of acme for `queue`; returns its name.
pub async fn publish_contact_to(bus: &MemoryBus, queue: &str) -> String {
    publish_contact_of(bus, "acme", queue).await
}

/// Publishes a new chat contact of `tenant` (an id) for `queue`.
pub async fn publish_contact_of(bus: &MemoryBus, tenant: &str, queue: &str) -> String {
    let tenant = TenantId::parse(tenant, "t").unwrap();
    let contact_id = ContactId::generate();
    let contact = Contact {
        name: contact_name(&tenant, &contact_id),
        channel: Channel::Chat as i32,
        queue: format!("tenants/{tenant}/queues/{queue}"),
        create_time: Some(timestamp_from_millis(now_millis())),
        ..Contact::default()
    };
    let created =
        ContactEvent { kind: Some(contact_event::Kind::Created(ContactCreated { contact: Some(contact.clone()) })) };
    bus.publish(CONTACTS_TOPIC, &envelope(Some(&tenant), contact_id.as_str(), Payload::Contact(created)))
        .await
        .unwrap();
    contact.name
}
