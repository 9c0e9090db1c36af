//! The routing service started in process on the in-process bus and
//! in-memory stores, with helpers that publish contact and presence events
//! and read routing events.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prost_types::Duration as ProtoDuration;
use switchboard_core::event::{CONTACTS_TOPIC, PRESENCE_TOPIC, ROUTING_TOPIC, envelope};
use switchboard_core::names::contact_name;
use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_core::{ContactId, TenantId};
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{EventBus, StartFrom, Subscription};
use switchboard_platform::config::TenantPolicyConfig;
use switchboard_platform::service::Service;
use switchboard_proto::common::v1::{Channel, ChannelCapacity, Skill};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{
    Contact, ContactAbandoned, ContactCreated, ContactEvent, CustomerResolved, contact_event,
};
use switchboard_proto::presence::v1::{AgentState, AgentStateChanged, PresenceEvent, presence_event};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetAssignmentRequest, Queue, routing_event};
use switchboard_test_support::{
    RunningService, access_with_keys, access_with_policies, authorized, connect_when_ready, kit, next_routing_event,
    start_service, violated_fields,
};
use tonic::Code;
use tonic::transport::Channel as GrpcChannel;

pub const KEYS: [(&str, &str, Option<&str>, Option<&str>); 6] = [
    ("acme-admin", "tenant_admin", Some("acme"), None),
    ("acme-reader", "tenant_reader", Some("acme"), None),
    ("globex-admin", "tenant_admin", Some("globex"), None),
    ("operator", "operator_admin", None, None),
    ("alice", "agent", None, Some("alice")),
    ("bob", "agent", None, Some("bob")),
];
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Routing {
    pub client: RoutingServiceClient<GrpcChannel>,
    pub bus: MemoryBus,
    pub events: Box<dyn Subscription>,
    pub service: RunningService,
}

impl Routing {
    pub async fn start() -> Routing {
        Routing::start_with(access_with_keys(&KEYS)).await
    }

    /// A routing whose tenants have the operator's `policies` (by tenant id).
    pub async fn start_with_policies(policies: BTreeMap<String, TenantPolicyConfig>) -> Routing {
        Routing::start_with(access_with_policies(&KEYS, policies)).await
    }

    /// A routing whose relay starts rounds at most every `relay_interval_ms`.
    pub async fn start_with_relay_interval(relay_interval_ms: u64) -> Routing {
        let mut config = Config::default();
        config.routing.relay_interval_ms = relay_interval_ms;
        Routing::start_configured(access_with_keys(&KEYS), config).await
    }

    async fn start_with(access: Arc<AccessControl>) -> Routing {
        Routing::start_configured(access, Config::default()).await
    }

    async fn start_configured(access: Arc<AccessControl>, mut config: Config) -> Routing {
        let bus = MemoryBus::new();
        let events = bus.subscribe("test", &[ROUTING_TOPIC], StartFrom::Earliest).await.unwrap();
        config.routing.offer_sweep_interval_ms = 50;
        let mut kit = kit::<switchboard_routing::Routing>(config, Arc::new(bus.clone()), access);
        let routing = switchboard_routing::Routing::in_memory(&mut kit);
        let service = start_service(kit, routing).await;
        let client = RoutingServiceClient::new(connect_when_ready(service.address).await.unwrap());
        Routing { client, bus, events, service }
    }

    pub async fn stop(self) {
        self.service.stop().await;
    }

    pub async fn create_queue(&mut self, queue_id: &str, offer_timeout_seconds: i64) {
        self.create_queue_of("acme", queue_id, offer_timeout_seconds).await.unwrap();
    }

    /// Creates a chat queue of `tenant` as its admin (`{tenant}-admin`).
    pub async fn create_queue_of(
        &mut self,
        tenant: &str,
        queue_id: &str,
        offer_timeout_seconds: i64,
    ) -> Result<Queue, tonic::Status> {
        let queue = Queue {
            channels: vec![Channel::Chat as i32],
            offer_timeout: Some(ProtoDuration { seconds: offer_timeout_seconds, nanos: 0 }),
            ..Queue::default()
        };
        let request =
            CreateQueueRequest { parent: format!("tenants/{tenant}"), queue_id: queue_id.into(), queue: Some(queue) };
        Ok(self.client.create_queue(authorized(&format!("{tenant}-admin"), request)).await?.into_inner())
    }

    /// A routing with queue `support`, agent alice available, and one
    /// contact offered to her; returns the contact's name.
    pub async fn offering_to_alice() -> (Routing, String) {
        let mut routing = Routing::start().await;
        routing.create_queue("support", 30).await;
        routing.agent("alice", AgentState::Available).await;
        let contact = routing.contact("support").await;
        routing.offered().await;
        (routing, contact)
    }

    pub async fn agent(&self, agent: &str, state: AgentState) {
        self.agent_with(agent, state, Vec::new(), 1).await;
    }

    /// Publishes an acme agent's state with skills and chat capacity.
    pub async fn agent_with(&self, agent: &str, state: AgentState, skills: Vec<Skill>, chat_capacity: i32) {
        self.agent_in_raw_state(agent, state as i32, skills, chat_capacity).await;
    }

    /// As [`Routing::agent_with`], with any state number, known or not.
    pub async fn agent_in_raw_state(&self, agent: &str, state: i32, skills: Vec<Skill>, chat_capacity: i32) {
        self.agent_serving(agent, &["acme"], state, skills, chat_capacity).await;
    }

    /// Publishes the state of an agent serving `tenants` (ids).
    pub async fn agent_serving(
        &self,
        agent: &str,
        tenants: &[&str],
        state: i32,
        skills: Vec<Skill>,
        chat_capacity: i32,
    ) {
        let changed = AgentStateChanged {
            agent: format!("agents/{agent}"),
            state,
            tenants: tenants.iter().map(|tenant| format!("tenants/{tenant}")).collect(),
            skills,
            capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: chat_capacity }],
            ..AgentStateChanged::default()
        };
        let event = envelope(
            None,
            agent,
            Payload::Presence(PresenceEvent { kind: Some(presence_event::Kind::StateChanged(changed)) }),
        );
        self.bus.publish(PRESENCE_TOPIC, &event).await.unwrap();
    }

    /// Publishes a new chat contact of acme for `queue`; returns its name.
    pub async fn contact(&self, queue: &str) -> String {
        self.contact_with(queue, 0, now_millis()).await
    }

    pub async fn contact_with(&self, queue: &str, priority: i32, created_ms: i64) -> String {
        self.contact_of(queue, priority, created_ms, "cu_1").await
    }

    /// Publishes a new chat contact of acme's `customer` (an id).
    pub async fn contact_of(&self, queue: &str, priority: i32, created_ms: i64, customer: &str) -> String {
        self.contact_in("acme", queue, priority, created_ms, customer).await
    }

    /// Publishes a new chat contact of `tenant`'s `customer` (ids).
    pub async fn contact_in(
        &self,
        tenant: &str,
        queue: &str,
        priority: i32,
        created_ms: i64,
        customer: &str,
    ) -> String {
        let tenant = TenantId::parse(tenant, "t").unwrap();
        let contact_id = ContactId::generate();
        let contact = Contact {
            name: contact_name(&tenant, &contact_id),
            channel: Channel::Chat as i32,
            queue: format!("tenants/{tenant}/queues/{queue}"),
            customer: if customer.is_empty() {
                String::new()
            } else {
                format!("tenants/{tenant}/customers/{customer}")
            },
            priority,
            create_time: Some(timestamp_from_millis(created_ms)),
            ..Contact::default()
        };
        let created = ContactEvent {
            kind: Some(contact_event::Kind::Created(ContactCreated { contact: Some(contact.clone()) })),
        };
        self.bus
            .publish(CONTACTS_TOPIC, &envelope(Some(&tenant), contact_id.as_str(), Payload::Contact(created)))
            .await
            .unwrap();
        contact.name
    }

    /// Publishes CRM's `CustomerResolved`: acme's `contact` (a name) is
    /// `customer`'s (an id).
    pub async fn customer_resolved(&self, contact: &str, customer: &str) {
        let tenant = TenantId::parse("acme", "t").unwrap();
        let resolved = ContactEvent {
            kind: Some(contact_event::Kind::CustomerResolved(CustomerResolved {
                contact: contact.into(),
                customer: format!("tenants/acme/customers/{customer}"),
            })),
        };
        let subject = contact.rsplit('/').next().unwrap();
        self.bus.publish(CONTACTS_TOPIC, &envelope(Some(&tenant), subject, Payload::Contact(resolved))).await.unwrap();
    }

    pub async fn customer_leaves(&self, contact: &str) {
        let tenant = TenantId::parse("acme", "t").unwrap();
        let left = ContactEvent {
            kind: Some(contact_event::Kind::Abandoned(ContactAbandoned {
                contact: contact.into(),
                ..ContactAbandoned::default()
            })),
        };
        let subject = contact.rsplit('/').next().unwrap();
        self.bus.publish(CONTACTS_TOPIC, &envelope(Some(&tenant), subject, Payload::Contact(left))).await.unwrap();
    }

    pub async fn offered(&mut self) -> switchboard_proto::routing::v1::ContactOffered {
        next_routing_event(&mut self.events, WAIT, |kind| match kind {
            routing_event::Kind::Offered(offered) => Some(offered),
            _ => None,
        })
        .await
        .unwrap()
    }

    pub async fn withdrawn(&mut self) -> switchboard_proto::routing::v1::OfferWithdrawn {
        next_routing_event(&mut self.events, WAIT, |kind| match kind {
            routing_event::Kind::OfferWithdrawn(withdrawn) => Some(withdrawn),
            _ => None,
        })
        .await
        .unwrap()
    }

    pub async fn status(&mut self, contact: &str) -> i32 {
        let request = GetAssignmentRequest { contact: contact.into() };
        self.client.get_assignment(authorized("acme-reader", request)).await.unwrap().into_inner().status
    }
}

pub fn code_of<T: std::fmt::Debug>(outcome: Result<T, tonic::Status>) -> (Code, Vec<String>) {
    let status = outcome.expect_err("the call must fail");
    (status.code(), violated_fields(&status))
}
