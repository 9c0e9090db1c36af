//! `switchboard.ingestion.v1.ConversationService`: a tenant's
//! conversations and their messages, for readers of the tenant and the
//! agents offered or handling them; replies from the handling agent (or a
//! tenant admin) through the conversation's channel.

use std::sync::Arc;

use switchboard_core::identity::{Identity, IdentityKind, identity_from_proto, identity_to_proto};
use switchboard_core::names::{
    agent_name, channel_name, contact_name, conversation_name, parse_channel, parse_contact, parse_conversation,
    parse_tenant,
};
use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_core::{ContactId, Error, Principal, Role, TenantId};
use switchboard_platform::auth::{AccessControl, principal};
use switchboard_platform::grpc::CallContext;
use switchboard_platform::held_contact::{Holding, held_by_caller};
use switchboard_platform::pagination::{page, page_bounded, page_request};
use switchboard_platform::status::{IntoStatus, from_status};
use switchboard_proto::common::v1::Channel as ChannelKind;
use switchboard_proto::crm::v1::GetCustomerRequest;
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::conversation_service_server::ConversationService;
use switchboard_proto::ingestion::v1::{
    Conversation, ConversationState, GetConversationRequest, ListConversationsRequest, ListConversationsResponse,
    ListMessagesRequest, ListMessagesResponse, Message, MetaProduct, SendMessageRequest, StartConversationRequest,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use tonic::transport::Channel as GrpcChannel;
use tonic::{Request, Response, Status};

use crate::channels_api::is_active;
use crate::conversations::intake::{ConversationIntake, window_ms};
use crate::conversations::{ConversationRecord, ConversationStore, MessageRecord};
use crate::store::channels::ChannelStore;
use crate::store::{ContactRecord, ContactStore};

pub struct ConversationApi {
    store: Arc<dyn ConversationStore>,
    intake: Arc<ConversationIntake>,
    channels: Arc<dyn ChannelStore>,
    access: Arc<AccessControl>,
    routing: RoutingServiceClient<GrpcChannel>,
    contacts: Arc<dyn ContactStore>,
    /// Asked, with the service key, whom a merged customer went to.
    crm: CrmServiceClient<GrpcChannel>,
}

/// Longest message to a customer, in characters.
pub const MAX_REPLY_CHARS: usize = 4096;

/// What the caller wants to do with a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use<'a> {
    /// Read it. An agent may name the contact it is offered or handling
    /// (`tenants/{tenant}/contacts/{contact}`, empty if none) to read an
    /// earlier conversation of that contact's customer.
    Read {
        held_contact: &'a str,
    },
    Reply,
}

/// A conversation as clients see it.
pub fn conversation_view(record: ConversationRecord) -> Conversation {
    let tenant = &record.tenant;
    Conversation {
        name: conversation_name(tenant, &record.conversation_id),
        channel: channel_name(tenant, &record.channel_id),
        channel_kind: record.channel_kind,
        customer_identity: Some(identity_to_proto(&record.customer)),
        contact: record.contact.as_ref().map(|contact| contact_name(tenant, contact)).unwrap_or_default(),
        state: if record.closed.is_some() { ConversationState::Closed } else { ConversationState::Open } as i32,
        create_time: Some(timestamp_from_millis(record.created_ms)),
        last_message_time: Some(timestamp_from_millis(record.last_message_ms)),
        close_time: record.closed.map(|closed| timestamp_from_millis(closed.at_ms)),
        close_reason: record.closed.map(|closed| closed.reason.as_str().to_owned()).unwrap_or_default(),
    }
}

impl ConversationApi {
    pub fn new(
        intake: Arc<ConversationIntake>,
        channels: Arc<dyn ChannelStore>,
        access: Arc<AccessControl>,
        routing: RoutingServiceClient<GrpcChannel>,
        contacts: Arc<dyn ContactStore>,
        crm: CrmServiceClient<GrpcChannel>,
    ) -> ConversationApi {
        ConversationApi { store: Arc::clone(&intake.conversations), intake, channels, access, routing, contacts, crm }
    }

    /// The conversation `name` if the caller may `use` it: tenant readers
    /// read and tenant admins also reply; an agent reads the conversations
    /// of contacts it is offered or handling, and earlier ones of the same
    /// customer when it names such a contact, and replies on those it
    /// handles, as routing (asked on the agent's own credential) says.
    async fn conversation_for(
        &self,
        principal: &Principal,
        call: &CallContext,
        name: &str,
        field: &str,
        usage: Use<'_>,
    ) -> Result<ConversationRecord, Error> {
        let (tenant, conversation_id) = parse_conversation(name, field)?;
        if principal.role != Role::Agent {
            match usage {
                Use::Read { .. } => self.access.authorize_read(principal, &tenant)?,
                Use::Reply => self.access.authorize_write(principal, &tenant)?,
            }
            let record = self.store.get(&tenant, &conversation_id).await?;
            return record.ok_or_else(|| Error::not_found(name.to_owned()));
        }
        self.access.require_tenant(&tenant)?;
        // Absent and not the agent's look the same to an agent.
        let not_found = || Error::not_found(name.to_owned());
        let record = self.store.get(&tenant, &conversation_id).await?.ok_or_else(not_found)?;
        let contact = record.contact.clone().ok_or_else(not_found)?;
        let holding = held_by_caller(&self.routing, call, principal, &contact_name(&tenant, &contact)).await?;
        match (usage, holding) {
            (Use::Reply, Some((Holding::Answered, _))) | (Use::Read { .. }, Some(_)) => Ok(record),
            (Use::Reply, _) => Err(Error::failed_precondition("only the agent handling the contact may reply")
                .with_reason("NOT_ASSIGNED_TO_AGENT")
                .with_resource(name.to_owned())),
            (Use::Read { held_contact }, None) if !held_contact.is_empty() => {
                if self.same_customer_as_held(principal, call, &tenant, &contact, held_contact).await? {
                    Ok(record)
                } else {
                    Err(not_found())
                }
            }
            (Use::Read { .. }, None) => Err(not_found()),
        }
    }

    /// The calling agent holds `held_contact` and it has the same customer
    /// as `contact` (an earlier contact): the customers ingestion resolved
    /// at intake, or routing's for the held one, the same or one merged
    /// into the other (CRM asked with the service key). A contact whose
    /// customer CRM resolves only later, from the event, matches once that
    /// resolution reached its record (`CustomerResolved`).
    async fn same_customer_as_held(
        &self,
        principal: &Principal,
        call: &CallContext,
        tenant: &TenantId,
        contact: &ContactId,
        held_contact: &str,
    ) -> Result<bool, Error> {
        let (held_tenant, held_id) = parse_contact(held_contact, "contact")?;
        if held_tenant != *tenant {
            return Ok(false);
        }
        let Some((_, assignment)) = held_by_caller(&self.routing, call, principal, held_contact).await? else {
            return Ok(false);
        };
        let customer_of =
            |record: Option<ContactRecord>| record.map(|record| record.contact.customer).unwrap_or_default();
        let held_customer = match assignment.customer {
            customer if !customer.is_empty() => customer,
            _ => customer_of(self.contacts.get(tenant, &held_id).await?),
        };
        let earlier_customer = customer_of(self.contacts.get(tenant, contact).await?);
        if held_customer.is_empty() || earlier_customer.is_empty() {
            return Ok(false);
        }
        if held_customer == earlier_customer {
            return Ok(true);
        }
        let Some(service) = self.access.service_call() else { return Ok(false) };
        Ok(self.surviving(&service, &held_customer).await? == self.surviving(&service, &earlier_customer).await?)
    }

    /// The customer `customer` (a name) was merged into, else itself.
    async fn surviving(&self, service: &CallContext, customer: &str) -> Result<String, Error> {
        let request = service.request(GetCustomerRequest { name: customer.to_owned(), contact: String::new() });
        match self.crm.clone().get_customer(request).await {
            Ok(found) => {
                let found = found.into_inner();
                Ok(if found.merged_into.is_empty() { found.name } else { found.merged_into })
            }
            Err(status) => Err(from_status(&status)),
        }
    }

    async fn get(
        &self,
        principal: &Principal,
        call: &CallContext,
        request: GetConversationRequest,
    ) -> Result<Conversation, Error> {
        let usage = Use::Read { held_contact: &request.contact };
        let record = self.conversation_for(principal, call, &request.name, "name", usage).await?;
        Ok(conversation_view(record))
    }

    async fn send(
        &self,
        principal: &Principal,
        call: &CallContext,
        request: SendMessageRequest,
    ) -> Result<Message, Error> {
        check_outbound(&request.text, &request.request_id)?;
        let conversation = self.conversation_for(principal, call, &request.parent, "parent", Use::Reply).await?;
        let author = match &principal.agent {
            Some(agent) if principal.role == Role::Agent => agent_name(agent),
            _ => format!("keys/{}", principal.key_name),
        };
        let record = self.intake.reply(&conversation, &author, &request.text, &request.request_id).await?;
        Ok(record.message)
    }

    async fn start(&self, principal: &Principal, request: StartConversationRequest) -> Result<Message, Error> {
        let (tenant, channel_id) = parse_channel(&request.channel, "channel")?;
        let customer = identity_from_proto(request.customer.as_ref(), "customer")?;
        check_outbound(&request.text, &request.request_id)?;
        self.access.authorize_write(principal, &tenant)?;
        let stored = self.channels.get(&tenant, &channel_id).await?;
        let Some(channel) = stored.map(|stored| stored.channel).filter(is_active) else {
            return Err(Error::not_found(request.channel));
        };
        let kind = first_contact_kind(channel.provider.as_ref(), &customer)?;
        let candidate = ConversationRecord::opening(&tenant, &channel_id, kind as i32, customer, now_millis());
        let joined = self.store.open_or_join(&candidate, window_ms(&channel)).await?;
        let author = format!("keys/{}", principal.key_name);
        let record = self.intake.reply(&joined.conversation, &author, &request.text, &request.request_id).await?;
        tracing::info!(tenant = %tenant, channel = %channel_id, conversation = %joined.conversation.conversation_id, opened = joined.opened, "conversation started by the contact center");
        Ok(record.message)
    }
}

/// A message to a customer: its text and request id, checked (every
/// problem named).
fn check_outbound(text: &str, request_id: &str) -> Result<(), Error> {
    let mut problems = Vec::new();
    if text.trim().is_empty() {
        problems.push(("text", "is required".to_owned()));
    } else if text.chars().count() > MAX_REPLY_CHARS
        || text.chars().any(|character| character.is_control() && !matches!(character, '\n' | '\t'))
    {
        problems.push((
            "text",
            format!("must be at most {MAX_REPLY_CHARS} characters, no control characters but line breaks and tabs"),
        ));
    }
    if request_id.is_empty() || request_id.len() > 128 || !request_id.bytes().all(|byte| (b' '..=b'~').contains(&byte))
    {
        problems.push(("request_id", "is required: at most 128 printable ASCII characters".to_owned()));
    }
    let Some((field, description)) = problems.first() else { return Ok(()) };
    let mut error = Error::invalid_field(*field, description.clone());
    for (field, description) in problems.iter().skip(1) {
        error = error.with_field_violation(*field, description.clone());
    }
    Err(error)
}

/// The channel kind a first message to `customer` goes out as on a
/// channel of `provider`: the address must be the provider's own kind, as
/// its inbound messages name their senders, so the customer's answer joins
/// the conversation.
fn first_contact_kind(provider: Option<&Provider>, customer: &Identity) -> Result<ChannelKind, Error> {
    let handle = |prefix: &str| customer.kind == IdentityKind::Messenger && customer.value.starts_with(prefix);
    let (matches, kind, expected) = match provider {
        Some(Provider::Twilio(twilio)) if twilio.from.starts_with("whatsapp:") => {
            (customer.kind == IdentityKind::Phone, ChannelKind::Messenger, "a phone number")
        }
        Some(Provider::Twilio(_)) => (customer.kind == IdentityKind::Phone, ChannelKind::Sms, "a phone number"),
        Some(Provider::Meta(meta)) => match MetaProduct::try_from(meta.product) {
            Ok(MetaProduct::Whatsapp) => {
                (customer.kind == IdentityKind::Phone, ChannelKind::Messenger, "a phone number")
            }
            Ok(MetaProduct::Instagram) => (handle("instagram:"), ChannelKind::Messenger, "an `instagram:<id>` handle"),
            _ => (handle("messenger:"), ChannelKind::Messenger, "a `messenger:<PSID>` handle"),
        },
        Some(Provider::Telegram(_)) => (handle("telegram:"), ChannelKind::Messenger, "a `telegram:<chat id>` handle"),
        Some(Provider::Email(_)) => (customer.kind == IdentityKind::Email, ChannelKind::Email, "an e-mail address"),
        _ => {
            return Err(Error::failed_precondition(
                "this channel cannot write first (web forms, social posts, web chat and calls answer only)",
            ));
        }
    };
    if matches {
        Ok(kind)
    } else {
        Err(Error::invalid_field("customer", format!("must be {expected} on this channel")))
    }
}

impl ConversationApi {
    async fn list(
        &self,
        principal: &Principal,
        request: ListConversationsRequest,
    ) -> Result<ListConversationsResponse, Error> {
        let tenant = parse_tenant(&request.parent, "parent")?;
        self.access.authorize_read(principal, &tenant)?;
        let list = format!("ingestion.ListConversations {}", request.parent);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let records = self.store.list(&tenant, &page_request).await?;
        let (records, next_page_token) =
            page(records, &page_request, |record: &ConversationRecord| record.conversation_id.as_str().to_owned());
        Ok(ListConversationsResponse {
            conversations: records.into_iter().map(conversation_view).collect(),
            next_page_token,
        })
    }

    async fn messages(
        &self,
        principal: &Principal,
        call: &CallContext,
        request: ListMessagesRequest,
    ) -> Result<ListMessagesResponse, Error> {
        let usage = Use::Read { held_contact: &request.contact };
        let conversation = self.conversation_for(principal, call, &request.parent, "parent", usage).await?;
        let (tenant, conversation_id) = (conversation.tenant, conversation.conversation_id);
        let list = format!("ingestion.ListMessages {}", request.parent);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let records = self.store.messages(&tenant, &conversation_id, &page_request).await?;
        let (records, next_page_token) = page_bounded(
            records,
            &page_request,
            |record: &MessageRecord| record.message_id.as_str().to_owned(),
            |record| prost::Message::encoded_len(&record.message),
        );
        Ok(ListMessagesResponse {
            messages: records.into_iter().map(|record| record.message).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl ConversationService for ConversationApi {
    async fn get_conversation(
        &self,
        request: Request<GetConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        let principal = principal(&request)?;
        let call = CallContext::from_metadata(request.metadata());
        self.get(&principal, &call, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        let principal = principal(&request)?;
        self.list(&principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let principal = principal(&request)?;
        let call = CallContext::from_metadata(request.metadata());
        self.messages(&principal, &call, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn send_message(&self, request: Request<SendMessageRequest>) -> Result<Response<Message>, Status> {
        let principal = principal(&request)?;
        let call = CallContext::from_metadata(request.metadata());
        self.send(&principal, &call, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn start_conversation(
        &self,
        request: Request<StartConversationRequest>,
    ) -> Result<Response<Message>, Status> {
        let principal = principal(&request)?;
        self.start(&principal, request.into_inner()).await.into_status().map(Response::new)
    }
}
