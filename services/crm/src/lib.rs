//! The CRM service: one customer across every channel. Resolves the
//! identities channels report (phone, e-mail, chat visitor, …) to customers
//! of a tenant, and keeps each customer's timeline of contacts from the
//! contacts and routing events.
//!
//! Serves `switchboard.crm.v1.CrmService` (asking routing, on an agent's
//! own credential, whether it holds a contact of the customer it reads);
//! consumes `switchboard.contacts.v1`
//! and `switchboard.routing.v1` (group `crm`) into timelines, publishing
//! `CustomerResolved` on `switchboard.contacts.v1` for a contact whose
//! customer it resolved from the sender; erases the customers of deleted
//! tenants.

pub mod domain;
pub mod grpc;
pub mod store;

mod consumer;

use std::sync::Arc;

use switchboard_core::event::{CONTACTS_TOPIC, ROUTING_TOPIC};
use switchboard_platform::service::{ConsumerSpec, EraseWith, Kit, Service};
use switchboard_proto::crm::v1::crm_service_server::CrmServiceServer;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;

use crate::store::postgres::MIGRATIONS;
use crate::store::{CrmStore, MemoryCrmStore, PostgresCrmStore};

/// The CRM service on its store.
pub struct Crm {
    pub store: Arc<dyn CrmStore>,
}

impl Service for Crm {
    const NAME: &'static str = "crm";

    fn in_memory(_kit: &mut Kit) -> Crm {
        Crm { store: Arc::new(MemoryCrmStore::new()) }
    }

    async fn connect(kit: &mut Kit) -> anyhow::Result<Crm> {
        let pool = kit.postgres(MIGRATIONS).await?;
        Ok(Crm { store: Arc::new(PostgresCrmStore::new(pool)) })
    }

    async fn start(self, kit: &mut Kit) -> anyhow::Result<()> {
        let routing = RoutingServiceClient::new(kit.channel(&kit.config().services.routing.url)?);
        let api = grpc::CrmApi::new(Arc::clone(&self.store), kit.access(), routing);
        kit.serve(CrmServiceServer::new(api).max_decoding_message_size(kit.max_message_bytes()));
        // A deleted tenant's customers, identities and timelines.
        let customers = Arc::clone(&self.store);
        kit.erase_deleted_tenants(Arc::new(EraseWith(move |tenant| {
            let customers = Arc::clone(&customers);
            async move { customers.erase_tenant(&tenant).await }
        })));
        let timelines = ConsumerSpec::new(consumer::CONSUMER_GROUP, &[CONTACTS_TOPIC, ROUTING_TOPIC]).as_projection();
        kit.consume_batches(timelines, consumer::handler(self.store, kit.bus())).await?;
        Ok(())
    }
}
