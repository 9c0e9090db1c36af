//! Switchboard ingestion: every customer contact enters here. A contact is
//! validated and normalised (`domain`), deduplicated by request id and by
//! provider message id, checked against its routing queue, attached to its
//! CRM customer, stored (`store`) and published on `switchboard.contacts.v1`
//! for routing (`grpc`).
//!
//! Serves `switchboard.ingestion.v1.IngestionService`, `ChannelService` and
//! `ConversationService` (gRPC), the channels' webhooks (HTTP, `webhooks`,
//! on the provider formats of `channels`, into `conversations`) and the web
//! chat's widget and visitors' WebSocket (`webchat`);
//! `CallService` and `cti` webhooks for a PBX's calls (`calls_api`);
//! consumes `switchboard.routing.v1` (group `ingestion-conversations`) to
//! close the conversations of ended contacts, `switchboard.contacts.v1`
//! (group `ingestion-customers`) for the customers CRM resolved after
//! intake, and routing and presence
//! events (group `ingestion-calls`) for the agent and endpoint of calls; runs on timers the outbox
//! relay of contacts and messages, the writer of contacts' publication marks, the connector that
//! sends replies (provider APIs, SMTP) and the poller of e-mail channels' IMAP mailboxes;
//! erases deleted tenants' contacts, channels, conversations and calls.

pub mod calls;
pub mod calls_api;
pub mod channel_settings;
pub mod channels;
pub mod channels_api;
pub mod conversations;
pub mod conversations_api;
pub mod customers;
pub mod domain;
pub mod egress;
mod erasure;
pub mod grpc;
pub mod mail;
pub mod outbox;
mod queue_lookup;
pub mod store;
pub mod webchat;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::event::{CONTACTS_TOPIC, ROUTING_TOPIC};
use switchboard_core::time::now_millis;
use switchboard_platform::bus::Delivery;
use switchboard_platform::group_commit::GroupCommit;
use switchboard_platform::rate_limit::TokenBuckets;
use switchboard_platform::service::ConsumerSpec;
use switchboard_platform::service::{Every, Kit, Service};
use switchboard_platform::ttl_cache::TtlCache;
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::call_service_server::CallServiceServer;
use switchboard_proto::ingestion::v1::channel_service_server::ChannelServiceServer;
use switchboard_proto::ingestion::v1::conversation_service_server::ConversationServiceServer;
use switchboard_proto::ingestion::v1::ingestion_service_server::IngestionServiceServer;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;

use crate::calls::CallStore;
use crate::calls::memory::MemoryCallStore;
use crate::calls::postgres::PostgresCallStore;
use crate::calls_api::{CALLS_CONSUMER, CALLS_TOPICS, CallDesk};
use crate::channels_api::ChannelApi;
use crate::conversations::ConversationStore;
use crate::conversations::intake::{ConversationIntake, MESSAGE_RELAY_DELAY};
use crate::conversations::mailbox::{MailboxPoller, POLL_INTERVAL};
use crate::conversations::memory::MemoryConversationStore;
use crate::conversations::postgres::PostgresConversationStore;
use crate::conversations::replies::Connector;
use crate::conversations_api::ConversationApi;
use crate::customers::CUSTOMERS_CONSUMER;
use crate::egress::Egress;
use crate::erasure::IngestionEraser;
use crate::grpc::IngestionApi;
use crate::outbox::{MARK_INTERVAL, Outbox, RELAY_DELAY};
use crate::store::ContactStore;
use crate::store::channels::{ChannelStore, MemoryChannelStore, PostgresChannelStore};
use crate::store::memory::MemoryContactStore;
use crate::store::postgres::{MIGRATIONS, PostgresContactStore};
use crate::webhooks::Webhooks;

/// The consumer (and group) that closes conversations whose contact ended.
pub const CONVERSATIONS_CONSUMER: &str = "ingestion-conversations";

/// How often the connector looks for messages due to be sent (it is also
/// woken by every reply).
const CONNECTOR_INTERVAL: Duration = Duration::from_secs(1);

/// How often the outbox relay looks for unpublished events.
const RELAY_INTERVAL: Duration = Duration::from_secs(2);

/// The ingestion service on its stores.
pub struct Ingestion {
    pub store: Arc<dyn ContactStore>,
    pub channels: Arc<dyn ChannelStore>,
    pub conversations: Arc<dyn ConversationStore>,
    pub calls: Arc<dyn CallStore>,
}

impl Service for Ingestion {
    const NAME: &'static str = "ingestion";

    fn in_memory(_kit: &mut Kit) -> Ingestion {
        Ingestion {
            store: Arc::new(MemoryContactStore::new()),
            channels: Arc::new(MemoryChannelStore::default()),
            conversations: Arc::new(MemoryConversationStore::default()),
            calls: Arc::new(MemoryCallStore::default()),
        }
    }

    async fn connect(kit: &mut Kit) -> anyhow::Result<Ingestion> {
        let pool = kit.postgres(MIGRATIONS).await?;
        Ok(Ingestion {
            store: Arc::new(PostgresContactStore::new(pool.clone())),
            channels: Arc::new(PostgresChannelStore::new(pool.clone())),
            conversations: Arc::new(PostgresConversationStore::new(pool.clone())),
            calls: Arc::new(PostgresCallStore::new(pool)),
        })
    }

    async fn start(self, kit: &mut Kit) -> anyhow::Result<()> {
        if kit.access().service_call().is_none() {
            tracing::warn!(
                "auth.service_key is not set: channel contacts are routed before crm knows their customer, so the \
                 preferred-agent rule applies to them only once crm has resolved it"
            );
        }
        kit.erase_deleted_tenants(Arc::new(IngestionEraser {
            contacts: Arc::clone(&self.store),
            channels: Arc::clone(&self.channels),
            conversations: Arc::clone(&self.conversations),
            calls: Arc::clone(&self.calls),
        }));
        let routing = RoutingServiceClient::new(kit.channel(&kit.config().services.routing.url)?);
        let crm = CrmServiceClient::new(kit.channel(&kit.config().services.crm.url)?);
        let crm_for_conversations = crm.clone();
        let outbox = Arc::new(Outbox::new(Arc::clone(&self.store), kit.bus()));
        let contact_store = Arc::clone(&self.store);
        let contacts_for_conversations = Arc::clone(&self.store);
        let contacts_for_customers = Arc::clone(&self.store);
        let api = Arc::new(IngestionApi::new(self.store, Arc::clone(&outbox), kit.access(), routing.clone(), crm));
        kit.serve(
            IngestionServiceServer::from_arc(Arc::clone(&api)).max_decoding_message_size(kit.max_message_bytes()),
        );
        let public_base_url = public_base_url(kit.config());
        let egress = Egress::allowing_private(kit.config().ingestion.allow_private_destinations);
        let routing_for_conversations = routing.clone();
        let recent_channels = Arc::new(TtlCache::new(webhooks::CHANNEL_CACHE_TTL));
        let channels = ChannelApi::new(
            Arc::clone(&self.channels),
            Arc::clone(&recent_channels),
            kit.access(),
            routing,
            public_base_url.clone(),
            egress,
        );
        kit.serve(ChannelServiceServer::new(channels).max_decoding_message_size(kit.max_message_bytes()));
        let sends = Arc::new(tokio::sync::Notify::new());
        let conversations = Arc::new(ConversationIntake {
            conversations: Arc::clone(&self.conversations),
            contacts: api,
            bus: kit.bus(),
            sends: Arc::clone(&sends),
            publication_marks: GroupCommit::default(),
            chat_wakeups: Arc::default(),
        });
        let connector = Arc::new(Connector::new(Arc::clone(&conversations), Arc::clone(&self.channels), egress)?);
        let mailboxes = Arc::new(MailboxPoller {
            intake: Arc::clone(&conversations),
            channels: Arc::clone(&self.channels),
            replica: kit.config().instance_id.clone(),
            egress,
        });
        let calls = Arc::new(CallDesk {
            calls: self.calls,
            channels: Arc::clone(&self.channels),
            contacts: Arc::clone(&conversations.contacts),
            contact_store,
            access: kit.access(),
            endpoints_written: std::sync::Mutex::default(),
            http: egress
                .http_client(std::time::Duration::from_secs(5))
                .map_err(|error| anyhow::anyhow!("the decision pusher's {error}"))?,
            egress,
        });
        kit.serve(CallServiceServer::from_arc(Arc::clone(&calls)).max_decoding_message_size(kit.max_message_bytes()));
        let following_calls = Arc::clone(&calls);
        let call_events = ConsumerSpec::new(CALLS_CONSUMER, &CALLS_TOPICS).in_background();
        kit.consume_batches(call_events, move |deliveries: Arc<[Delivery]>| {
            let calls = Arc::clone(&following_calls);
            async move { calls.on_events(&deliveries).await }
        })
        .await?;
        let channels_for_conversations = Arc::clone(&self.channels);
        let webhooks = Webhooks {
            calls,
            channels: self.channels,
            recent_channels: Arc::clone(&recent_channels),
            conversations: Arc::clone(&conversations),
            public_base_url,
            senders: TokenBuckets::per_minute(
                kit.config().ingestion.sender_messages_per_minute,
                kit.config().ingestion.sender_burst,
            ),
        };
        let webhooks = Arc::new(webhooks);
        kit.http(webchat::router(Arc::clone(&webhooks)));
        kit.http(webhooks::router(webhooks));
        let conversation_api = ConversationApi::new(
            Arc::clone(&conversations),
            Arc::clone(&channels_for_conversations),
            kit.access(),
            routing_for_conversations,
            contacts_for_conversations,
            crm_for_conversations,
        );
        kit.serve(ConversationServiceServer::new(conversation_api).max_decoding_message_size(kit.max_message_bytes()));

        // A customer CRM resolved after intake joins the contact's record:
        // a read model, paced as one (it reads every contact event to find
        // the few it needs).
        let resolved_customers = ConsumerSpec::new(CUSTOMERS_CONSUMER, &[CONTACTS_TOPIC]).as_projection();
        kit.consume_batches(resolved_customers, move |deliveries: Arc<[Delivery]>| {
            let store = Arc::clone(&contacts_for_customers);
            async move { customers::attach_resolved_customers(&store, &deliveries).await }
        })
        .await?;

        // A contact routing ended closes its conversation.
        let closing = Arc::clone(&conversations);
        let ended_contacts = ConsumerSpec::new(CONVERSATIONS_CONSUMER, &[ROUTING_TOPIC]).in_background();
        kit.consume_batches(ended_contacts, move |deliveries: Arc<[Delivery]>| {
            let closing = Arc::clone(&closing);
            async move { closing.on_routing_events(&deliveries).await }
        })
        .await?;
        kit.every(Every::new("ingestion-connector", CONNECTOR_INTERVAL).woken_by(sends), move || {
            let connector = Arc::clone(&connector);
            async move { connector.send_due().await.map(|_attempted| ()) }
        });
        kit.every(Every::new("ingestion-mailboxes", POLL_INTERVAL), move || {
            let mailboxes = Arc::clone(&mailboxes);
            async move { mailboxes.poll_all().await.map(|_stored| ()) }
        });
        let marking = Arc::clone(&outbox);
        // Once more at shutdown, so a restart does not republish what was published.
        kit.every(Every::new("ingestion-publication-marks", MARK_INTERVAL).and_at_shutdown(), move || {
            let outbox = Arc::clone(&marking);
            async move { outbox.write_marks().await }
        });
        kit.every(Every::new("ingestion-outbox-relay", RELAY_INTERVAL), move || {
            let (outbox, conversations) = (Arc::clone(&outbox), Arc::clone(&conversations));
            async move {
                outbox.relay_once(now_millis(), RELAY_DELAY).await?;
                conversations.relay_once(MESSAGE_RELAY_DELAY).await.map(|_relayed| ())
            }
        });
        Ok(())
    }
}

/// Where providers reach the webhooks: `ingestion.public_base_url`, else
/// this service's own HTTP address.
pub fn public_base_url(config: &switchboard_platform::Config) -> String {
    if config.ingestion.public_base_url.is_empty() {
        format!("http://{}", config.services.ingestion.http_listen)
    } else {
        config.ingestion.public_base_url.trim_end_matches('/').to_owned()
    }
}
