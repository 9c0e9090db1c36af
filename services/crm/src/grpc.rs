//! The `switchboard.crm.v1.CrmService` API: request validation, access
//! checks and the mapping between API messages and the domain.
//!
//! Every handler validates and authorizes completely before it touches the
//! store, so a bad request changes nothing.

use std::sync::Arc;

use switchboard_core::names::{contact_name, customer_name, parse_contact, parse_customer, parse_tenant};
use switchboard_core::time::optional_timestamp;
use switchboard_core::{ContactId, CustomerId, Error, Principal, Role, TenantId};
use switchboard_platform::auth::{AccessControl, LogName};
use switchboard_platform::grpc::{CallContext, answer};
use switchboard_platform::held_contact::{contact_required, held_by_caller};
use switchboard_platform::pagination::{page, page_request};
use switchboard_proto::common::v1 as common;
use switchboard_proto::crm::v1 as api;
use switchboard_proto::crm::v1::crm_service_server::CrmService;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use tonic::transport::Channel as GrpcChannel;
use tonic::{Request, Response, Status};

use crate::domain::{
    EntryStatus, Identity, TimelineCursor, TimelineEntry, identity_from_proto, identity_to_proto,
    normalize_display_name,
};
use crate::store::{CrmStore, Customer};

/// The CRM gRPC API on a store.
pub struct CrmApi {
    store: Arc<dyn CrmStore>,
    access: Arc<AccessControl>,
    /// Asked, on an agent's own credential, which contacts it holds.
    routing: RoutingServiceClient<GrpcChannel>,
}

impl CrmApi {
    pub fn new(
        store: Arc<dyn CrmStore>,
        access: Arc<AccessControl>,
        routing: RoutingServiceClient<GrpcChannel>,
    ) -> CrmApi {
        CrmApi { store, access, routing }
    }

    /// `principal` may read `customer` of `tenant`: tenant readers and
    /// admins of the tenant, the operator, and an agent offered or handling
    /// `contact` (named in `contact_field`) whose customer it is, as routing
    /// knows it or, for a contact routed before its customer was resolved,
    /// as this timeline does. Any other customer is NOT_FOUND to an agent.
    async fn authorize_customer_read(
        &self,
        principal: &Principal,
        call: &CallContext,
        tenant: &TenantId,
        customer: &CustomerId,
        contact_field: &str,
        contact: &str,
    ) -> Result<(), Error> {
        if principal.role != Role::Agent {
            return self.access.authorize_read(principal, tenant);
        }
        self.access.require_tenant(tenant)?;
        if contact.is_empty() {
            return Err(contact_required(contact_field, "customer"));
        }
        let (contact_tenant, contact_id) = parse_contact(contact, contact_field)?;
        let wanted = customer_name(tenant, customer);
        let not_found = || Error::not_found(wanted.clone());
        if contact_tenant != *tenant {
            return Err(not_found());
        }
        let Some((_, assignment)) = held_by_caller(&self.routing, call, principal, contact).await? else {
            return Err(not_found());
        };
        let holder = if assignment.customer.is_empty() {
            self.store.timeline_entry(tenant, &contact_id).await?.and_then(|entry| entry.customer)
        } else {
            parse_customer(&assignment.customer, "assignment.customer").ok().map(|(_, holder)| holder)
        };
        let Some(holder) = holder else { return Err(not_found()) };
        // Either may have been merged into the other since.
        if self.surviving(tenant, &holder).await? == self.surviving(tenant, customer).await? {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// The customer `customer` went to if it was merged, else itself.
    async fn surviving(&self, tenant: &TenantId, customer: &CustomerId) -> Result<CustomerId, Error> {
        let record = self.store.get_customer(tenant, customer).await?;
        Ok(record.merged_into.unwrap_or(record.id))
    }
}

/// The domain identity of a request's `identity`, normalised.
pub fn identity_from_request(identity: Option<&common::CustomerIdentity>) -> Result<Identity, Error> {
    identity_from_proto(identity, "identity")
}

fn status_to_api(status: EntryStatus) -> common::ContactStatus {
    match status {
        EntryStatus::Received => common::ContactStatus::Received,
        EntryStatus::Queued => common::ContactStatus::Queued,
        EntryStatus::Offered => common::ContactStatus::Offered,
        EntryStatus::Answered => common::ContactStatus::Answered,
        EntryStatus::Completed => common::ContactStatus::Completed,
        EntryStatus::Abandoned => common::ContactStatus::Abandoned,
    }
}

pub fn customer_to_api(customer: &Customer) -> api::Customer {
    api::Customer {
        name: customer_name(&customer.tenant, &customer.id),
        display_name: customer.display_name.clone(),
        identities: customer.identities.iter().map(identity_to_proto).collect(),
        create_time: optional_timestamp(customer.create_time_millis),
        merged_into: customer
            .merged_into
            .as_ref()
            .map(|survivor| customer_name(&customer.tenant, survivor))
            .unwrap_or_default(),
    }
}

/// `tenants/{tenant}/customers/{customer}/timeline/{contact}`.
pub fn timeline_entry_name(entry: &TimelineEntry, customer: &CustomerId) -> String {
    format!("{}/timeline/{}", customer_name(&entry.tenant, customer), entry.contact)
}

/// An entry as listed on `customer`'s timeline.
pub fn timeline_entry_to_api(entry: &TimelineEntry, customer: &CustomerId) -> api::TimelineEntry {
    api::TimelineEntry {
        name: timeline_entry_name(entry, customer),
        contact: contact_name(&entry.tenant, &entry.contact),
        channel: entry.channel,
        queue: entry.queue.clone(),
        status: status_to_api(entry.status).into(),
        agent: entry.agent.clone(),
        subject: entry.subject.clone(),
        disposition: entry.disposition.clone(),
        resolved: entry.resolved,
        create_time: optional_timestamp(entry.create_time_millis),
        answer_time: optional_timestamp(entry.answer_time_millis),
        end_time: optional_timestamp(entry.end_time_millis),
        transferred_to: entry.transferred_to.clone(),
        transfer_time: optional_timestamp(entry.transfer_time_millis),
        callback_number: entry.callback_number.clone(),
        conversation: entry.conversation.clone(),
    }
}

fn invalid_page_token() -> Error {
    Error::invalid_field("page_token", "is not a token this API issued")
}

/// The page-token key of a timeline entry: `{create_time_millis}/{contact}`.
fn timeline_page_key(entry: &TimelineEntry) -> String {
    format!("{}/{}", entry.create_time_millis, entry.contact)
}

fn parse_timeline_page_key(key: &str) -> Result<TimelineCursor, Error> {
    let (create_time, contact) = key.split_once('/').ok_or_else(invalid_page_token)?;
    let create_time_millis = create_time.parse::<i64>().map_err(|_| invalid_page_token())?;
    let contact = ContactId::parse(contact, "page_token").map_err(|_| invalid_page_token())?;
    Ok(TimelineCursor { create_time_millis, contact })
}

impl CrmApi {
    async fn resolve(
        &self,
        principal: Principal,
        request: api::ResolveCustomerRequest,
    ) -> Result<api::ResolveCustomerResponse, Error> {
        let tenant = parse_tenant(&request.parent, "parent")?;
        // Ingestion resolves the sender of a channel's message as itself.
        if principal.is_service() {
            self.access.require_tenant(&tenant)?;
        } else {
            self.access.authorize_intake(&principal, &tenant)?;
        }
        let identity = identity_from_request(request.identity.as_ref())?;
        let display_name = normalize_display_name(&request.display_name, "display_name")?;
        let resolved = self.store.resolve_customer(&tenant, &identity, &display_name).await?;
        if resolved.created {
            tracing::info!(
                tenant = %tenant,
                customer = %resolved.customer.id,
                identity_kind = identity.kind.as_str(),
                key = %LogName(&principal),
                "customer created"
            );
        }
        Ok(api::ResolveCustomerResponse {
            customer: Some(customer_to_api(&resolved.customer)),
            created: resolved.created,
        })
    }

    async fn add_identity(
        &self,
        principal: Principal,
        request: api::AddCustomerIdentityRequest,
    ) -> Result<api::Customer, Error> {
        let (tenant, customer) = parse_customer(&request.customer, "customer")?;
        self.access.authorize_write(&principal, &tenant)?;
        let identity = identity_from_request(request.identity.as_ref())?;
        let customer = self.store.add_identity(&tenant, &customer, &identity).await?;
        tracing::info!(
            tenant = %tenant,
            customer = %customer.id,
            identity_kind = identity.kind.as_str(),
            key = %LogName(&principal),
            "identity attached to the customer"
        );
        Ok(customer_to_api(&customer))
    }

    async fn merge(&self, principal: Principal, request: api::MergeCustomersRequest) -> Result<api::Customer, Error> {
        let (tenant, survivor) = parse_customer(&request.customer, "customer")?;
        let (merged_tenant, merged) = parse_customer(&request.merged_customer, "merged_customer")?;
        if merged_tenant != tenant {
            return Err(Error::invalid_field("merged_customer", "must be a customer of the same tenant as `customer`"));
        }
        if merged == survivor {
            return Err(Error::invalid_field("merged_customer", "must be another customer than `customer`"));
        }
        self.access.authorize_write(&principal, &tenant)?;
        let customer = self.store.merge_customers(&tenant, &survivor, &merged).await?;
        tracing::info!(
            tenant = %tenant,
            customer = %survivor,
            merged_customer = %merged,
            key = %LogName(&principal),
            "customers merged"
        );
        Ok(customer_to_api(&customer))
    }

    async fn get(
        &self,
        principal: Principal,
        call: &CallContext,
        request: api::GetCustomerRequest,
    ) -> Result<api::Customer, Error> {
        let (tenant, customer) = parse_customer(&request.name, "name")?;
        // Ingestion reads, as itself, whom a merged customer went to, and
        // nothing about the person.
        if principal.is_service() {
            self.access.require_tenant(&tenant)?;
            let customer = self.store.get_customer(&tenant, &customer).await?;
            return Ok(api::Customer {
                identities: Vec::new(),
                display_name: String::new(),
                ..customer_to_api(&customer)
            });
        }
        self.authorize_customer_read(&principal, call, &tenant, &customer, "contact", &request.contact).await?;
        let customer = self.store.get_customer(&tenant, &customer).await?;
        Ok(customer_to_api(&customer))
    }

    async fn list(
        &self,
        principal: Principal,
        request: api::ListCustomersRequest,
    ) -> Result<api::ListCustomersResponse, Error> {
        let tenant = parse_tenant(&request.parent, "parent")?;
        self.access.authorize_read(&principal, &tenant)?;
        let list = format!("crm.ListCustomers {}", request.parent);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let after = page_request
            .after
            .as_deref()
            .map(|after| CustomerId::parse(after, "page_token").map_err(|_| invalid_page_token()))
            .transpose()?;
        let customers = self.store.list_customers(&tenant, after.as_ref(), page_request.size + 1).await?;
        let (customers, next_page_token) = page(customers, &page_request, |customer| customer.id.to_string());
        Ok(api::ListCustomersResponse { customers: customers.iter().map(customer_to_api).collect(), next_page_token })
    }

    async fn timeline(
        &self,
        principal: Principal,
        call: &CallContext,
        request: api::ListTimelineEntriesRequest,
    ) -> Result<api::ListTimelineEntriesResponse, Error> {
        let (tenant, customer) = parse_customer(&request.parent, "parent")?;
        self.authorize_customer_read(&principal, call, &tenant, &customer, "contact", &request.contact).await?;
        let list = format!("crm.ListTimelineEntries {}", request.parent);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let after = page_request.after.as_deref().map(parse_timeline_page_key).transpose()?;
        // An unknown customer is NOT_FOUND rather than an empty timeline;
        // a merged one's timeline is its survivor's.
        let customer = self.store.get_customer(&tenant, &customer).await?;
        let customer = customer.merged_into.unwrap_or(customer.id);
        let entries =
            self.store.list_timeline_entries(&tenant, &customer, after.as_ref(), page_request.size + 1).await?;
        let (entries, next_page_token) = page(entries, &page_request, timeline_page_key);
        Ok(api::ListTimelineEntriesResponse {
            entries: entries.iter().map(|entry| timeline_entry_to_api(entry, &customer)).collect(),
            next_page_token,
        })
    }
}

#[async_trait::async_trait]
impl CrmService for CrmApi {
    async fn resolve_customer(
        &self,
        request: Request<api::ResolveCustomerRequest>,
    ) -> Result<Response<api::ResolveCustomerResponse>, Status> {
        answer(request, |principal, body| self.resolve(principal, body)).await
    }

    async fn add_customer_identity(
        &self,
        request: Request<api::AddCustomerIdentityRequest>,
    ) -> Result<Response<api::Customer>, Status> {
        answer(request, |principal, body| self.add_identity(principal, body)).await
    }

    async fn merge_customers(
        &self,
        request: Request<api::MergeCustomersRequest>,
    ) -> Result<Response<api::Customer>, Status> {
        answer(request, |principal, body| self.merge(principal, body)).await
    }

    async fn get_customer(&self, request: Request<api::GetCustomerRequest>) -> Result<Response<api::Customer>, Status> {
        let call = CallContext::from_metadata(request.metadata());
        answer(request, |principal, body| self.get(principal, &call, body)).await
    }

    async fn list_customers(
        &self,
        request: Request<api::ListCustomersRequest>,
    ) -> Result<Response<api::ListCustomersResponse>, Status> {
        answer(request, |principal, body| self.list(principal, body)).await
    }

    async fn list_timeline_entries(
        &self,
        request: Request<api::ListTimelineEntriesRequest>,
    ) -> Result<Response<api::ListTimelineEntriesResponse>, Status> {
        let call = CallContext::from_metadata(request.metadata());
        answer(request, |principal, body| self.timeline(principal, &call, body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_validated_field_by_field() {
        let field_of = |identity: Option<common::CustomerIdentity>| {
            identity_from_request(identity.as_ref()).expect_err("invalid").field_violations[0].field.clone()
        };
        assert_eq!(field_of(None), "identity");
        let unspecified = common::CustomerIdentity { kind: 0, value: "x".to_owned() };
        assert_eq!(field_of(Some(unspecified)), "identity.kind");
        let unknown_kind = common::CustomerIdentity { kind: 42, value: "x".to_owned() };
        assert_eq!(field_of(Some(unknown_kind)), "identity.kind");
        let empty = common::CustomerIdentity { kind: common::IdentityKind::Email.into(), value: " ".to_owned() };
        assert_eq!(field_of(Some(empty)), "identity.value");
        let phone = common::CustomerIdentity { kind: common::IdentityKind::Phone.into(), value: "+7 (495) 123".into() };
        let identity = identity_from_request(Some(&phone)).expect("valid phone");
        assert_eq!(identity_to_proto(&identity).value, "+7495123");
    }

    #[test]
    fn timeline_page_keys_round_trip_and_reject_garbage() {
        let contact = ContactId::generate();
        let cursor = parse_timeline_page_key(&format!("1234/{contact}")).expect("key");
        assert_eq!(cursor, TimelineCursor { create_time_millis: 1234, contact });
        for bad in ["", "1234", "x/ct_1", "12/cu_1", "12/ct_"] {
            let error = parse_timeline_page_key(bad).expect_err(bad);
            assert_eq!(error.field_violations[0].field, "page_token", "{bad}");
        }
    }
}
