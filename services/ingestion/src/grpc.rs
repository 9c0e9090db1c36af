//! `switchboard.ingestion.v1.IngestionService`: validate, authorize, dedupe,
//! check the queue with routing, resolve the customer with CRM, store,
//! publish.
//!
//! Outbox by retry: a contact is stored (unpublished, with the id of its
//! event already minted) before its event is published, and marked
//! published only after the bus acknowledged the event. If publishing fails
//! the call answers UNAVAILABLE; the client retries with the same
//! `request_id`, finds the stored contact and publishes it then. Abandons
//! work the same way. So every event reaches the bus at least once, and
//! every copy (a retry after a lost acknowledgement, or racing an in-flight
//! call) carries the same event id and occurred-at, which is what consumers
//! dedupe on.

use std::sync::Arc;

use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_core::{ContactId, Error, ErrorCode, Principal, TenantId, names};
use switchboard_platform::auth::{AccessControl, principal};
use switchboard_platform::grpc::CallContext;
use switchboard_platform::pagination::{page_bounded, page_request};
use switchboard_platform::status::{IntoStatus, from_status};
use switchboard_proto::common::v1::{Channel, ContactStatus};
use switchboard_proto::crm::v1::ResolveCustomerRequest;
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::ingestion_service_server::IngestionService;
use switchboard_proto::ingestion::v1::{
    AbandonContactRequest, Contact, CreateContactRequest, GetContactRequest, ListContactsRequest, ListContactsResponse,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{GetAssignmentRequest, GetQueueRequest};
use tonic::transport::Channel as GrpcChannel;
use tonic::{Code, Request, Response, Status};

use crate::domain::{ValidatedContact, validate_abandon_reason, validate_create_contact};
use crate::outbox::Outbox;
use crate::queue_lookup::QueueLookups;
use crate::store::{Abandonment, ContactRecord, ContactStore, InsertOutcome, mint_event_id};

/// How long a create waits for routing's queue check or CRM's customer
/// resolution before it goes on without them.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a downstream call failed because the service could not answer
/// (restarting, unreachable, too slow), not because of the request.
fn is_downstream_outage(error: &Error) -> bool {
    error.code == ErrorCode::Unavailable
}

/// The ingestion API over a store, the bus, and clients of routing and CRM.
pub struct IngestionApi {
    store: Arc<dyn ContactStore>,
    outbox: Arc<Outbox>,
    access: Arc<AccessControl>,
    routing: RoutingServiceClient<GrpcChannel>,
    crm: CrmServiceClient<GrpcChannel>,
    queues: QueueLookups,
}

impl IngestionApi {
    /// The tenant exists and takes contacts: not suspended, not deleted.
    pub(crate) fn require_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        self.access.require_tenant(tenant)
    }

    pub fn new(
        store: Arc<dyn ContactStore>,
        outbox: Arc<Outbox>,
        access: Arc<AccessControl>,
        routing: RoutingServiceClient<GrpcChannel>,
        crm: CrmServiceClient<GrpcChannel>,
    ) -> IngestionApi {
        IngestionApi { store, outbox, access, routing, crm, queues: QueueLookups::default() }
    }

    async fn create(
        &self,
        principal: &Principal,
        call: &CallContext,
        request: CreateContactRequest,
    ) -> Result<Contact, Error> {
        // The caller's right first: a key that may not take the tenant's
        // contacts learns nothing about what a valid request looks like (a
        // malformed parent is the validation's to report).
        if let Ok(tenant) = names::parse_tenant(&request.parent, "parent") {
            self.access.authorize_intake(principal, &tenant)?;
        }
        let validated = validate_create_contact(&request)?;
        // Looked up before CRM is asked: a request id reused with another
        // body is refused without resolving (so creating) its sender.
        if let Some(stored) = self.stored_already(&validated).await? {
            return Ok(stored);
        }
        let customer = self.check_downstream(call, &validated).await?;
        self.admit(validated, customer, SameRequest::SameBody, now_millis()).await
    }

    /// The queue's check with routing and the customer's name from CRM.
    /// Intake stays open while routing or CRM restarts: what they cannot
    /// answer now is settled downstream (routing routes the contact on its
    /// queue's settings, CRM resolves the sender from the event).
    async fn check_downstream(&self, call: &CallContext, validated: &ValidatedContact) -> Result<String, Error> {
        let tenant = &validated.tenant;
        match self.check_queue(call, validated).await {
            Err(error) if is_downstream_outage(&error) => {
                tracing::warn!(tenant = %tenant, error = %error, "routing unreachable, queue not checked at intake");
            }
            outcome => outcome?,
        }
        match self.resolve_customer(call, validated).await {
            Err(error) if is_downstream_outage(&error) => {
                tracing::warn!(tenant = %tenant, error = %error, "crm unreachable, customer resolved from the event later");
                Ok(String::new())
            }
            outcome => outcome,
        }
    }

    /// The contact of a conversation a channel's webhook opened: the
    /// provider's signature, checked with the channel's secret,
    /// authenticated it for the channel's tenant; the channel's queue was
    /// checked when the channel was saved (routing routes a contact of a
    /// deleted queue on defaults); CRM resolves the sender, asked on the
    /// service key (or from the event without one). The request id names the conversation, so a retry returns the
    /// conversation's contact whatever message the retry carries.
    pub async fn create_for_conversation(&self, request: CreateContactRequest) -> Result<Contact, Error> {
        self.create_arrived(request, now_millis()).await
    }

    /// [`IngestionApi::create_for_conversation`] for a contact whose
    /// customer arrived at `arrived_ms` (a call that ended in the IVR: its
    /// wait is the time it spent there); never later than now.
    pub async fn create_arrived(&self, request: CreateContactRequest, arrived_ms: i64) -> Result<Contact, Error> {
        let validated = validate_create_contact(&request)?;
        self.access.require_tenant(&validated.tenant)?;
        // Resolved before routing sees the contact, its customer's last
        // agent is preferred whatever channel that agent served them on.
        // Any failure leaves it to CRM, from the event: the customer's
        // message is taken whatever CRM answers.
        let customer = match self.access.service_call() {
            Some(service) => self.resolve_customer(&service, &validated).await.unwrap_or_else(|error| {
                tracing::warn!(tenant = %validated.tenant, error = %error, "customer not resolved at intake, crm resolves it from the event");
                String::new()
            }),
            None => String::new(),
        };
        // A retry's insert finds the stored contact and replays it.
        self.admit(validated, customer, SameRequest::SameKey, arrived_ms.min(now_millis())).await
    }

    /// The contact stored for this request already (same request id, or
    /// the provider's redelivery of the same message), published if an
    /// earlier call could not.
    async fn stored_already(&self, validated: &ValidatedContact) -> Result<Option<Contact>, Error> {
        let tenant = &validated.tenant;
        if let Some(existing) = self.store.find_by_request_id(tenant, &validated.request_id).await? {
            check_same_request(&existing, &validated.contact, &validated.request_id)?;
            tracing::info!(
                tenant = %tenant,
                contact = %existing.contact_id,
                request_id = %validated.request_id,
                "create retried, returning the stored contact"
            );
            return self.replay_created(existing).await.map(Some);
        }
        let provider_message_id = &validated.contact.provider_message_id;
        let by_provider_message_id =
            self.store.find_by_provider_message_id(tenant, validated.contact.channel, provider_message_id).await?;
        if let Some(existing) = by_provider_message_id {
            tracing::info!(
                tenant = %tenant,
                contact = %existing.contact_id,
                provider_message_id = %provider_message_id,
                "provider redelivered a contact, returning the stored one"
            );
            return self.replay_created(existing).await.map(Some);
        }
        Ok(None)
    }

    /// Stores the contact of `validated` for `customer` and publishes it.
    async fn admit(
        &self,
        validated: ValidatedContact,
        customer: String,
        same: SameRequest,
        arrived_ms: i64,
    ) -> Result<Contact, Error> {
        let tenant = &validated.tenant;
        let contact_id = ContactId::generate();
        let requested = validated.contact.clone();
        let mut contact = validated.contact;
        contact.name = names::contact_name(tenant, &contact_id);
        contact.customer = customer;
        contact.create_time = Some(timestamp_from_millis(arrived_ms));
        let record = ContactRecord {
            tenant: tenant.clone(),
            contact_id,
            request_id: validated.request_id,
            contact,
            created_event_id: mint_event_id(),
            created_published: false,
            abandonment: None,
        };
        if let InsertOutcome::Existing(existing) = self.store.insert(&record).await? {
            // A retry, or a concurrent call with the same key, stored it first.
            if existing.request_id == record.request_id && same == SameRequest::SameBody {
                check_same_request(&existing, &requested, &record.request_id)?;
            }
            tracing::info!(
                tenant = %existing.tenant,
                contact = %existing.contact_id,
                request_id = %record.request_id,
                "create repeated, returning the stored contact"
            );
            return self.replay_created(*existing).await;
        }
        self.outbox.publish_created(&record).await?;
        tracing::info!(
            tenant = %record.tenant,
            contact = %record.contact_id,
            queue = %record.contact.queue,
            channel = channel_label(record.channel()),
            request_id = %record.request_id,
            "contact created"
        );
        Ok(record.contact)
    }

    /// A create that hit a stored contact: publish it if an earlier call
    /// could not, then answer with it.
    async fn replay_created(&self, existing: ContactRecord) -> Result<Contact, Error> {
        if !existing.created_published {
            self.outbox.publish_created(&existing).await?;
        }
        Ok(existing.contact)
    }

    /// The queue must exist (routing answers with the caller's own
    /// credential, so a key that may not see it gets routing's refusal) and
    /// accept the contact's channel.
    async fn check_queue(&self, call: &CallContext, validated: &ValidatedContact) -> Result<(), Error> {
        let queue_name = &validated.contact.queue;
        // The caller may write to the queue's tenant (checked before), so it
        // may read the queue: routing's answer to another caller of that
        // tenant holds for it too.
        if let Some(channels) = self.queues.channels(queue_name) {
            return accepts_channel(queue_name, &channels, validated.contact.channel);
        }
        let mut request = call.request(GetQueueRequest { name: queue_name.clone() });
        request.set_timeout(LOOKUP_TIMEOUT);
        let queue = match self.routing.clone().get_queue(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => {
                return Err(Error::not_found(queue_name.clone()).with_field_violation("contact.queue", "no such queue"));
            }
            Err(status) => {
                tracing::warn!(
                    tenant = %validated.tenant,
                    queue = %queue_name,
                    code = ?status.code(),
                    message = status.message(),
                    "routing refused the queue lookup"
                );
                return Err(rename_fields(from_status(&status), "name", "contact.queue"));
            }
        };
        self.queues.remember(queue_name, queue.channels.clone());
        accepts_channel(queue_name, &queue.channels, validated.contact.channel)
    }

    /// Whether routing says `contact` has ended (completed, abandoned or
    /// ended unanswered), asked with the service key; false when it cannot
    /// say (no service key, routing unreachable): the routing events that
    /// close its conversation settle it then.
    pub async fn contact_ended(&self, tenant: &TenantId, contact: &ContactId) -> bool {
        let Some(service) = self.access.service_call() else { return false };
        let mut request = service.request(GetAssignmentRequest { contact: names::contact_name(tenant, contact) });
        request.set_timeout(LOOKUP_TIMEOUT);
        match self.routing.clone().get_assignment(request).await {
            Ok(assignment) => assignment.into_inner().end_time.is_some(),
            Err(status) => {
                tracing::debug!(tenant = %tenant, contact = %contact, code = ?status.code(), "routing could not say whether the contact ended");
                false
            }
        }
    }

    /// The customer name CRM knows the contact's sender by (creating the
    /// customer if it is new).
    async fn resolve_customer(&self, call: &CallContext, validated: &ValidatedContact) -> Result<String, Error> {
        let mut request = call.request(ResolveCustomerRequest {
            parent: names::tenant_name(&validated.tenant),
            identity: validated.contact.from.clone(),
            display_name: String::new(),
        });
        request.set_timeout(LOOKUP_TIMEOUT);
        let response = match self.crm.clone().resolve_customer(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(
                    tenant = %validated.tenant,
                    code = ?status.code(),
                    message = status.message(),
                    "crm could not resolve the customer"
                );
                return Err(rename_fields(from_status(&status), "identity", "contact.from"));
            }
        };
        let Some(customer) = response.customer else {
            return Err(Error::internal("crm resolved no customer"));
        };
        // Never attach another tenant's customer, whatever CRM answered.
        let (customer_tenant, _) = names::parse_customer(&customer.name, "customer.name")
            .map_err(|error| Error::internal(format!("crm answered a malformed customer name: {error}")))?;
        if customer_tenant != validated.tenant {
            tracing::error!(
                tenant = %validated.tenant,
                customer_tenant = %customer_tenant,
                "crm answered a customer of another tenant"
            );
            return Err(Error::internal("crm answered a customer of another tenant"));
        }
        Ok(customer.name)
    }

    async fn get(&self, principal: &Principal, request: GetContactRequest) -> Result<Contact, Error> {
        let (tenant, contact_id) = names::parse_contact(&request.name, "name")?;
        self.access.authorize_intake_read(principal, &tenant)?;
        let record = self.store.get(&tenant, &contact_id).await?;
        record.map(|record| record.contact).ok_or_else(|| Error::not_found(request.name))
    }

    async fn list(&self, principal: &Principal, request: ListContactsRequest) -> Result<ListContactsResponse, Error> {
        let tenant = names::parse_tenant(&request.parent, "parent")?;
        self.access.authorize_read(principal, &tenant)?;
        let list = format!("ingestion.ListContacts {}", request.parent);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        // One more than the page, so `page` knows whether another follows.
        let records = self.store.list(&tenant, page_request.after.as_deref(), page_request.size + 1).await?;
        let (records, next_page_token) = page_bounded(
            records,
            &page_request,
            |record: &ContactRecord| record.contact_id.as_str().to_owned(),
            |record| prost::Message::encoded_len(&record.contact),
        );
        Ok(ListContactsResponse {
            contacts: records.into_iter().map(|record| record.contact).collect(),
            next_page_token,
        })
    }

    async fn abandon(
        &self,
        principal: &Principal,
        call: &CallContext,
        request: AbandonContactRequest,
    ) -> Result<Contact, Error> {
        let (tenant, contact_id) = names::parse_contact(&request.name, "name")?;
        validate_abandon_reason(&request.reason)?;
        self.access.authorize_intake(principal, &tenant)?;
        let Some(record) = self.store.get(&tenant, &contact_id).await? else {
            return Err(Error::not_found(request.name));
        };
        if record.abandonment.is_some() {
            return self.replay_abandoned(record).await;
        }
        self.check_not_answered(call, &record).await?;
        self.record_abandon(record, &request.reason).await
    }

    /// Records that the customer left a contact its caller knows was not
    /// answered (a PBX reporting a hang-up before any answer): no routing
    /// check. Abandoning an abandoned contact answers with it unchanged.
    pub async fn abandon_unanswered(
        &self,
        tenant: &TenantId,
        contact_id: &ContactId,
        reason: &str,
    ) -> Result<Contact, Error> {
        let Some(record) = self.store.get(tenant, contact_id).await? else {
            return Err(Error::not_found(names::contact_name(tenant, contact_id)));
        };
        if record.abandonment.is_some() {
            return self.replay_abandoned(record).await;
        }
        self.record_abandon(record, reason).await
    }

    async fn record_abandon(&self, record: ContactRecord, reason: &str) -> Result<Contact, Error> {
        let (tenant, contact_id) = (record.tenant.clone(), record.contact_id.clone());
        // Consumers must see a contact created before they see it abandoned.
        if !record.created_published {
            self.outbox.publish_created(&record).await?;
        }
        let abandonment = Abandonment {
            abandon_time_millis: now_millis(),
            reason: reason.to_owned(),
            event_id: mint_event_id(),
            published: false,
        };
        let abandoned = self.store.set_abandoned(&tenant, &contact_id, &abandonment).await?;
        let Some(abandoned) = abandoned else {
            return Err(Error::not_found(names::contact_name(&tenant, &contact_id)));
        };
        if !abandoned.changed {
            return self.replay_abandoned(abandoned.record).await;
        }
        self.outbox.publish_abandoned(&abandoned.record).await?;
        tracing::info!(tenant = %tenant, contact = %contact_id, reason = ?reason, "contact abandoned");
        Ok(abandoned.record.contact)
    }

    /// An abandon of an abandoned contact: publish the event if an earlier
    /// call could not, and answer with the contact unchanged.
    async fn replay_abandoned(&self, record: ContactRecord) -> Result<Contact, Error> {
        if record.abandonment.as_ref().is_some_and(|abandonment| !abandonment.published) {
            self.outbox.publish_abandoned(&record).await?;
        }
        Ok(record.contact)
    }

    /// Routing's view decides: an answered or completed contact cannot be
    /// abandoned; one routing never saw (NOT_FOUND) can.
    async fn check_not_answered(&self, call: &CallContext, record: &ContactRecord) -> Result<(), Error> {
        let request = call.request(GetAssignmentRequest { contact: record.contact.name.clone() });
        let assignment = match self.routing.clone().get_assignment(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(()),
            Err(status) => {
                tracing::warn!(
                    tenant = %record.tenant,
                    contact = %record.contact_id,
                    code = ?status.code(),
                    message = status.message(),
                    "routing refused the assignment lookup"
                );
                return Err(from_status(&status));
            }
        };
        let answered = [ContactStatus::Answered as i32, ContactStatus::Completed as i32];
        if answered.contains(&assignment.status) {
            return Err(Error::failed_precondition("contact was already answered").with_resource(&record.contact.name));
        }
        Ok(())
    }
}

/// What makes a create a retry of a stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SameRequest {
    /// The client's request id, with the same contact (the API).
    SameBody,
    /// The request id alone: it is derived from what the contact is for
    /// (a conversation), not from the request's content.
    SameKey,
}

/// A `request_id` names one request: a retry must carry the same contact.
/// Answering a different body with the first contact would hide the
/// client's bug; creating a second one would break idempotency.
fn check_same_request(existing: &ContactRecord, requested: &Contact, request_id: &str) -> Result<(), Error> {
    let stored_request = Contact {
        name: String::new(),
        customer: String::new(),
        create_time: None,
        abandon_time: None,
        ..existing.contact.clone()
    };
    if stored_request == *requested {
        return Ok(());
    }
    Err(Error::failed_precondition(format!(
        "request_id `{request_id}` was already used for a different contact; use a new request_id for a new contact"
    ))
    .with_reason("REQUEST_ID_REUSED")
    .with_field_violation("request_id", "was already used with a different body")
    .with_resource(existing.contact.name.clone()))
}

/// A downstream error about the downstream request's `field` becomes one
/// about the field of this service's request it came from.
fn rename_fields(mut error: Error, downstream_field: &str, field: &str) -> Error {
    if error.code != ErrorCode::InvalidArgument {
        return error;
    }
    for violation in &mut error.field_violations {
        if let Some(rest) = violation.field.strip_prefix(downstream_field)
            && (rest.is_empty() || rest.starts_with('.'))
        {
            violation.field = format!("{field}{rest}");
        }
    }
    error
}

/// A queue with no channels listed accepts every channel.
fn accepts_channel(queue_name: &str, channels: &[i32], channel: i32) -> Result<(), Error> {
    if !channels.is_empty() && !channels.contains(&channel) {
        return Err(Error::failed_precondition(format!(
            "queue `{queue_name}` does not accept {} contacts",
            channel_label(channel)
        ))
        .with_resource(queue_name.to_owned()));
    }
    Ok(())
}

fn channel_label(channel: i32) -> &'static str {
    Channel::try_from(channel).map_or("CHANNEL_UNKNOWN", |channel| channel.as_str_name())
}

#[tonic::async_trait]
impl IngestionService for IngestionApi {
    async fn create_contact(&self, request: Request<CreateContactRequest>) -> Result<Response<Contact>, Status> {
        let principal = principal(&request)?;
        let call = CallContext::from_metadata(request.metadata());
        self.create(&principal, &call, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn get_contact(&self, request: Request<GetContactRequest>) -> Result<Response<Contact>, Status> {
        let principal = principal(&request)?;
        self.get(&principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn list_contacts(
        &self,
        request: Request<ListContactsRequest>,
    ) -> Result<Response<ListContactsResponse>, Status> {
        let principal = principal(&request)?;
        self.list(&principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn abandon_contact(&self, request: Request<AbandonContactRequest>) -> Result<Response<Contact>, Status> {
        let principal = principal(&request)?;
        let call = CallContext::from_metadata(request.metadata());
        self.abandon(&principal, &call, request.into_inner()).await.into_status().map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downstream_fields_are_renamed_to_ours() {
        let error = Error::invalid_field("identity.value", "bad");
        let renamed = rename_fields(error, "identity", "contact.from");
        assert_eq!(renamed.field_violations[0].field, "contact.from.value");
        let untouched = rename_fields(Error::invalid_field("identity_kind", "bad"), "identity", "contact.from");
        assert_eq!(untouched.field_violations[0].field, "identity_kind");
    }

    #[test]
    fn channels_have_labels() {
        assert_eq!(channel_label(Channel::Sms as i32), "CHANNEL_SMS");
        assert_eq!(channel_label(99), "CHANNEL_UNKNOWN");
    }
}
