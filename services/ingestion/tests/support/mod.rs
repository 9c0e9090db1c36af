//! What the gRPC tests run against: the real ingestion service on in-memory
//! deps, small fake routing and CRM servers, a bus that can be told to
//! fail, and helpers to read events and error details.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::event::CONTACTS_TOPIC;
use switchboard_core::{CustomerId, Error, TenantId, names};
use switchboard_ingestion::Ingestion;
use switchboard_ingestion::store::ContactStore;
use switchboard_platform::Config;
use switchboard_platform::auth::{AccessControl, hash_api_key};
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{EventBus, Pace, RawRecord, Scan, StartFrom, Subscription};
use switchboard_platform::config::{ApiKeyConfig, AuthConfig};
use switchboard_platform::service::Service;
use switchboard_platform::status::to_status;
use switchboard_proto::common::v1::{Channel, ContactStatus, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1::crm_service_server::{CrmService, CrmServiceServer};
use switchboard_proto::crm::v1::*;
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{Contact, CreateContactRequest};
use switchboard_proto::routing::v1::routing_service_server::{RoutingService, RoutingServiceServer};
use switchboard_proto::routing::v1::*;
use switchboard_test_support::{RunningService, kit, start_service_with_http};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;
use tonic::transport::{Channel as GrpcChannel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

pub const ACME_ADMIN_KEY: &str = "acme-admin-key";
pub const ACME_READER_KEY: &str = "acme-reader-key";
pub const GLOBEX_ADMIN_KEY: &str = "globex-admin-key";
pub const OPERATOR_KEY: &str = "operator-key";
pub const ALICE_KEY: &str = "alice-agent-key";
pub const BOB_KEY: &str = "bob-agent-key";

/// The queue of acme that routing knows, accepting every channel.
pub const SUPPORT_QUEUE: &str = "tenants/acme/queues/support";
/// A queue of acme that takes only voice contacts.
pub const VOICE_QUEUE: &str = "tenants/acme/queues/phones";

/// Where providers reach the webhooks (an ingress in front of the test's
/// HTTP server): what Twilio's signatures cover.
pub const PUBLIC_BASE_URL: &str = "https://switchboard.example.com";

/// How long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(5);

fn authorization(request_metadata: &tonic::metadata::MetadataMap) -> String {
    request_metadata.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
}

/// Routing as far as ingestion uses it: known queues, and the status of
/// contacts it has an assignment for.
#[derive(Default)]
pub struct FakeRouting {
    pub queues: Mutex<HashMap<String, Vec<i32>>>,
    pub assignment_status_by_contact: Mutex<HashMap<String, ContactStatus>>,
    /// `agents/{agent}` offered or handling each contact, if any.
    pub assignment_agent_by_contact: Mutex<HashMap<String, String>>,
    /// The `authorization` of every call, in order.
    pub authorizations: Mutex<Vec<String>>,
    /// While set, every call fails as a restarting service's would.
    pub down: AtomicBool,
}

/// The status of a service that is restarting.
fn restarting() -> Status {
    Status::unavailable("connection refused (test)")
}

#[tonic::async_trait]
impl RoutingService for FakeRouting {
    async fn get_queue(&self, request: Request<GetQueueRequest>) -> Result<Response<Queue>, Status> {
        if self.down.load(Ordering::SeqCst) {
            return Err(restarting());
        }
        self.authorizations.lock().unwrap().push(authorization(request.metadata()));
        let name = request.into_inner().name;
        let channels = self.queues.lock().unwrap().get(&name).cloned();
        match channels {
            Some(channels) => Ok(Response::new(Queue { name, channels, ..Queue::default() })),
            None => Err(to_status(&Error::not_found(name))),
        }
    }

    async fn get_assignment(&self, request: Request<GetAssignmentRequest>) -> Result<Response<Assignment>, Status> {
        self.authorizations.lock().unwrap().push(authorization(request.metadata()));
        let contact = request.into_inner().contact;
        let status = self.assignment_status_by_contact.lock().unwrap().get(&contact).copied();
        let agent = self.assignment_agent_by_contact.lock().unwrap().get(&contact).cloned().unwrap_or_default();
        match status {
            Some(status) => {
                Ok(Response::new(Assignment { contact, status: status as i32, agent, ..Assignment::default() }))
            }
            None => Err(to_status(&Error::not_found(contact))),
        }
    }

    async fn create_queue(&self, _: Request<CreateQueueRequest>) -> Result<Response<Queue>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_queues(&self, _: Request<ListQueuesRequest>) -> Result<Response<ListQueuesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_queue(&self, _: Request<UpdateQueueRequest>) -> Result<Response<Queue>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete_queue(&self, _: Request<DeleteQueueRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn accept_offer(&self, _: Request<AcceptOfferRequest>) -> Result<Response<Assignment>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn reject_offer(&self, _: Request<RejectOfferRequest>) -> Result<Response<Assignment>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn complete_contact(&self, _: Request<CompleteContactRequest>) -> Result<Response<Assignment>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn transfer_contact(
        &self,
        _: Request<switchboard_proto::routing::v1::TransferContactRequest>,
    ) -> Result<Response<Assignment>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn request_callback(
        &self,
        _: Request<switchboard_proto::routing::v1::RequestCallbackRequest>,
    ) -> Result<Response<Assignment>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_queue_status(
        &self,
        _: Request<switchboard_proto::routing::v1::GetQueueStatusRequest>,
    ) -> Result<Response<switchboard_proto::routing::v1::QueueStatus>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// CRM as far as ingestion uses it: one customer per (tenant, identity).
#[derive(Default)]
pub struct FakeCrm {
    pub customer_by_identity: Mutex<HashMap<(String, String), String>>,
    pub authorizations: Mutex<Vec<String>>,
    /// While set, every call fails as a restarting service's would.
    pub down: AtomicBool,
}

#[tonic::async_trait]
impl CrmService for FakeCrm {
    async fn resolve_customer(
        &self,
        request: Request<ResolveCustomerRequest>,
    ) -> Result<Response<ResolveCustomerResponse>, Status> {
        if self.down.load(Ordering::SeqCst) {
            return Err(restarting());
        }
        self.authorizations.lock().unwrap().push(authorization(request.metadata()));
        let request = request.into_inner();
        let tenant: TenantId = names::parse_tenant(&request.parent, "parent").map_err(|error| to_status(&error))?;
        let Some(identity) = request.identity else {
            return Err(to_status(&Error::missing_field("identity")));
        };
        let mut customers = self.customer_by_identity.lock().unwrap();
        let key = (tenant.as_str().to_owned(), identity.value.clone());
        let created = !customers.contains_key(&key);
        let name = customers.entry(key).or_insert_with(|| names::customer_name(&tenant, &CustomerId::generate()));
        let customer = Customer { name: name.clone(), identities: vec![identity], ..Customer::default() };
        Ok(Response::new(ResolveCustomerResponse { customer: Some(customer), created }))
    }

    async fn get_customer(&self, _: Request<GetCustomerRequest>) -> Result<Response<Customer>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_customers(
        &self,
        _: Request<ListCustomersRequest>,
    ) -> Result<Response<ListCustomersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_timeline_entries(
        &self,
        _: Request<ListTimelineEntriesRequest>,
    ) -> Result<Response<ListTimelineEntriesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn merge_customers(&self, _: Request<MergeCustomersRequest>) -> Result<Response<Customer>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn add_customer_identity(
        &self,
        _: Request<AddCustomerIdentityRequest>,
    ) -> Result<Response<Customer>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// The in-process bus, with publishing that fails while `failing` is set,
/// or delivers but reports a failure (a lost acknowledgement) while
/// `losing_acks` is set.
#[derive(Clone, Default)]
pub struct FlakyBus {
    pub inner: MemoryBus,
    pub failing: Arc<AtomicBool>,
    pub losing_acks: Arc<AtomicBool>,
}

#[async_trait]
impl EventBus for FlakyBus {
    async fn publish(&self, topic: &str, envelope: &EventEnvelope) -> Result<(), Error> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::unavailable("broker unreachable (test)"));
        }
        self.inner.publish(topic, envelope).await?;
        if self.losing_acks.load(Ordering::SeqCst) {
            return Err(Error::unavailable("delivery report lost (test)"));
        }
        Ok(())
    }

    async fn publish_raw(&self, record: &RawRecord) -> Result<(), Error> {
        self.inner.publish_raw(record).await
    }

    async fn subscribe_paced(
        &self,
        group: &str,
        topics: &[&str],
        start: StartFrom,
        pace: Pace,
    ) -> Result<Box<dyn Subscription>, Error> {
        self.inner.subscribe_paced(group, topics, start, pace).await
    }

    async fn scan(&self, topic: &str, visit: &mut (dyn FnMut(RawRecord) -> Scan + Send)) -> Result<(), Error> {
        self.inner.scan(topic, visit).await
    }

    async fn check(&self) -> Result<(), Error> {
        self.inner.check().await
    }

    async fn flush(&self) -> Result<(), Error> {
        self.inner.flush().await
    }
}

fn auth_config() -> AuthConfig {
    let key = |name: &str, secret: &str, role: &str, tenant: Option<&str>| ApiKeyConfig {
        name: name.to_owned(),
        sha256: hash_api_key(secret),
        role: role.to_owned(),
        tenant: tenant.map(str::to_owned),
        agent: None,
    };
    AuthConfig {
        tenants: vec!["acme".to_owned(), "globex".to_owned()],
        api_keys: vec![
            key("acme-admin", ACME_ADMIN_KEY, "tenant_admin", Some("acme")),
            key("acme-reader", ACME_READER_KEY, "tenant_reader", Some("acme")),
            key("globex-admin", GLOBEX_ADMIN_KEY, "tenant_admin", Some("globex")),
            key("operator", OPERATOR_KEY, "operator_admin", None),
            ApiKeyConfig { agent: Some("alice".to_owned()), ..key("alice", ALICE_KEY, "agent", None) },
            ApiKeyConfig { agent: Some("bob".to_owned()), ..key("bob", BOB_KEY, "agent", None) },
        ],
        // Channel contacts are resolved by CRM from the event here.
        service_key: None,
        rate_limit: Default::default(),
        tenant_policies: Default::default(),
        oidc: None,
    }
}

async fn serve_fake(router: Router, shutdown: CancellationToken) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned()));
    format!("http://{address}")
}

/// Connects, retrying while the server comes up (bounded).
async fn connect(url: String) -> GrpcChannel {
    let endpoint = Endpoint::from_shared(url).unwrap();
    let mut attempts = 0;
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(error) if attempts < 100 => {
                attempts += 1;
                tracing::debug!(%error, attempts, "server not up yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("server never came up: {error}"),
        }
    }
}

/// One ingestion service with its fakes; everything stops when dropped.
pub struct Harness {
    pub client: IngestionServiceClient<GrpcChannel>,
    pub channels: ChannelServiceClient<GrpcChannel>,
    pub conversations: ConversationServiceClient<GrpcChannel>,
    pub calls: switchboard_proto::ingestion::v1::call_service_client::CallServiceClient<GrpcChannel>,
    /// The HTTP server (webhooks, metrics).
    pub http: std::net::SocketAddr,
    pub store: Arc<dyn ContactStore>,
    pub bus: FlakyBus,
    pub routing: Arc<FakeRouting>,
    pub crm: Arc<FakeCrm>,
    pub config: Config,
    events: Box<dyn Subscription>,
    /// Stops the fake routing and CRM servers.
    fakes: CancellationToken,
    service: Option<RunningService>,
}

impl Harness {
    /// The service on in-memory deps.
    pub async fn start() -> Harness {
        Harness::start_with_store(None).await
    }

    /// The service on `store` instead of the in-memory one, if given.
    pub async fn start_with_store(store: Option<Arc<dyn ContactStore>>) -> Harness {
        Harness::start_configured(store, |_| {}).await
    }

    /// The service on in-memory deps with `configure`d settings.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_configured(None, configure).await
    }

    async fn start_configured(store: Option<Arc<dyn ContactStore>>, configure: impl FnOnce(&mut Config)) -> Harness {
        let shutdown = CancellationToken::new();
        let routing = Arc::new(FakeRouting::default());
        routing.queues.lock().unwrap().insert(SUPPORT_QUEUE.to_owned(), Vec::new());
        routing.queues.lock().unwrap().insert(VOICE_QUEUE.to_owned(), vec![Channel::Voice as i32]);
        let crm = Arc::new(FakeCrm::default());
        let routing_router = Server::builder().add_service(RoutingServiceServer::from_arc(Arc::clone(&routing)));
        let crm_router = Server::builder().add_service(CrmServiceServer::from_arc(Arc::clone(&crm)));

        let mut config = Config::default();
        config.services.routing.url = serve_fake(routing_router, shutdown.clone()).await;
        config.services.crm.url = serve_fake(crm_router, shutdown.clone()).await;
        config.auth = auth_config();
        config.ingestion.public_base_url = PUBLIC_BASE_URL.to_owned();
        // The provider stubs and mail server of these tests are on loopback.
        config.ingestion.allow_private_destinations = true;
        configure(&mut config);

        let bus = FlakyBus::default();
        let events = bus.subscribe("ingestion-test", &[CONTACTS_TOPIC], StartFrom::Earliest).await.unwrap();
        let access = AccessControl::from_config(&config.auth).unwrap();
        let mut kit = kit::<Ingestion>(config.clone(), Arc::new(bus.clone()), access);
        let mut service = Ingestion::in_memory(&mut kit);
        if let Some(store) = store {
            service.store = store;
        }
        let store = Arc::clone(&service.store);
        let running = start_service_with_http(kit, service).await;
        let grpc = connect(running.url()).await;
        let client = IngestionServiceClient::new(grpc.clone());
        let channels = ChannelServiceClient::new(grpc.clone());
        let calls = switchboard_proto::ingestion::v1::call_service_client::CallServiceClient::new(grpc.clone());
        let conversations = ConversationServiceClient::new(grpc);
        let http = running.http_address.expect("started with HTTP");
        Harness {
            client,
            channels,
            conversations,
            calls,
            http,
            store,
            bus,
            routing,
            crm,
            config,
            events,
            fakes: shutdown,
            service: Some(running),
        }
    }

    /// The next event on the contacts topic; fails the test if none comes.
    pub async fn next_event(&mut self) -> EventEnvelope {
        let delivery = tokio::time::timeout(PATIENCE, self.events.next()).await.expect("an event").unwrap();
        self.events.ack(&delivery).await.unwrap();
        delivery.envelope
    }

    /// Asserts nothing more was published. Calls publish before they
    /// answer, so the log is complete by now; the short wait only bounds
    /// the read of an empty log.
    pub async fn assert_no_more_events(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(50), self.events.next()).await;
        if let Ok(delivery) = next {
            panic!("unexpected event: {:?}", delivery.map(|delivery| delivery.envelope));
        }
    }

    /// Asserts no tenant has any contact.
    pub async fn assert_store_empty(&self) {
        for tenant in ["acme", "globex"] {
            let tenant = TenantId::parse(tenant, "tenant").unwrap();
            let stored = self.store.list(&tenant, None, 10).await.unwrap();
            assert!(stored.is_empty(), "{tenant} has contacts: {stored:?}");
        }
    }

    /// Stops the service and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await;
        }
        self.fakes.cancel();
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.fakes.cancel();
        if let Some(service) = &self.service {
            service.shutdown.cancel();
        }
    }
}

/// `message` with `authorization: Bearer <key>`.
pub fn authed<T>(message: T, key: &str) -> Request<T> {
    switchboard_test_support::authorized(key, message)
}

/// A valid create request of acme for the support queue.
pub fn create_request(request_id: &str) -> CreateContactRequest {
    CreateContactRequest {
        parent: "tenants/acme".to_owned(),
        contact: Some(Contact {
            channel: Channel::Email as i32,
            from: Some(CustomerIdentity { kind: IdentityKind::Email as i32, value: " Ann@Example.COM ".to_owned() }),
            queue: SUPPORT_QUEUE.to_owned(),
            subject: "order 42".to_owned(),
            body: "where is my order?".to_owned(),
            priority: 5,
            ..Contact::default()
        }),
        request_id: request_id.to_owned(),
    }
}

/// Asserts `status` has `code` and, when given, names `field` in its
/// BadRequest details.
pub fn assert_status(status: &Status, code: Code, field: Option<&str>) {
    assert_eq!(status.code(), code, "{status:?}");
    let Some(field) = field else { return };
    let details = status.get_error_details();
    let fields: Vec<&str> = details
        .bad_request()
        .map(|bad_request| bad_request.field_violations.iter().map(|violation| violation.field.as_str()).collect())
        .unwrap_or_default();
    assert!(fields.contains(&field), "{field} not in {fields:?} of {status:?}");
}

/// Authorizations that reached a fake, deduplicated.
pub fn seen(authorizations: &Mutex<Vec<String>>) -> HashSet<String> {
    authorizations.lock().unwrap().iter().cloned().collect()
}
