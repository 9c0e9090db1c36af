//! `switchboard.routing.v1.RoutingService`: queue management for tenant
//! admins, assignment lookups for readers, and offer decisions for agents.

use std::sync::Arc;

use switchboard_core::names::{
    agent_name, contact_name, parse_agent, parse_contact, parse_queue, parse_tenant, queue_name,
};
use switchboard_core::text::TextRule;
use switchboard_core::time::{duration_from_millis, millis_from_duration, optional_timestamp, timestamp_from_millis};
use switchboard_core::{AgentId, Error, Principal, QueueId, Role, TenantId};
use switchboard_platform::audit::Change;
use switchboard_platform::auth::{AccessControl, LogName};
use switchboard_platform::credentials::TenantLimits;
use switchboard_platform::grpc::answer;
use switchboard_platform::pagination::{PageRequest, page, page_request};
use switchboard_platform::quota::{admit_one_more, count_needed};
use switchboard_proto::common::v1::{Channel, ContactStatus};
use switchboard_proto::routing::v1::routing_service_server::RoutingService;
use switchboard_proto::routing::v1::{
    AcceptOfferRequest, Assignment, ChannelQueueStatus, CompleteContactRequest, CreateQueueRequest, DeleteQueueRequest,
    GetAssignmentRequest, GetQueueRequest, GetQueueStatusRequest, ListQueuesRequest, ListQueuesResponse, Queue,
    QueueStatus, RejectOfferRequest, RequestCallbackRequest, TransferContactRequest, TransferReason,
    UpdateQueueRequest, transfer_contact_request,
};
use tonic::{Request, Response, Status};

use crate::domain::{ContactRecord, RoutingStatus};
use crate::engine::Engine;
use crate::queue_config::{Arrival, UPDATABLE_FIELDS, all_of, arrival, validate_queue, with_defaults};

/// An agent's disposition: one line, as CRM's timeline and KPI store it.
const DISPOSITION: TextRule = TextRule::line(128);
/// Free notes and reasons: paragraphs.
const NOTES: TextRule = TextRule::paragraphs(4096);

pub struct RoutingApi {
    pub engine: Arc<Engine>,
    pub access: Arc<AccessControl>,
}

fn contact_status(status: RoutingStatus) -> ContactStatus {
    match status {
        RoutingStatus::Queued => ContactStatus::Queued,
        RoutingStatus::Offered => ContactStatus::Offered,
        RoutingStatus::Answered => ContactStatus::Answered,
        RoutingStatus::Completed => ContactStatus::Completed,
        RoutingStatus::Abandoned => ContactStatus::Abandoned,
    }
}

fn assignment(record: &ContactRecord, position: i32) -> Assignment {
    assignment_with_estimate(record, position, None)
}

fn assignment_with_estimate(record: &ContactRecord, position: i32, estimated_wait_ms: Option<i64>) -> Assignment {
    Assignment {
        contact: contact_name(&record.tenant, &record.contact),
        queue: queue_name(&record.tenant, &record.queue),
        channel: record.channel,
        status: contact_status(record.status) as i32,
        agent: record.agent.as_ref().map(agent_name).unwrap_or_default(),
        enqueue_time: Some(timestamp_from_millis(record.enqueue_ms)),
        offer_expire_time: optional_timestamp(record.offer_expire_ms),
        answer_time: optional_timestamp(record.answer_ms),
        end_time: optional_timestamp(record.end_ms),
        position,
        estimated_wait: estimated_wait_ms.map(duration_from_millis),
        callback_number: record.rules.callback_number.clone().unwrap_or_default(),
        end_reason: record.rules.end_reason.map_or(0, crate::domain::EndReason::to_proto),
        customer: record.customer.clone(),
    }
}

/// Refuses a queue whose offer timeout or wrap-up time is over its
/// tenant's caps (the operator's), naming the field and the cap; with
/// `only`, just the fields it names (an update mask).
fn within_caps(queue: &Queue, limits: &TenantLimits, only: Option<&[String]>) -> Result<(), Error> {
    let millis = |duration: &Option<prost_types::Duration>| duration.as_ref().and_then(millis_from_duration);
    let checks = [
        ("offer_timeout", millis(&queue.offer_timeout), limits.max_offer_timeout_ms),
        ("wrap_up_time", millis(&queue.wrap_up_time), limits.max_wrap_up_ms),
    ];
    for (name, asked_ms, cap_ms) in checks {
        if only.is_some_and(|fields| !fields.iter().any(|field| field == name)) {
            continue;
        }
        let field = format!("queue.{name}");
        if let (Some(asked_ms), Some(cap_ms)) = (asked_ms, cap_ms)
            && asked_ms > cap_ms
        {
            return Err(Error::invalid_field(
                field,
                format!("must be at most {cap_ms} ms: the operator's cap for this tenant"),
            ));
        }
    }
    Ok(())
}

fn calling_agent(principal: &Principal) -> Result<AgentId, Error> {
    match (&principal.role, &principal.agent) {
        (Role::Agent, Some(agent)) => Ok(agent.clone()),
        _ => Err(Error::permission_denied(format!(
            "key `{}` is not an agent key: only agents decide on offers",
            principal.key_name
        ))),
    }
}

impl RoutingApi {
    fn authorize_write(&self, principal: &Principal, tenant: &TenantId) -> Result<(), Error> {
        self.access.authorize_write(principal, tenant)
    }

    async fn existing_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<Queue, Error> {
        self.engine
            .queues
            .get_queue_fresh(tenant, queue_id)
            .await?
            .ok_or_else(|| Error::not_found(queue_name(tenant, queue_id)))
    }

    async fn create(&self, principal: Principal, request: CreateQueueRequest) -> Result<Queue, Error> {
        let tenant = parse_tenant(&request.parent, "parent")?;
        // The caller's right before the body: a key that may not write
        // learns nothing about what a valid queue looks like.
        self.authorize_write(&principal, &tenant)?;
        let queue_id = QueueId::parse(&request.queue_id, "queue_id");
        // Named before validation, so rules that refer to the queue itself
        // (an overflow to itself) are caught; every bad field is reported.
        let name = queue_id.as_ref().map(|queue_id| queue_name(&tenant, queue_id)).unwrap_or_default();
        let queue = Queue { name, ..request.queue.unwrap_or_default() };
        let request_left_offer_timeout_unset = queue.offer_timeout.is_none();
        all_of([queue_id.as_ref().map(|_| ()).map_err(Clone::clone), validate_queue(&queue, "queue")])?;
        let queue_id = queue_id?;
        let limits = self.engine.tenant_policy(&tenant).limits;
        within_caps(&queue, &limits, None)?;
        if let Some(needed) = count_needed(limits.max_queues) {
            let existing = self.engine.queues.list_queues(&tenant, &PageRequest::first(needed)).await?.len();
            admit_one_more(&tenant, "queues", existing, limits.max_queues)?;
        }
        let now = Some(timestamp_from_millis(self.engine.clock.now_millis()));
        let mut queue = with_defaults(Queue { create_time: now, update_time: now, ..queue });
        // A default the tenant's cap does not allow becomes the cap.
        if request_left_offer_timeout_unset && let Some(cap_ms) = limits.max_offer_timeout_ms {
            let default_ms = queue.offer_timeout.as_ref().and_then(millis_from_duration).unwrap_or(cap_ms);
            queue.offer_timeout = Some(duration_from_millis(default_ms.min(cap_ms)));
        }
        self.engine.queues.create_queue(&tenant, &queue_id, &queue).await?;
        tracing::info!(tenant = %tenant, queue = %queue_id, key = %LogName(&principal), "queue created");
        let change = Change::new(Some(&tenant), "switchboard.routing.v1.RoutingService/CreateQueue", &queue.name);
        self.access.audit(&principal, change.after("switchboard.routing.v1.Queue", &queue)).await;
        Ok(queue)
    }

    async fn update(&self, principal: Principal, request: UpdateQueueRequest) -> Result<Queue, Error> {
        let changes = request.queue.ok_or_else(|| Error::missing_field("queue"))?;
        let (tenant, queue_id) = parse_queue(&changes.name, "queue.name")?;
        self.authorize_write(&principal, &tenant)?;
        let paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid_field("update_mask", "must list the fields to update"));
        }
        if let Some(unknown) = paths.iter().find(|path| !UPDATABLE_FIELDS.contains(&path.as_str())) {
            return Err(Error::invalid_field("update_mask", format!("`{unknown}` cannot be updated")));
        }
        validate_queue(&changes, "queue")?;
        let mut queue = self.existing_queue(&tenant, &queue_id).await?;
        let before = queue.clone();
        for path in &paths {
            match path.as_str() {
                "display_name" => queue.display_name = changes.display_name.clone(),
                "channels" => queue.channels = changes.channels.clone(),
                "priority" => queue.priority = changes.priority,
                "required_skills" => queue.required_skills = changes.required_skills.clone(),
                "service_level_threshold" => queue.service_level_threshold = changes.service_level_threshold,
                "short_abandon_threshold" => queue.short_abandon_threshold = changes.short_abandon_threshold,
                "strategy" => queue.strategy = changes.strategy,
                "priority_aging_step" => queue.priority_aging_step = changes.priority_aging_step,
                "escalation_steps" => queue.escalation_steps = changes.escalation_steps.clone(),
                "max_wait" => queue.max_wait = changes.max_wait,
                "overflow_queue" => queue.overflow_queue = changes.overflow_queue.clone(),
                "preferred_agent_window" => queue.preferred_agent_window = changes.preferred_agent_window,
                "business_hours" => queue.business_hours = changes.business_hours.clone(),
                "wrap_up_time" => queue.wrap_up_time = changes.wrap_up_time,
                _ => queue.offer_timeout = changes.offer_timeout,
            }
        }
        // The fields together must still make a valid queue (e.g. a closed
        // action OVERFLOW needs an overflow queue).
        validate_queue(&queue, "queue")?;
        // Only what this update sets is held to the caps: a queue made
        // before a cap was lowered stays editable (routing holds it to the
        // cap anyway).
        within_caps(&queue, &self.engine.tenant_policy(&tenant).limits, Some(&paths))?;
        let mut queue = with_defaults(queue);
        queue.update_time = Some(timestamp_from_millis(self.engine.clock.now_millis()));
        if !self.engine.queues.update_queue(&tenant, &queue_id, &queue).await? {
            return Err(Error::not_found(queue_name(&tenant, &queue_id)));
        }
        tracing::info!(tenant = %tenant, queue = %queue_id, fields = ?paths, "queue updated");
        let change = Change::new(Some(&tenant), "switchboard.routing.v1.RoutingService/UpdateQueue", &queue.name);
        self.access
            .audit(
                &principal,
                change.before("switchboard.routing.v1.Queue", &before).after("switchboard.routing.v1.Queue", &queue),
            )
            .await;
        Ok(queue)
    }

    async fn record_for(&self, principal: &Principal, contact_field: &str, name: &str) -> Result<ContactRecord, Error> {
        let (tenant, contact) = parse_contact(name, contact_field)?;
        match principal.role {
            // An agent is limited below; ingestion reads, as itself, whether
            // a conversation's contact ended (every change also checks the
            // caller's role, which the service has not).
            Role::Agent | Role::Service => self.access.require_tenant(&tenant)?,
            _ => self.access.authorize_intake_read(principal, &tenant)?,
        }
        let record = self.engine.state.get_contact(&tenant, &contact).await?;
        let record = record.ok_or_else(|| Error::not_found(contact_name(&tenant, &contact)))?;
        // An agent sees only contacts it holds or was last offered (so a
        // late accept learns why); any other is as if absent.
        if principal.role == Role::Agent && record.agent != principal.agent && record.last_offered != principal.agent {
            return Err(Error::not_found(contact_name(&tenant, &contact)));
        }
        Ok(record)
    }

    async fn get(&self, principal: Principal, request: GetQueueRequest) -> Result<Queue, Error> {
        let (tenant, queue_id) = parse_queue(&request.name, "name")?;
        // Ingestion asks for the queue of a contact on its caller's key.
        self.access.authorize_intake_read(&principal, &tenant)?;
        self.existing_queue(&tenant, &queue_id).await
    }

    async fn list(&self, principal: Principal, request: ListQueuesRequest) -> Result<ListQueuesResponse, Error> {
        let tenant = parse_tenant(&request.parent, "parent")?;
        let list = format!("routing.ListQueues {}", request.parent);
        let page_request = page_request(&list, request.page_size, &request.page_token)?;
        self.access.authorize_read(&principal, &tenant)?;
        let queues = self.engine.queues.list_queues(&tenant, &page_request).await?;
        let (queues, next_page_token) =
            page(queues, &page_request, |queue| queue.name.rsplit('/').next().unwrap_or_default().to_owned());
        Ok(ListQueuesResponse { queues, next_page_token })
    }

    async fn delete(&self, principal: Principal, request: DeleteQueueRequest) -> Result<(), Error> {
        let (tenant, queue_id) = parse_queue(&request.name, "name")?;
        self.authorize_write(&principal, &tenant)?;
        let before = self.existing_queue(&tenant, &queue_id).await?;
        if !self.engine.queues.delete_queue(&tenant, &queue_id).await? {
            return Err(Error::not_found(queue_name(&tenant, &queue_id)));
        }
        tracing::info!(tenant = %tenant, queue = %queue_id, key = %LogName(&principal), "queue deleted");
        let change = Change::new(Some(&tenant), "switchboard.routing.v1.RoutingService/DeleteQueue", &before.name);
        self.access.audit(&principal, change.before("switchboard.routing.v1.Queue", &before)).await;
        Ok(())
    }

    async fn get_assignment(&self, principal: Principal, request: GetAssignmentRequest) -> Result<Assignment, Error> {
        let record = self.record_for(&principal, "contact", &request.contact).await?;
        let position = self.engine.state.position(&record).await?;
        let pace = self.engine.state.answer_pace(&record.tenant, &record.queue, record.channel).await?;
        Ok(assignment_with_estimate(&record, position, pace.estimated_wait_ms(position)))
    }

    async fn accept(&self, principal: Principal, request: AcceptOfferRequest) -> Result<Assignment, Error> {
        let agent = calling_agent(&principal)?;
        let record = self.record_for(&principal, "contact", &request.contact).await?;
        let record = self.engine.durably(self.engine.accept(&record, &agent)).await?;
        Ok(assignment(&record, 0))
    }

    async fn reject(&self, principal: Principal, request: RejectOfferRequest) -> Result<Assignment, Error> {
        let agent = calling_agent(&principal)?;
        NOTES.check("reason", &request.reason)?;
        let record = self.record_for(&principal, "contact", &request.contact).await?;
        let record = self.engine.durably(self.engine.reject(&record.tenant, &record.contact, &agent)).await?;
        let position = self.engine.state.position(&record).await?;
        Ok(assignment(&record, position))
    }

    async fn complete(&self, principal: Principal, request: CompleteContactRequest) -> Result<Assignment, Error> {
        let agent = calling_agent(&principal)?;
        if request.disposition.is_empty() {
            return Err(Error::missing_field("disposition"));
        }
        DISPOSITION.check("disposition", &request.disposition)?;
        NOTES.check("notes", &request.notes)?;
        let record = self.record_for(&principal, "contact", &request.contact).await?;
        let completion = self.engine.complete(&record, &agent, &request.disposition, request.resolved);
        let record = self.engine.durably(completion).await?;
        Ok(assignment(&record, 0))
    }

    async fn transfer(&self, principal: Principal, request: TransferContactRequest) -> Result<Assignment, Error> {
        let (tenant, contact) = parse_contact(&request.contact, "contact")?;
        let target = request.target.as_ref().ok_or_else(|| Error::missing_field("queue"))?;
        // The handling agent may hand its own contact over; otherwise a
        // tenant writer (supervisor, IVR, integration) may move any.
        let record = self.record_for(&principal, "contact", &request.contact).await?;
        if principal.role != Role::Agent {
            self.access.authorize_intake(&principal, &tenant)?;
        }
        let record = match target {
            transfer_contact_request::Target::Queue(queue) => {
                let (queue_tenant, queue_id) = parse_queue(queue, "queue")?;
                if queue_tenant != tenant {
                    return Err(Error::invalid_field("queue", "must belong to the contact's tenant"));
                }
                let change = self.engine.move_to(&tenant, &record.contact, &queue_id, TransferReason::Requested);
                self.engine.durably(change).await?
            }
            transfer_contact_request::Target::Agent(agent) => {
                let agent = parse_agent(agent, "agent")?;
                let serves =
                    self.engine.state.agent(&agent).await?.is_some_and(|live| live.profile.tenants.contains(&tenant));
                if !serves {
                    return Err(Error::invalid_field("agent", "is not an agent of the contact's tenant"));
                }
                self.engine.durably(self.engine.transfer_to_agent(&tenant, &contact, &agent)).await?
            }
        };
        let position = self.engine.state.position(&record).await?;
        Ok(assignment(&record, position))
    }

    async fn callback(&self, principal: Principal, request: RequestCallbackRequest) -> Result<Assignment, Error> {
        let (tenant, contact) = parse_contact(&request.contact, "contact")?;
        if request.phone_number.is_empty() {
            return Err(Error::missing_field("phone_number"));
        }
        if !crate::domain::rules::is_e164(&request.phone_number) {
            return Err(Error::invalid_field("phone_number", "must be E.164: + and 8-15 digits"));
        }
        self.access.authorize_intake(&principal, &tenant)?;
        let record =
            self.engine.durably(self.engine.request_callback(&tenant, &contact, &request.phone_number)).await?;
        let position = self.engine.state.position(&record).await?;
        Ok(assignment(&record, position))
    }

    async fn queue_status(&self, principal: Principal, request: GetQueueStatusRequest) -> Result<QueueStatus, Error> {
        let (tenant, queue_id) = parse_queue(&request.name, "name")?;
        self.access.authorize_intake_read(&principal, &tenant)?;
        let queue = self.existing_queue(&tenant, &queue_id).await?;
        let now = self.engine.clock.now_millis();
        let channels: Vec<i32> = if queue.channels.is_empty() {
            (1..=8).filter(|channel| Channel::try_from(*channel).is_ok()).collect()
        } else {
            queue.channels.clone()
        };
        let mut statuses = Vec::with_capacity(channels.len());
        for channel in channels {
            let line = self.engine.state.line_status(&tenant, &queue_id, channel).await?;
            let pace = self.engine.state.answer_pace(&tenant, &queue_id, channel).await?;
            statuses.push(ChannelQueueStatus {
                channel,
                waiting: line.waiting,
                head_wait: line.head.map(|head| duration_from_millis((now - head.enqueue_ms).max(0))),
                estimated_wait: pace.estimated_wait_ms(line.waiting.saturating_add(1)).map(duration_from_millis),
            });
        }
        Ok(QueueStatus {
            name: queue_name(&tenant, &queue_id),
            open: arrival(&queue, now) == Arrival::Open,
            channels: statuses,
        })
    }
}

#[tonic::async_trait]
impl RoutingService for RoutingApi {
    async fn create_queue(&self, request: Request<CreateQueueRequest>) -> Result<Response<Queue>, Status> {
        answer(request, |principal, body| self.create(principal, body)).await
    }

    async fn get_queue(&self, request: Request<GetQueueRequest>) -> Result<Response<Queue>, Status> {
        answer(request, |principal, body| self.get(principal, body)).await
    }

    async fn list_queues(&self, request: Request<ListQueuesRequest>) -> Result<Response<ListQueuesResponse>, Status> {
        answer(request, |principal, body| self.list(principal, body)).await
    }

    async fn update_queue(&self, request: Request<UpdateQueueRequest>) -> Result<Response<Queue>, Status> {
        answer(request, |principal, body| self.update(principal, body)).await
    }

    async fn delete_queue(&self, request: Request<DeleteQueueRequest>) -> Result<Response<()>, Status> {
        answer(request, |principal, body| self.delete(principal, body)).await
    }

    async fn get_assignment(&self, request: Request<GetAssignmentRequest>) -> Result<Response<Assignment>, Status> {
        answer(request, |principal, body| self.get_assignment(principal, body)).await
    }

    async fn accept_offer(&self, request: Request<AcceptOfferRequest>) -> Result<Response<Assignment>, Status> {
        answer(request, |principal, body| self.accept(principal, body)).await
    }

    async fn reject_offer(&self, request: Request<RejectOfferRequest>) -> Result<Response<Assignment>, Status> {
        answer(request, |principal, body| self.reject(principal, body)).await
    }

    async fn complete_contact(&self, request: Request<CompleteContactRequest>) -> Result<Response<Assignment>, Status> {
        answer(request, |principal, body| self.complete(principal, body)).await
    }

    async fn transfer_contact(&self, request: Request<TransferContactRequest>) -> Result<Response<Assignment>, Status> {
        answer(request, |principal, body| self.transfer(principal, body)).await
    }

    async fn request_callback(&self, request: Request<RequestCallbackRequest>) -> Result<Response<Assignment>, Status> {
        answer(request, |principal, body| self.callback(principal, body)).await
    }

    async fn get_queue_status(&self, request: Request<GetQueueStatusRequest>) -> Result<Response<QueueStatus>, Status> {
        answer(request, |principal, body| self.queue_status(principal, body)).await
    }
}
