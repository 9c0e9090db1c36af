//! Calls of `cti` channels (issue 8, voice): the [`CallDesk`] applies a
//! PBX's events (from the webhook or `CallService`) to its calls and does
//! what each step needs to the call's contact, then stores the step (so a
//! crash in between is repaired by the PBX's retry: the contact's request id
//! names the call). It follows routing's offers of calls and presence's
//! state events to know the agent each call went to and where that agent's
//! phone is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use switchboard_core::event::{PRESENCE_TOPIC, ROUTING_TOPIC};
use switchboard_core::identity::identity_to_proto;
use switchboard_core::names::{parse_agent, parse_channel, parse_contact};
use switchboard_core::sync::lock_unpoisoned;
use switchboard_core::time::now_millis;
use switchboard_core::{AgentId, ChannelId, ContactId, Error, ErrorCode, Principal, TenantId};
use switchboard_platform::auth::{AccessControl, principal};
use switchboard_platform::bus::Delivery;
use switchboard_platform::status::IntoStatus;
use switchboard_proto::common::v1::{Channel as ChannelKind, Direction};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::call_service_server::CallService;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{
    Call, Channel as ChannelResource, Contact, CreateContactRequest, CtiSettings, GetCallRequest,
    ReportCallEventRequest,
};
use switchboard_proto::presence::v1::presence_event;
use switchboard_proto::routing::v1::routing_event;
use tonic::{Request, Response, Status};

use crate::calls::{CallRecord, CallStore, Effect, Step, apply, call_name, new_call};
use crate::channels::cti::{self, CallEvent};
use crate::channels_api::is_active;
use crate::egress::{Egress, refusal_in};
use crate::grpc::IngestionApi;
use crate::store::ContactStore;
use crate::store::channels::ChannelStore;

/// The consumer (and group) that follows routing and presence for calls.
pub const CALLS_CONSUMER: &str = "ingestion-calls";
/// The topics it reads.
pub const CALLS_TOPICS: [&str; 2] = [ROUTING_TOPIC, PRESENCE_TOPIC];
/// Attempts to push a decision to a PBX.
const DECISION_ATTEMPTS: u32 = 3;
/// How often a step that lost a race is tried again.
const MAX_RACE_ATTEMPTS: usize = 5;

/// Applies calls' events and answers for calls.
pub struct CallDesk {
    pub calls: Arc<dyn CallStore>,
    pub channels: Arc<dyn ChannelStore>,
    pub contacts: Arc<IngestionApi>,
    pub contact_store: Arc<dyn ContactStore>,
    pub access: Arc<AccessControl>,
    /// The endpoints this replica stored, by agent.
    pub endpoints_written: Mutex<HashMap<AgentId, String>>,
    /// Pushes decisions to PBXs ([`Egress::http_client`]).
    pub http: reqwest::Client,
    /// What a decision URL may reach.
    pub egress: Egress,
}

impl CallDesk {
    /// Applies one event of a call of `channel` (a `cti` channel of
    /// `tenant`); answers with the call.
    pub async fn report(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        channel: &ChannelResource,
        event: CallEvent,
    ) -> Result<Call, Error> {
        let Some(Provider::Cti(settings)) = &channel.provider else {
            return Err(Error::failed_precondition("the channel is not a `cti` channel"));
        };
        for _ in 0..MAX_RACE_ATTEMPTS {
            let Some(stored) = self.calls.get(tenant, channel_id, &event.call_id).await? else {
                let Some(call) = new_call(tenant, channel_id, &event, now_millis()) else {
                    return Err(Error::not_found(call_name(tenant, channel_id, &event.call_id))
                        .with_field_violation("event.call_id", "no new_call was reported for this call"));
                };
                if self.calls.insert(&call).await? {
                    tracing::info!(tenant = %tenant, channel = %channel_id, call = %call.call_id, "call started");
                    return self.answer(&call).await;
                }
                continue;
            };
            let (mut next, effect) = match apply(&stored.call, &event, now_millis()) {
                Step::Unchanged => return self.answer(&stored.call).await,
                Step::Changed { next, effect } => (*next, effect),
            };
            self.carry_out(&mut next, &effect, channel, settings).await?;
            if self.calls.update(&next, stored.revision).await? {
                tracing::info!(tenant = %tenant, channel = %channel_id, call = %next.call_id, stage = ?next.stage, effect = ?effect, "call moved on");
                return self.answer(&next).await;
            }
        }
        Err(Error::new(ErrorCode::Aborted, "the call changed meanwhile; send the event again"))
    }

    /// The call, with its agent's endpoint.
    pub async fn get(&self, tenant: &TenantId, channel_id: &ChannelId, call_id: &str) -> Result<Call, Error> {
        match self.calls.get(tenant, channel_id, call_id).await? {
            Some(stored) => self.answer(&stored.call).await,
            None => Err(Error::not_found(call_name(tenant, channel_id, call_id))),
        }
    }

    async fn answer(&self, call: &CallRecord) -> Result<Call, Error> {
        let endpoint = match &call.agent {
            Some(agent) => self.calls.endpoint(agent).await?,
            None => String::new(),
        };
        Ok(call.to_proto(&endpoint))
    }

    /// Does to the call's contact what the step needs. Each effect is
    /// idempotent (the contact's request id names the call), so a step
    /// retried after a crash or a lost race repeats it harmlessly.
    async fn carry_out(
        &self,
        call: &mut CallRecord,
        effect: &Effect,
        channel: &ChannelResource,
        settings: &CtiSettings,
    ) -> Result<(), Error> {
        match effect {
            Effect::None => Ok(()),
            Effect::Enqueue { queue } => {
                let queue = match queue {
                    None => channel.queue.clone(),
                    Some(queue) if settings.queues.iter().any(|allowed| allowed == queue.as_str()) => {
                        format!("tenants/{}/queues/{queue}", call.tenant)
                    }
                    Some(queue) => {
                        return Err(Error::invalid_field(
                            "event.queue",
                            format!("`{queue}` is not one of the channel's queues"),
                        ));
                    }
                };
                call.contact = Some(self.create_contact(call, queue, false).await?);
                Ok(())
            }
            Effect::AbandonInQueue => {
                if let Some(contact) = &call.contact {
                    self.contacts.abandon_unanswered(&call.tenant, contact, "the caller hung up in the queue").await?;
                }
                Ok(())
            }
            Effect::EndInIvr => {
                let contact = self.create_contact(call, channel.queue.clone(), true).await?;
                self.contacts.abandon_unanswered(&call.tenant, &contact, "the caller hung up in the IVR").await?;
                call.contact = Some(contact);
                Ok(())
            }
        }
    }

    async fn create_contact(&self, call: &CallRecord, queue: String, ended_in_ivr: bool) -> Result<ContactId, Error> {
        // Request ids are printable ASCII of bounded length; call ids are
        // the PBX's, so they are named by a digest.
        let digest = hex::encode(Sha256::digest(call.call_id.as_bytes()));
        let request = CreateContactRequest {
            parent: format!("tenants/{}", call.tenant),
            request_id: format!("call-{}-{}", call.channel_id, &digest[..32]),
            contact: Some(Contact {
                channel: ChannelKind::Voice as i32,
                direction: Direction::Inbound as i32,
                from: Some(identity_to_proto(&call.from)),
                queue,
                subject: format!("Call from {}", call.from.value),
                attributes: [
                    ("channel".to_owned(), call.channel_id.to_string()),
                    ("provider".to_owned(), "cti".to_owned()),
                    ("call_id".to_owned(), call.call_id.clone()),
                ]
                .into_iter()
                .collect(),
                provider_message_id: call.call_id.clone(),
                ended_in_self_service: ended_in_ivr,
                ..Contact::default()
            }),
        };
        // A call that ended in the IVR waited there since it came in; a
        // queued one waits from now.
        let arrived_ms = if ended_in_ivr { call.created_ms } else { now_millis() };
        let created = self.contacts.create_arrived(request, arrived_ms).await?;
        Ok(parse_contact(&created.name, "contact.name")?.1)
    }

    /// The consumer's handler: the agent a call was offered to (or that
    /// answered it) from routing, agents' voice endpoints from presence.
    pub async fn on_events(&self, deliveries: &[Delivery]) -> Result<(), Error> {
        for delivery in deliveries {
            match &delivery.envelope.payload {
                Some(Payload::Presence(event)) => {
                    if let Some(presence_event::Kind::StateChanged(changed)) = &event.kind {
                        let agent = parse_agent(&changed.agent, "state_changed.agent")?;
                        // Agents change state with every contact: write
                        // only what changed since this replica last wrote.
                        let known =
                            lock_unpoisoned(&self.endpoints_written).get(&agent) == Some(&changed.voice_endpoint);
                        if !known {
                            self.calls.set_endpoint(&agent, &changed.voice_endpoint).await?;
                            lock_unpoisoned(&self.endpoints_written).insert(agent, changed.voice_endpoint.clone());
                        }
                    }
                }
                Some(Payload::Routing(event)) => {
                    // Every offer of a call names its agent (a re-offer names
                    // the next); other channels' events need no look-up.
                    let (contact, agent) = match &event.kind {
                        Some(routing_event::Kind::Offered(offered)) if offered.channel == ChannelKind::Voice as i32 => {
                            (&offered.contact, &offered.agent)
                        }
                        _ => continue,
                    };
                    let (tenant, contact) = parse_contact(contact, "contact")?;
                    if delivery.envelope.tenant != tenant.as_str() {
                        return Err(Error::invalid_field("contact", "names another tenant than its envelope"));
                    }
                    self.assign(&tenant, &contact, &parse_agent(agent, "agent")?).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Records the agent on the call of `contact`, if it is a call's.
    async fn assign(&self, tenant: &TenantId, contact: &ContactId, agent: &AgentId) -> Result<(), Error> {
        let Some(record) = self.contact_store.get(tenant, contact).await? else { return Ok(()) };
        let attributes = &record.contact.attributes;
        let (Some(channel), Some(call_id)) = (attributes.get("channel"), attributes.get("call_id")) else {
            return Ok(());
        };
        if attributes.get("provider").map(String::as_str) != Some("cti") {
            return Ok(());
        }
        let channel_id = ChannelId::parse(channel, "attributes.channel")?;
        for _ in 0..MAX_RACE_ATTEMPTS {
            let Some(stored) = self.calls.get(tenant, &channel_id, call_id).await? else { return Ok(()) };
            if stored.call.agent.as_ref() == Some(agent) {
                return Ok(());
            }
            let next = CallRecord { agent: Some(agent.clone()), ..stored.call };
            if self.calls.update(&next, stored.revision).await? {
                tracing::info!(tenant = %tenant, channel = %channel_id, call = %call_id, agent = %agent, "call routed to an agent");
                self.push_decision(&next).await?;
                return Ok(());
            }
        }
        Err(Error::unavailable("the call kept changing; the agent is recorded on the retry"))
    }

    /// POSTs the call's decision to its channel's `decision_url`, if it
    /// has one, in the background: three attempts, a second apart and
    /// more; a PBX that misses it can still poll.
    async fn push_decision(&self, call: &CallRecord) -> Result<(), Error> {
        let Some(stored) = self.channels.get(&call.tenant, &call.channel_id).await? else { return Ok(()) };
        let Some(Provider::Cti(settings)) = &stored.channel.provider else { return Ok(()) };
        if settings.decision_url.is_empty() {
            return Ok(());
        }
        let answer = self.answer(call).await?;
        let Some(request) = cti::decision_request(&settings.decision_url, &settings.signing_secret, &answer) else {
            return Ok(());
        };
        if let Err(reason) = self.egress.check_url(&request.url) {
            tracing::warn!(tenant = %call.tenant, call = %call.call_id, error = %reason, "decision not pushed");
            return Ok(());
        }
        let (http, tenant, call_id) = (self.http.clone(), call.tenant.clone(), call.call_id.clone());
        tokio::spawn(async move {
            for attempt in 0..DECISION_ATTEMPTS {
                let mut builder = http.post(&request.url).body(request.body.clone());
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                match builder.send().await {
                    Ok(response) if response.status().is_success() => return,
                    Ok(response) => {
                        tracing::warn!(tenant = %tenant, call = %call_id, status = response.status().as_u16(), attempt, "decision refused by the PBX");
                    }
                    Err(error) => {
                        tracing::warn!(tenant = %tenant, call = %call_id, error = %error, attempt, "decision not delivered");
                        // Refused where its name leads: no attempt will pass.
                        if refusal_in(&error).is_some() {
                            return;
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
            }
        });
        Ok(())
    }

    /// The active `cti` channel `name` names, for a caller allowed to
    /// `write` (or read) its tenant.
    async fn channel_for(
        &self,
        principal: &Principal,
        name: &str,
        field: &str,
        write: bool,
    ) -> Result<(TenantId, ChannelId, ChannelResource), Error> {
        let (tenant, channel_id) = parse_channel(name, field)?;
        if write {
            self.access.authorize_intake(principal, &tenant)?;
        } else {
            self.access.authorize_intake_read(principal, &tenant)?;
        }
        let stored = self.channels.get(&tenant, &channel_id).await?;
        let channel = stored.map(|stored| stored.channel).filter(is_active);
        match channel {
            Some(channel) if matches!(channel.provider, Some(Provider::Cti(_))) => Ok((tenant, channel_id, channel)),
            Some(_) => Err(Error::failed_precondition(format!("`{name}` is not a `cti` channel"))),
            None => Err(Error::not_found(name.to_owned())),
        }
    }
}

#[tonic::async_trait]
impl CallService for CallDesk {
    async fn report_call_event(&self, request: Request<ReportCallEventRequest>) -> Result<Response<Call>, Status> {
        let principal = principal(&request)?;
        let request = request.into_inner();
        let outcome = async {
            let (tenant, channel_id, channel) = self.channel_for(&principal, &request.channel, "channel", true).await?;
            let event = request.event.as_ref().ok_or_else(|| Error::missing_field("event"))?;
            let event = cti::from_proto(event, "event")?;
            self.report(&tenant, &channel_id, &channel, event).await
        };
        outcome.await.into_status().map(Response::new)
    }

    async fn get_call(&self, request: Request<GetCallRequest>) -> Result<Response<Call>, Status> {
        let principal = principal(&request)?;
        let name = request.into_inner().name;
        let outcome = async {
            let (channel_name, call_id) = name.split_once("/calls/").ok_or_else(|| {
                Error::invalid_field("name", "must be tenants/{tenant}/channels/{channel}/calls/{call}")
            })?;
            let (tenant, channel_id, _) = self.channel_for(&principal, channel_name, "name", false).await?;
            self.get(&tenant, &channel_id, call_id).await
        };
        outcome.await.into_status().map(Response::new)
    }
}
