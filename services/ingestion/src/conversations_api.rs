//! `switchboard.ingestion.v1.ConversationService`: a tenant's
//! conversations and their messages, for readers of the tenant.

use std::sync::Arc;

use switchboard_core::identity::identity_to_proto;
use switchboard_core::names::{channel_name, contact_name, conversation_name, parse_conversation, parse_tenant};
use switchboard_core::time::timestamp_from_millis;
use switchboard_core::{Error, Principal};
use switchboard_platform::auth::{AccessControl, principal};
use switchboard_platform::pagination::{page, page_request};
use switchboard_platform::status::IntoStatus;
use switchboard_proto::ingestion::v1::conversation_service_server::ConversationService;
use switchboard_proto::ingestion::v1::{
    Conversation, ConversationState, GetConversationRequest, ListConversationsRequest, ListConversationsResponse,
    ListMessagesRequest, ListMessagesResponse,
};
use tonic::{Request, Response, Status};

use crate::conversations::{ConversationRecord, ConversationStore, MessageRecord};

pub struct ConversationApi {
    store: Arc<dyn ConversationStore>,
    access: Arc<AccessControl>,
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
    pub fn new(store: Arc<dyn ConversationStore>, access: Arc<AccessControl>) -> ConversationApi {
        ConversationApi { store, access }
    }

    async fn get(&self, principal: &Principal, request: GetConversationRequest) -> Result<Conversation, Error> {
        let (tenant, conversation_id) = parse_conversation(&request.name, "name")?;
        self.access.authorize_read(principal, &tenant)?;
        let record = self.store.get(&tenant, &conversation_id).await?;
        record.map(conversation_view).ok_or_else(|| Error::not_found(request.name))
    }

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
        request: ListMessagesRequest,
    ) -> Result<ListMessagesResponse, Error> {
        let (tenant, conversation_id) = parse_conversation(&request.parent, "parent")?;
        self.access.authorize_read(principal, &tenant)?;
        if self.store.get(&tenant, &conversation_id).await?.is_none() {
            return Err(Error::not_found(request.parent));
        }
        let list = format!("ingestion.ListMessages {}", request.parent);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let records = self.store.messages(&tenant, &conversation_id, &page_request).await?;
        let (records, next_page_token) =
            page(records, &page_request, |record: &MessageRecord| record.message_id.as_str().to_owned());
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
        self.get(&principal, request.into_inner()).await.into_status().map(Response::new)
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
        self.messages(&principal, request.into_inner()).await.into_status().map(Response::new)
    }
}
