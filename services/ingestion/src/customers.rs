//! The customers CRM resolved after intake (`CustomerResolved` on
//! `switchboard.contacts.v1`), written into the contacts' records: a
//! contact taken while CRM could not answer names its customer from then
//! on (`GetContact`, an agent reading the customer's earlier contacts).

use std::sync::Arc;

use switchboard_core::event::{customer_resolved_names, envelope_tenant};
use switchboard_core::{Error, TenantId};
use switchboard_platform::bus::Delivery;
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{ContactEvent, CustomerResolved, contact_event};

use crate::store::ContactStore;

/// The consumer (and group) that writes resolved customers into records.
pub const CUSTOMERS_CONSUMER: &str = "ingestion-customers";

/// Writes the batch's resolved customers; every other event is skipped.
/// Idempotent: a redelivered event finds the customer already there.
pub async fn attach_resolved_customers(store: &Arc<dyn ContactStore>, deliveries: &[Delivery]) -> Result<(), Error> {
    for delivery in deliveries {
        let Some(Payload::Contact(ContactEvent { kind: Some(contact_event::Kind::CustomerResolved(resolved)) })) =
            &delivery.envelope.payload
        else {
            continue;
        };
        let tenant = envelope_tenant(&delivery.envelope)?.ok_or_else(|| Error::missing_field("envelope.tenant"))?;
        attach(store.as_ref(), &tenant, resolved).await?;
    }
    Ok(())
}

async fn attach(store: &dyn ContactStore, tenant: &TenantId, resolved: &CustomerResolved) -> Result<(), Error> {
    let (contact, _) = customer_resolved_names(tenant, resolved)?;
    let attached = store.attach_customer(tenant, &contact, &resolved.customer).await?;
    tracing::info!(tenant = %tenant, contact = %contact, customer = %resolved.customer, attached, "customer resolved after intake");
    Ok(())
}
