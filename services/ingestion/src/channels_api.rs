//! `switchboard.ingestion.v1.ChannelService`: a tenant's channels as
//! resources. Secrets are write-only: stored with the channel, never
//! answered (`secrets_set` names those set). A channel's queue is checked
//! with routing, on the caller's own credential, whenever it is set.

use std::sync::Arc;

use switchboard_core::names::{channel_name, parse_channel, parse_queue, parse_tenant};
use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_core::{ChannelId, Error, Principal, TenantId};
use switchboard_platform::audit::Change;
use switchboard_platform::auth::{AccessControl, LogName, principal};
use switchboard_platform::grpc::CallContext;
use switchboard_platform::pagination::{PageRequest, page, page_request};
use switchboard_platform::quota::{admit_one_more, count_needed};
use switchboard_platform::status::{IntoStatus, from_status};
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_server::ChannelService;
use switchboard_proto::ingestion::v1::{
    Channel, CreateChannelRequest, DeleteChannelRequest, GetChannelRequest, ListChannelsRequest, ListChannelsResponse,
    UpdateChannelRequest,
};
use switchboard_proto::routing::v1::GetQueueRequest;
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use tonic::transport::Channel as GrpcChannel;
use tonic::{Code, Request, Response, Status};

use crate::channel_settings::{UPDATABLE_FIELDS, apply_update, secrets_set, validate_channel, without_secrets};
use crate::egress::Egress;
use crate::store::channels::ChannelStore;
use crate::webhooks::RecentChannels;

/// The channels API over the channel store and a routing client.
pub struct ChannelApi {
    store: Arc<dyn ChannelStore>,
    /// The webhooks' recent reads, forgotten when this API changes one.
    recent: Arc<RecentChannels>,
    access: Arc<AccessControl>,
    routing: RoutingServiceClient<GrpcChannel>,
    public_base_url: String,
    /// What the channels' destinations may be.
    egress: Egress,
}

impl ChannelApi {
    pub fn new(
        store: Arc<dyn ChannelStore>,
        recent: Arc<RecentChannels>,
        access: Arc<AccessControl>,
        routing: RoutingServiceClient<GrpcChannel>,
        public_base_url: String,
        egress: Egress,
    ) -> ChannelApi {
        ChannelApi { store, recent, access, routing, public_base_url, egress }
    }

    /// The address a provider posts to for this channel.
    pub fn webhook_url(&self, tenant: &TenantId, channel_id: &ChannelId) -> String {
        webhook_url(&self.public_base_url, tenant, channel_id)
    }

    /// The channel as clients see it: no secrets, its webhook URL.
    fn answer(&self, tenant: &TenantId, channel_id: &ChannelId, stored: Channel) -> Channel {
        Channel {
            webhook_url: match &stored.provider {
                Some(Provider::WebChat(_)) => webchat_url(&self.public_base_url, tenant, channel_id),
                _ => self.webhook_url(tenant, channel_id),
            },
            secrets_set: secrets_set(&stored),
            ..without_secrets(stored)
        }
    }

    async fn create(
        &self,
        principal: &Principal,
        call: &CallContext,
        request: CreateChannelRequest,
    ) -> Result<Channel, Error> {
        let tenant = parse_tenant(&request.parent, "parent")?;
        // The caller's right before the body (see `IngestionApi::create`).
        self.access.authorize_write(principal, &tenant)?;
        let channel_id = ChannelId::parse(&request.channel_id, "channel_id")?;
        let channel = request.channel.ok_or_else(|| Error::missing_field("channel"))?;
        validate_channel(&tenant, &channel, "channel")?;
        self.egress.check_channel(&channel, "channel")?;
        self.check_queues(call, &tenant, &channel).await?;
        let max_channels = self.access.tenant_policy(&tenant).limits.max_channels;
        if let Some(needed) = count_needed(max_channels) {
            let existing = self.store.list(&tenant, &PageRequest::first(needed)).await?.len();
            admit_one_more(&tenant, "channels", existing, max_channels)?;
        }
        let now = Some(timestamp_from_millis(now_millis()));
        let stored = Channel {
            name: channel_name(&tenant, &channel_id),
            webhook_url: String::new(),
            secrets_set: Vec::new(),
            create_time: now,
            update_time: now,
            ..channel
        };
        self.store.create(&tenant, &channel_id, &stored).await?;
        tracing::info!(tenant = %tenant, channel = %channel_id, key = %LogName(principal), "channel created");
        let created = self.answer(&tenant, &channel_id, stored);
        let change = Change::new(Some(&tenant), "switchboard.ingestion.v1.ChannelService/CreateChannel", &created.name);
        self.access.audit(principal, change.after("switchboard.ingestion.v1.Channel", &created)).await;
        Ok(created)
    }

    async fn get(&self, principal: &Principal, request: GetChannelRequest) -> Result<Channel, Error> {
        let (tenant, channel_id) = parse_channel(&request.name, "name")?;
        self.access.authorize_read(principal, &tenant)?;
        let stored = self.store.get(&tenant, &channel_id).await?;
        let stored = stored.ok_or_else(|| Error::not_found(channel_name(&tenant, &channel_id)))?;
        Ok(self.answer(&tenant, &channel_id, stored.channel))
    }

    async fn list(&self, principal: &Principal, request: ListChannelsRequest) -> Result<ListChannelsResponse, Error> {
        let tenant = parse_tenant(&request.parent, "parent")?;
        self.access.authorize_read(principal, &tenant)?;
        let list = format!("ingestion.ListChannels {}", request.parent);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        let stored = self.store.list(&tenant, &page_request).await?;
        let channels: Vec<Channel> = stored.into_iter().map(|stored| stored.channel).collect();
        let (channels, next_page_token) = page(channels, &page_request, |channel: &Channel| {
            channel.name.rsplit('/').next().unwrap_or_default().to_owned()
        });
        let channels = channels
            .into_iter()
            .filter_map(|channel| {
                let (_, channel_id) = parse_channel(&channel.name, "name").ok()?;
                Some(self.answer(&tenant, &channel_id, channel))
            })
            .collect();
        Ok(ListChannelsResponse { channels, next_page_token })
    }

    async fn update(
        &self,
        principal: &Principal,
        call: &CallContext,
        request: UpdateChannelRequest,
    ) -> Result<Channel, Error> {
        let changes = request.channel.ok_or_else(|| Error::missing_field("channel"))?;
        let (tenant, channel_id) = parse_channel(&changes.name, "channel.name")?;
        self.access.authorize_write(principal, &tenant)?;
        let paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid_field("update_mask", "must list the fields to update"));
        }
        if let Some(unknown) = paths.iter().find(|path| !UPDATABLE_FIELDS.contains(&path.as_str())) {
            return Err(Error::invalid_field("update_mask", format!("`{unknown}` cannot be updated")));
        }
        let stored = self.store.get(&tenant, &channel_id).await?;
        let stored = stored.ok_or_else(|| Error::not_found(channel_name(&tenant, &channel_id)))?;
        let before = self.answer(&tenant, &channel_id, stored.channel.clone());
        let mut channel = apply_update(stored.channel, &changes, &paths)?;
        validate_channel(&tenant, &channel, "channel")?;
        self.egress.check_channel(&channel, "channel")?;
        if paths.iter().any(|path| path == "queue" || path == "cti.queues") {
            self.check_queues(call, &tenant, &channel).await?;
        }
        channel.update_time = Some(timestamp_from_millis(now_millis()));
        self.store.update(&tenant, &channel_id, stored.revision, &channel).await?;
        self.recent.forget(&(tenant.clone(), channel_id.clone()));
        tracing::info!(tenant = %tenant, channel = %channel_id, fields = ?paths, key = %LogName(principal), "channel updated");
        let updated = self.answer(&tenant, &channel_id, channel);
        let change = Change::new(Some(&tenant), "switchboard.ingestion.v1.ChannelService/UpdateChannel", &updated.name);
        self.access
            .audit(
                principal,
                change
                    .before("switchboard.ingestion.v1.Channel", &before)
                    .after("switchboard.ingestion.v1.Channel", &updated),
            )
            .await;
        Ok(updated)
    }

    async fn delete(&self, principal: &Principal, request: DeleteChannelRequest) -> Result<(), Error> {
        let (tenant, channel_id) = parse_channel(&request.name, "name")?;
        self.access.authorize_write(principal, &tenant)?;
        let before =
            self.store.get(&tenant, &channel_id).await?.map(|stored| self.answer(&tenant, &channel_id, stored.channel));
        let deleted = self.store.delete(&tenant, &channel_id).await?;
        self.recent.forget(&(tenant.clone(), channel_id.clone()));
        if !deleted {
            return Err(Error::not_found(channel_name(&tenant, &channel_id)));
        }
        tracing::info!(tenant = %tenant, channel = %channel_id, key = %LogName(principal), "channel deleted");
        let mut change = Change::new(
            Some(&tenant),
            "switchboard.ingestion.v1.ChannelService/DeleteChannel",
            channel_name(&tenant, &channel_id),
        );
        if let Some(before) = &before {
            change = change.before("switchboard.ingestion.v1.Channel", before);
        }
        self.access.audit(principal, change).await;
        Ok(())
    }

    /// The queue must exist; routing answers on the caller's credential.
    /// The channel's queue, and a CTI channel's other queues, exist.
    async fn check_queues(&self, call: &CallContext, tenant: &TenantId, channel: &Channel) -> Result<(), Error> {
        self.check_queue(call, &channel.queue, "channel.queue").await?;
        if let Some(Provider::Cti(cti)) = &channel.provider {
            for (index, queue) in cti.queues.iter().enumerate() {
                let name = format!("tenants/{tenant}/queues/{queue}");
                self.check_queue(call, &name, &format!("channel.cti.queues[{index}]")).await?;
            }
        }
        Ok(())
    }

    async fn check_queue(&self, call: &CallContext, queue: &str, field: &str) -> Result<(), Error> {
        parse_queue(queue, field)?;
        let request = call.request(GetQueueRequest { name: queue.to_owned() });
        match self.routing.clone().get_queue(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => {
                Err(Error::not_found(queue.to_owned()).with_field_violation(field, "no such queue"))
            }
            Err(status) => Err(from_status(&status)),
        }
    }
}

/// The address a provider posts to for `channel_id` of `tenant` behind
/// `public_base_url` (see [`crate::public_base_url`]): what channels show
/// and what Twilio's signatures cover.
pub fn webhook_url(public_base_url: &str, tenant: &TenantId, channel_id: &ChannelId) -> String {
    format!("{public_base_url}/webhooks/{tenant}/{channel_id}")
}

/// A web chat's page, whose `/ws` is the visitors' WebSocket.
pub fn webchat_url(public_base_url: &str, tenant: &TenantId, channel_id: &ChannelId) -> String {
    format!("{public_base_url}/webchat/{tenant}/{channel_id}")
}

/// Whether a stored channel takes webhooks: enabled, with a provider.
pub fn is_active(channel: &Channel) -> bool {
    !channel.disabled && channel.provider.is_some()
}

/// The provider's name, for logs and metrics.
pub fn provider_label(channel: &Channel) -> &'static str {
    match channel.provider {
        Some(Provider::Twilio(_)) => "twilio",
        Some(Provider::Meta(_)) => "meta",
        Some(Provider::Telegram(_)) => "telegram",
        Some(Provider::WebForm(_)) => "web_form",
        Some(Provider::Social(_)) => "social",
        Some(Provider::Email(_)) => "email",
        Some(Provider::WebChat(_)) => "web_chat",
        Some(Provider::Cti(_)) => "cti",
        None => "none",
    }
}

#[tonic::async_trait]
impl ChannelService for ChannelApi {
    async fn create_channel(&self, request: Request<CreateChannelRequest>) -> Result<Response<Channel>, Status> {
        let principal = principal(&request)?;
        let call = CallContext::from_metadata(request.metadata());
        self.create(&principal, &call, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn get_channel(&self, request: Request<GetChannelRequest>) -> Result<Response<Channel>, Status> {
        let principal = principal(&request)?;
        self.get(&principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn list_channels(
        &self,
        request: Request<ListChannelsRequest>,
    ) -> Result<Response<ListChannelsResponse>, Status> {
        let principal = principal(&request)?;
        self.list(&principal, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn update_channel(&self, request: Request<UpdateChannelRequest>) -> Result<Response<Channel>, Status> {
        let principal = principal(&request)?;
        let call = CallContext::from_metadata(request.metadata());
        self.update(&principal, &call, request.into_inner()).await.into_status().map(Response::new)
    }

    async fn delete_channel(&self, request: Request<DeleteChannelRequest>) -> Result<Response<()>, Status> {
        let principal = principal(&request)?;
        self.delete(&principal, request.into_inner()).await.into_status().map(Response::new)
    }
}
