//! Every RPC of the API refuses a caller of another tenant and a caller of
//! the wrong role, and an anonymous one. The descriptor set lists the RPCs:
//! a new RPC without its cases here fails this test.
//!
//! Each request is well-formed and names real resources of `acme` where
//! the RPC reads or changes one, so a refusal comes from authorization,
//! not from validation: a tenant-scoped key on another tenant's resource is
//! PERMISSION_DENIED (it learns nothing of whether the resource exists); a
//! role that may not call the RPC is PERMISSION_DENIED, or NOT_FOUND where
//! the API hides what is not the caller's (agents, other tenants' keys).
//! Rate limits per key and per tenant refuse what is over them, and only
//! that key's or tenant's calls.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;

use prost::Message;
use support::{Endpoints, Process, authorized, scratch_dir, service_of, wait_until_serving};
use switchboard_proto::access::v1 as access;
use switchboard_proto::common::v1::{Channel as ChannelKind, CustomerIdentity, IdentityKind};
use switchboard_proto::crm::v1 as crm;
use switchboard_proto::ingestion::v1 as ingestion;
use switchboard_proto::kpi::v1 as kpi;
use switchboard_proto::presence::v1 as presence;
use switchboard_proto::routing::v1 as routing;
use switchboard_test_support::{RawCodec, every_rpc};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;

const OPERATOR: &str = "dev-operator-admin";
const ACME_ADMIN: &str = "dev-acme-admin";
const ACME_READER: &str = "dev-acme-reader";
const GLOBEX_ADMIN: &str = "dev-globex-admin";
const GLOBEX_READER: &str = "dev-globex-reader";
const INTEGRATION: &str = "dev-acme-integration";
const SUPERVISOR: &str = "dev-acme-supervisor";
const BOB: &str = "dev-agent-bob";
const CAROL: &str = "dev-agent-carol";

const DENIED: &[Code] = &[Code::PermissionDenied];
const HIDDEN: &[Code] = &[Code::PermissionDenied, Code::NotFound];

/// Real resources of acme the requests name.
struct World {
    queue: String,
    contact: String,
    customer: String,
    channel: String,
    conversation: String,
    api_key: String,
}

/// One call: who makes it, with what, and the codes that count as refused.
struct Call {
    key: &'static str,
    body: Vec<u8>,
    refused_with: &'static [Code],
}

fn call(key: &'static str, message: &impl Message, refused_with: &'static [Code]) -> Call {
    Call { key, body: message.encode_to_vec(), refused_with }
}

async fn send(endpoints: &Endpoints, path: &str, key: Option<&str>, body: Vec<u8>) -> Code {
    let mut client = Grpc::new(endpoints.channel(service_of(path)).await);
    client.ready().await.expect("the server is up");
    let method = PathAndQuery::try_from(path).expect("path");
    let request = match key {
        Some(key) => authorized(key, body),
        None => tonic::Request::new(body),
    };
    if path.ends_with("/AgentSession") {
        let request = request.map(|body| tokio_stream::iter([body]));
        return match client.streaming(request, method, RawCodec).await {
            Err(status) => status.code(),
            Ok(response) => first_code(response.into_inner()).await,
        };
    }
    match client.server_streaming(request, method, RawCodec).await {
        Err(status) => status.code(),
        Ok(response) => first_code(response.into_inner()).await,
    }
}

/// OK if the stream's first item is a message, else the status it ends with.
async fn first_code(mut responses: tonic::Streaming<Vec<u8>>) -> Code {
    match responses.next().await {
        Some(Ok(_)) => Code::Ok,
        Some(Err(status)) => status.code(),
        None => Code::Ok,
    }
}

/// The cases of each RPC, by `/package.Service/Method`.
fn cases(world: &World) -> BTreeMap<&'static str, Vec<Call>> {
    let acme = || "tenants/acme".to_owned();
    let queue = || world.queue.clone();
    let contact = || world.contact.clone();
    let customer = || world.customer.clone();
    let channel = || world.channel.clone();
    let conversation = || world.conversation.clone();
    let mut cases: BTreeMap<&'static str, Vec<Call>> = BTreeMap::new();
    let mut add = |rpc: &'static str, calls: Vec<Call>| {
        cases.insert(rpc, calls);
    };

    // Access: tenants are the operator's; keys are managed within a tenant.
    let tenant = access::CreateTenantRequest { tenant_id: "umbrella".to_owned(), tenant: None };
    add(
        "/switchboard.access.v1.AccessService/CreateTenant",
        vec![call(ACME_ADMIN, &tenant, DENIED), call(BOB, &tenant, DENIED)],
    );
    let get_tenant = access::GetTenantRequest { name: acme() };
    add(
        "/switchboard.access.v1.AccessService/GetTenant",
        vec![call(GLOBEX_ADMIN, &get_tenant, DENIED), call(BOB, &get_tenant, DENIED)],
    );
    let list_tenants = access::ListTenantsRequest::default();
    add(
        "/switchboard.access.v1.AccessService/ListTenants",
        vec![call(ACME_ADMIN, &list_tenants, DENIED), call(BOB, &list_tenants, DENIED)],
    );
    let rename = access::UpdateTenantRequest {
        tenant: Some(access::Tenant { name: acme(), display_name: "Acme".to_owned(), ..access::Tenant::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["display_name".to_owned()] }),
    };
    add(
        "/switchboard.access.v1.AccessService/UpdateTenant",
        vec![call(GLOBEX_ADMIN, &rename, DENIED), call(ACME_ADMIN, &rename, DENIED)],
    );
    let suspend = access::SuspendTenantRequest { name: acme() };
    add(
        "/switchboard.access.v1.AccessService/SuspendTenant",
        vec![call(GLOBEX_ADMIN, &suspend, DENIED), call(ACME_ADMIN, &suspend, DENIED)],
    );
    let resume = access::ResumeTenantRequest { name: acme() };
    add(
        "/switchboard.access.v1.AccessService/ResumeTenant",
        vec![call(GLOBEX_ADMIN, &resume, DENIED), call(ACME_READER, &resume, DENIED)],
    );
    // Forced, so only authorization stands between the call and the erasure
    // of acme's data.
    let delete = access::DeleteTenantRequest { name: acme(), force: true };
    add(
        "/switchboard.access.v1.AccessService/DeleteTenant",
        vec![call(ACME_ADMIN, &delete, DENIED), call(GLOBEX_ADMIN, &delete, DENIED), call(SUPERVISOR, &delete, DENIED)],
    );
    let acme_key = access::CreateApiKeyRequest {
        api_key: Some(access::ApiKey {
            display_name: "x".to_owned(),
            role: "tenant_admin".to_owned(),
            tenant: acme(),
            ..access::ApiKey::default()
        }),
    };
    add(
        "/switchboard.access.v1.AccessService/CreateApiKey",
        vec![
            call(GLOBEX_ADMIN, &acme_key, DENIED),
            call(ACME_READER, &acme_key, DENIED),
            call(INTEGRATION, &acme_key, DENIED),
            call(SUPERVISOR, &acme_key, DENIED),
        ],
    );
    let list_keys = access::ListApiKeysRequest { tenant: acme(), ..Default::default() };
    add(
        "/switchboard.access.v1.AccessService/ListApiKeys",
        vec![call(GLOBEX_ADMIN, &list_keys, DENIED), call(ACME_READER, &list_keys, DENIED)],
    );
    let get_key = access::GetApiKeyRequest { name: world.api_key.clone() };
    add(
        "/switchboard.access.v1.AccessService/GetApiKey",
        vec![call(GLOBEX_ADMIN, &get_key, HIDDEN), call(ACME_READER, &get_key, HIDDEN)],
    );
    let revoke = access::RevokeApiKeyRequest { name: world.api_key.clone() };
    add(
        "/switchboard.access.v1.AccessService/RevokeApiKey",
        vec![call(GLOBEX_ADMIN, &revoke, HIDDEN), call(BOB, &revoke, HIDDEN)],
    );
    let rotate = access::RotateApiKeyRequest { name: world.api_key.clone(), previous_secret_valid_for: None };
    add(
        "/switchboard.access.v1.AccessService/RotateApiKey",
        vec![call(GLOBEX_ADMIN, &rotate, HIDDEN), call(ACME_READER, &rotate, HIDDEN)],
    );

    let audit = access::ListAuditRecordsRequest { tenant: acme(), ..Default::default() };
    add(
        "/switchboard.access.v1.AccessService/ListAuditRecords",
        vec![call(GLOBEX_ADMIN, &audit, DENIED), call(ACME_READER, &audit, DENIED), call(INTEGRATION, &audit, DENIED)],
    );

    // CRM.
    let resolve = crm::ResolveCustomerRequest {
        parent: acme(),
        identity: Some(CustomerIdentity { kind: IdentityKind::Email as i32, value: "z@example.com".to_owned() }),
        display_name: String::new(),
    };
    add(
        "/switchboard.crm.v1.CrmService/ResolveCustomer",
        vec![call(GLOBEX_ADMIN, &resolve, DENIED), call(ACME_READER, &resolve, DENIED)],
    );
    let get_customer = crm::GetCustomerRequest { name: customer(), contact: String::new() };
    add(
        "/switchboard.crm.v1.CrmService/GetCustomer",
        vec![
            call(GLOBEX_READER, &get_customer, DENIED),
            call(BOB, &crm::GetCustomerRequest { contact: contact(), ..get_customer.clone() }, HIDDEN),
        ],
    );
    let list_customers = crm::ListCustomersRequest { parent: acme(), ..Default::default() };
    add(
        "/switchboard.crm.v1.CrmService/ListCustomers",
        vec![call(GLOBEX_READER, &list_customers, DENIED), call(BOB, &list_customers, DENIED)],
    );
    let timeline = crm::ListTimelineEntriesRequest { parent: customer(), contact: contact(), ..Default::default() };
    add(
        "/switchboard.crm.v1.CrmService/ListTimelineEntries",
        vec![
            call(
                GLOBEX_READER,
                &crm::ListTimelineEntriesRequest { contact: String::new(), ..timeline.clone() },
                DENIED,
            ),
            call(BOB, &timeline, HIDDEN),
            call(INTEGRATION, &crm::ListTimelineEntriesRequest { contact: String::new(), ..timeline.clone() }, DENIED),
        ],
    );
    let attach = crm::AddCustomerIdentityRequest {
        customer: customer(),
        identity: Some(CustomerIdentity { kind: IdentityKind::Phone as i32, value: "+15550100999".to_owned() }),
    };
    add(
        "/switchboard.crm.v1.CrmService/AddCustomerIdentity",
        vec![
            call(GLOBEX_ADMIN, &attach, DENIED),
            call(ACME_READER, &attach, DENIED),
            call(INTEGRATION, &attach, DENIED),
        ],
    );
    let merge =
        crm::MergeCustomersRequest { customer: customer(), merged_customer: "tenants/acme/customers/cu_0".to_owned() };
    add(
        "/switchboard.crm.v1.CrmService/MergeCustomers",
        vec![call(GLOBEX_ADMIN, &merge, DENIED), call(ACME_READER, &merge, DENIED)],
    );

    // Ingestion: calls, channels, conversations, contacts.
    let call_event = ingestion::ReportCallEventRequest {
        channel: channel(),
        event: Some(ingestion::CallEvent {
            kind: ingestion::CallEventKind::NewCall as i32,
            call_id: "authz-1".to_owned(),
            from: "+15550100123".to_owned(),
            ..ingestion::CallEvent::default()
        }),
    };
    add(
        "/switchboard.ingestion.v1.CallService/ReportCallEvent",
        vec![call(GLOBEX_ADMIN, &call_event, DENIED), call(ACME_READER, &call_event, DENIED)],
    );
    let get_call = ingestion::GetCallRequest { name: format!("{}/calls/authz-1", channel()) };
    add(
        "/switchboard.ingestion.v1.CallService/GetCall",
        vec![call(GLOBEX_READER, &get_call, DENIED), call(BOB, &get_call, DENIED)],
    );
    let get_channel = ingestion::GetChannelRequest { name: channel() };
    add(
        "/switchboard.ingestion.v1.ChannelService/GetChannel",
        vec![call(GLOBEX_READER, &get_channel, DENIED), call(BOB, &get_channel, DENIED)],
    );
    let list_channels = ingestion::ListChannelsRequest { parent: acme(), ..Default::default() };
    add(
        "/switchboard.ingestion.v1.ChannelService/ListChannels",
        vec![call(GLOBEX_READER, &list_channels, DENIED), call(BOB, &list_channels, DENIED)],
    );
    let form = ingestion::Channel {
        queue: queue(),
        provider: Some(ingestion::channel::Provider::WebForm(ingestion::WebFormSettings::default())),
        ..ingestion::Channel::default()
    };
    let create_channel = ingestion::CreateChannelRequest {
        parent: acme(),
        channel_id: "authz-new".to_owned(),
        channel: Some(form.clone()),
    };
    add(
        "/switchboard.ingestion.v1.ChannelService/CreateChannel",
        vec![
            call(GLOBEX_ADMIN, &create_channel, DENIED),
            call(ACME_READER, &create_channel, DENIED),
            call(INTEGRATION, &create_channel, DENIED),
            call(SUPERVISOR, &create_channel, DENIED),
        ],
    );
    let update_channel = ingestion::UpdateChannelRequest {
        channel: Some(ingestion::Channel {
            name: channel(),
            display_name: "x".to_owned(),
            ..ingestion::Channel::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["display_name".to_owned()] }),
    };
    add(
        "/switchboard.ingestion.v1.ChannelService/UpdateChannel",
        vec![call(GLOBEX_ADMIN, &update_channel, DENIED), call(ACME_READER, &update_channel, DENIED)],
    );
    let delete_channel = ingestion::DeleteChannelRequest { name: channel() };
    add(
        "/switchboard.ingestion.v1.ChannelService/DeleteChannel",
        vec![call(GLOBEX_ADMIN, &delete_channel, DENIED), call(ACME_READER, &delete_channel, DENIED)],
    );
    let get_conversation = ingestion::GetConversationRequest { name: conversation(), contact: String::new() };
    add(
        "/switchboard.ingestion.v1.ConversationService/GetConversation",
        vec![call(GLOBEX_READER, &get_conversation, DENIED), call(BOB, &get_conversation, HIDDEN)],
    );
    let list_conversations = ingestion::ListConversationsRequest { parent: acme(), ..Default::default() };
    add(
        "/switchboard.ingestion.v1.ConversationService/ListConversations",
        vec![call(GLOBEX_READER, &list_conversations, DENIED), call(BOB, &list_conversations, DENIED)],
    );
    let list_messages = ingestion::ListMessagesRequest { parent: conversation(), ..Default::default() };
    add(
        "/switchboard.ingestion.v1.ConversationService/ListMessages",
        vec![call(GLOBEX_READER, &list_messages, DENIED), call(BOB, &list_messages, HIDDEN)],
    );
    let send_message = ingestion::SendMessageRequest {
        parent: conversation(),
        text: "hello".to_owned(),
        request_id: "authz-send".to_owned(),
    };
    add(
        "/switchboard.ingestion.v1.ConversationService/SendMessage",
        vec![call(GLOBEX_ADMIN, &send_message, DENIED), call(ACME_READER, &send_message, DENIED)],
    );
    let start = ingestion::StartConversationRequest {
        channel: channel(),
        customer: Some(CustomerIdentity { kind: IdentityKind::Phone as i32, value: "+15550100777".to_owned() }),
        text: "hello".to_owned(),
        request_id: "authz-start".to_owned(),
    };
    add(
        "/switchboard.ingestion.v1.ConversationService/StartConversation",
        vec![call(GLOBEX_ADMIN, &start, DENIED), call(ACME_READER, &start, DENIED)],
    );
    let create_contact = ingestion::CreateContactRequest {
        parent: acme(),
        request_id: "authz-contact".to_owned(),
        contact: Some(ingestion::Contact {
            channel: ChannelKind::Chat as i32,
            from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: "authz".to_owned() }),
            queue: queue(),
            ..ingestion::Contact::default()
        }),
    };
    add(
        "/switchboard.ingestion.v1.IngestionService/CreateContact",
        vec![
            call(GLOBEX_ADMIN, &create_contact, DENIED),
            call(ACME_READER, &create_contact, DENIED),
            call(SUPERVISOR, &create_contact, DENIED),
        ],
    );
    let get_contact = ingestion::GetContactRequest { name: contact() };
    add(
        "/switchboard.ingestion.v1.IngestionService/GetContact",
        vec![call(GLOBEX_READER, &get_contact, DENIED), call(BOB, &get_contact, DENIED)],
    );
    let list_contacts = ingestion::ListContactsRequest { parent: acme(), ..Default::default() };
    add(
        "/switchboard.ingestion.v1.IngestionService/ListContacts",
        vec![
            call(GLOBEX_READER, &list_contacts, DENIED),
            call(BOB, &list_contacts, DENIED),
            call(INTEGRATION, &list_contacts, DENIED),
        ],
    );
    let abandon = ingestion::AbandonContactRequest { name: contact(), reason: String::new() };
    add(
        "/switchboard.ingestion.v1.IngestionService/AbandonContact",
        vec![call(GLOBEX_ADMIN, &abandon, DENIED), call(ACME_READER, &abandon, DENIED)],
    );

    // KPI.
    let filter = || Some(kpi::KpiFilter { parent: acme(), ..kpi::KpiFilter::default() });
    let summary = kpi::GetKpiSummaryRequest { filter: filter() };
    add(
        "/switchboard.kpi.v1.KpiService/GetKpiSummary",
        vec![call(GLOBEX_READER, &summary, DENIED), call(BOB, &summary, DENIED), call(INTEGRATION, &summary, DENIED)],
    );
    let intervals = kpi::ListKpiIntervalsRequest { filter: filter() };
    add(
        "/switchboard.kpi.v1.KpiService/ListKpiIntervals",
        vec![call(GLOBEX_READER, &intervals, DENIED), call(BOB, &intervals, DENIED)],
    );
    let usage = kpi::GetUsageRequest { parent: acme(), month: "2026-12".to_owned() };
    add(
        "/switchboard.kpi.v1.KpiService/GetUsage",
        vec![call(GLOBEX_ADMIN, &usage, DENIED), call(BOB, &usage, DENIED), call(INTEGRATION, &usage, DENIED)],
    );
    let agents = kpi::ListAgentKpisRequest {
        parent: acme(),
        start_time: Some(prost_types::Timestamp { seconds: 1_764_547_200, nanos: 0 }),
        end_time: Some(prost_types::Timestamp { seconds: 1_764_633_600, nanos: 0 }),
        ..kpi::ListAgentKpisRequest::default()
    };
    add(
        "/switchboard.kpi.v1.KpiService/ListAgentKpis",
        vec![call(GLOBEX_READER, &agents, DENIED), call(BOB, &agents, DENIED), call(INTEGRATION, &agents, DENIED)],
    );
    let survey = kpi::RecordSurveyAnswerRequest { contact: contact(), score: 4 };
    add(
        "/switchboard.kpi.v1.KpiService/RecordSurveyAnswer",
        vec![call(GLOBEX_ADMIN, &survey, DENIED), call(ACME_READER, &survey, DENIED), call(BOB, &survey, DENIED)],
    );
    let get_settings = kpi::GetKpiSettingsRequest { name: "tenants/acme/kpiSettings".to_owned() };
    add(
        "/switchboard.kpi.v1.KpiService/GetKpiSettings",
        vec![call(GLOBEX_READER, &get_settings, DENIED), call(BOB, &get_settings, DENIED)],
    );
    let update_settings = kpi::UpdateKpiSettingsRequest {
        settings: Some(kpi::KpiSettings {
            name: "tenants/acme/kpiSettings".to_owned(),
            fcr_window: Some(prost_types::Duration { seconds: 86_400, nanos: 0 }),
            update_time: None,
            fcr_scope: kpi::FcrScope::SameQueue as i32,
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["fcr_window".to_owned(), "fcr_scope".to_owned()] }),
    };
    add(
        "/switchboard.kpi.v1.KpiService/UpdateKpiSettings",
        vec![
            call(GLOBEX_ADMIN, &update_settings, DENIED),
            call(ACME_READER, &update_settings, DENIED),
            call(INTEGRATION, &update_settings, DENIED),
            call(BOB, &update_settings, DENIED),
        ],
    );
    let live = kpi::WatchLiveKpisRequest { parent: acme(), utc_offset: None };
    let everyone = kpi::WatchLiveKpisRequest::default();
    add(
        "/switchboard.kpi.v1.KpiService/WatchLiveKpis",
        vec![
            call(GLOBEX_READER, &live, DENIED),
            call(BOB, &live, DENIED),
            call(INTEGRATION, &live, DENIED),
            call(ACME_ADMIN, &everyone, DENIED),
        ],
    );

    // Presence: agents are the operator's; an agent is its own.
    let create_agent = presence::CreateAgentRequest {
        agent_id: "authz".to_owned(),
        agent: Some(presence::Agent { tenants: vec![acme()], ..presence::Agent::default() }),
    };
    add(
        "/switchboard.presence.v1.PresenceService/CreateAgent",
        vec![call(ACME_ADMIN, &create_agent, DENIED), call(BOB, &create_agent, DENIED)],
    );
    let get_bob = presence::GetAgentRequest { name: "agents/bob".to_owned() };
    add(
        "/switchboard.presence.v1.PresenceService/GetAgent",
        vec![call(GLOBEX_ADMIN, &get_bob, HIDDEN), call(CAROL, &get_bob, HIDDEN)],
    );
    let list_agents = presence::ListAgentsRequest { tenant: acme(), ..Default::default() };
    add(
        "/switchboard.presence.v1.PresenceService/ListAgents",
        vec![call(GLOBEX_ADMIN, &list_agents, DENIED), call(BOB, &list_agents, DENIED)],
    );
    let delete_bob = presence::DeleteAgentRequest { name: "agents/bob".to_owned() };
    add(
        "/switchboard.presence.v1.PresenceService/DeleteAgent",
        vec![call(ACME_ADMIN, &delete_bob, DENIED), call(BOB, &delete_bob, DENIED)],
    );
    let update_bob = presence::UpdateAgentRequest {
        agent: Some(presence::Agent {
            name: "agents/bob".to_owned(),
            display_name: "Robert".to_owned(),
            ..presence::Agent::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["display_name".to_owned()] }),
    };
    add(
        "/switchboard.presence.v1.PresenceService/UpdateAgent",
        vec![
            call(ACME_ADMIN, &update_bob, DENIED),
            call(BOB, &update_bob, DENIED),
            call(SUPERVISOR, &update_bob, DENIED),
        ],
    );
    let force_bob = presence::SetAgentStateRequest {
        name: "agents/bob".to_owned(),
        state: presence::AgentState::Away as i32,
        reason: "authz".to_owned(),
    };
    add(
        "/switchboard.presence.v1.PresenceService/SetAgentState",
        vec![
            call(GLOBEX_ADMIN, &force_bob, HIDDEN),
            call(ACME_READER, &force_bob, DENIED),
            call(INTEGRATION, &force_bob, HIDDEN),
        ],
    );
    let watch = presence::WatchAgentStatesRequest { tenant: acme() };
    add(
        "/switchboard.presence.v1.PresenceService/WatchAgentStates",
        vec![call(GLOBEX_ADMIN, &watch, DENIED), call(BOB, &watch, DENIED)],
    );
    let as_bob = presence::AgentSessionRequest {
        kind: Some(presence::agent_session_request::Kind::Hello(presence::Hello { agent: "agents/bob".to_owned() })),
    };
    add(
        "/switchboard.presence.v1.PresenceService/AgentSession",
        vec![call(CAROL, &as_bob, DENIED), call(ACME_ADMIN, &as_bob, DENIED)],
    );

    // Routing.
    let create_queue = routing::CreateQueueRequest {
        parent: acme(),
        queue_id: "authz-new".to_owned(),
        queue: Some(routing::Queue::default()),
    };
    add(
        "/switchboard.routing.v1.RoutingService/CreateQueue",
        vec![
            call(GLOBEX_ADMIN, &create_queue, DENIED),
            call(ACME_READER, &create_queue, DENIED),
            call(INTEGRATION, &create_queue, DENIED),
            call(SUPERVISOR, &create_queue, DENIED),
        ],
    );
    let get_queue = routing::GetQueueRequest { name: queue() };
    add(
        "/switchboard.routing.v1.RoutingService/GetQueue",
        vec![call(GLOBEX_READER, &get_queue, DENIED), call(BOB, &get_queue, DENIED)],
    );
    let list_queues = routing::ListQueuesRequest { parent: acme(), ..Default::default() };
    add(
        "/switchboard.routing.v1.RoutingService/ListQueues",
        vec![call(GLOBEX_READER, &list_queues, DENIED), call(BOB, &list_queues, DENIED)],
    );
    let update_queue = routing::UpdateQueueRequest {
        queue: Some(routing::Queue { name: queue(), display_name: "x".to_owned(), ..routing::Queue::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["display_name".to_owned()] }),
    };
    add(
        "/switchboard.routing.v1.RoutingService/UpdateQueue",
        vec![call(GLOBEX_ADMIN, &update_queue, DENIED), call(ACME_READER, &update_queue, DENIED)],
    );
    let delete_queue = routing::DeleteQueueRequest { name: queue() };
    add(
        "/switchboard.routing.v1.RoutingService/DeleteQueue",
        vec![
            call(GLOBEX_ADMIN, &delete_queue, DENIED),
            call(ACME_READER, &delete_queue, DENIED),
            call(INTEGRATION, &delete_queue, DENIED),
        ],
    );
    let assignment = routing::GetAssignmentRequest { contact: contact() };
    add(
        "/switchboard.routing.v1.RoutingService/GetAssignment",
        vec![call(GLOBEX_READER, &assignment, DENIED), call(BOB, &assignment, HIDDEN)],
    );
    let accept = routing::AcceptOfferRequest { contact: contact() };
    add(
        "/switchboard.routing.v1.RoutingService/AcceptOffer",
        vec![call(CAROL, &accept, HIDDEN), call(ACME_ADMIN, &accept, DENIED), call(INTEGRATION, &accept, DENIED)],
    );
    let reject = routing::RejectOfferRequest { contact: contact(), reason: String::new() };
    add(
        "/switchboard.routing.v1.RoutingService/RejectOffer",
        vec![call(CAROL, &reject, HIDDEN), call(ACME_ADMIN, &reject, DENIED)],
    );
    let complete = routing::CompleteContactRequest {
        contact: contact(),
        disposition: "done".to_owned(),
        resolved: true,
        notes: String::new(),
    };
    add(
        "/switchboard.routing.v1.RoutingService/CompleteContact",
        vec![call(CAROL, &complete, HIDDEN), call(ACME_ADMIN, &complete, DENIED)],
    );
    let transfer = routing::TransferContactRequest {
        contact: contact(),
        target: Some(routing::transfer_contact_request::Target::Queue(queue())),
    };
    add(
        "/switchboard.routing.v1.RoutingService/TransferContact",
        vec![call(GLOBEX_ADMIN, &transfer, DENIED), call(ACME_READER, &transfer, DENIED)],
    );
    let callback = routing::RequestCallbackRequest { contact: contact(), phone_number: "+15550100888".to_owned() };
    add(
        "/switchboard.routing.v1.RoutingService/RequestCallback",
        vec![call(GLOBEX_ADMIN, &callback, DENIED), call(ACME_READER, &callback, DENIED)],
    );
    let queue_status = routing::GetQueueStatusRequest { name: queue() };
    add(
        "/switchboard.routing.v1.RoutingService/GetQueueStatus",
        vec![call(GLOBEX_READER, &queue_status, DENIED), call(BOB, &queue_status, DENIED)],
    );
    cases
}

/// acme's queue, contact, customer, CTI channel, an (absent) conversation
/// and an API key, made by acme's admin and the operator.
async fn world(endpoints: &Endpoints) -> World {
    let mut routing = routing::routing_service_client::RoutingServiceClient::new(endpoints.channel("routing").await);
    let request = routing::CreateQueueRequest {
        parent: "tenants/acme".to_owned(),
        queue_id: "authz".to_owned(),
        queue: Some(routing::Queue::default()),
    };
    let queue = routing.create_queue(authorized(ACME_ADMIN, request)).await.expect("queue").into_inner().name;
    let mut ingestion =
        ingestion::ingestion_service_client::IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let request = ingestion::CreateContactRequest {
        parent: "tenants/acme".to_owned(),
        request_id: "authz-world".to_owned(),
        contact: Some(ingestion::Contact {
            channel: ChannelKind::Chat as i32,
            from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: "authz-world".to_owned() }),
            queue: queue.clone(),
            ..ingestion::Contact::default()
        }),
    };
    let contact = ingestion.create_contact(authorized(ACME_ADMIN, request)).await.expect("contact").into_inner();
    let mut crm = crm::crm_service_client::CrmServiceClient::new(endpoints.channel("crm").await);
    let request = crm::ResolveCustomerRequest {
        parent: "tenants/acme".to_owned(),
        identity: contact.from.clone(),
        display_name: String::new(),
    };
    let customer = crm.resolve_customer(authorized(ACME_ADMIN, request)).await.expect("customer").into_inner();
    let mut channels =
        ingestion::channel_service_client::ChannelServiceClient::new(endpoints.channel("ingestion").await);
    let cti = ingestion::Channel {
        queue: queue.clone(),
        provider: Some(ingestion::channel::Provider::Cti(ingestion::CtiSettings {
            signing_secret: "authz-secret".to_owned(),
            ..ingestion::CtiSettings::default()
        })),
        ..ingestion::Channel::default()
    };
    let request = ingestion::CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "authz-pbx".to_owned(),
        channel: Some(cti),
    };
    let channel = channels.create_channel(authorized(ACME_ADMIN, request)).await.expect("channel").into_inner().name;
    let mut access = access::access_service_client::AccessServiceClient::new(endpoints.channel("presence").await);
    let request = access::CreateApiKeyRequest {
        api_key: Some(access::ApiKey {
            display_name: "acme reporting".to_owned(),
            role: "tenant_reader".to_owned(),
            tenant: "tenants/acme".to_owned(),
            ..access::ApiKey::default()
        }),
    };
    let api_key = access.create_api_key(authorized(OPERATOR, request)).await.expect("key").into_inner();
    World {
        queue,
        contact: contact.name,
        customer: customer.customer.expect("a customer").name,
        channel,
        conversation: "tenants/acme/conversations/cv_01a2481010ab77888a5e0310c5f0c28b".to_owned(),
        api_key: api_key.api_key.expect("the key").name,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_other_tenants_wrong_roles_and_anonymous_callers() {
    let dir = scratch_dir("authorization");
    let endpoints = Endpoints::pick();
    let mut processes = vec![Process::spawn("dev", &["dev"], &endpoints.env(), &dir)];
    wait_until_serving(&endpoints, &mut processes).await;
    let world = world(&endpoints).await;
    let mut cases = cases(&world);

    let mut uncovered = Vec::new();
    let mut wrong = Vec::new();
    for (path, _) in every_rpc() {
        let Some(calls) = cases.remove(path.as_str()) else {
            uncovered.push(path);
            continue;
        };
        assert!(calls.len() >= 2, "{path}: a cross-tenant and a wrong-role case");
        for Call { key, body, refused_with } in calls {
            let code = send(&endpoints, &path, Some(key), body.clone()).await;
            if !refused_with.contains(&code) {
                wrong.push(format!("{path} as {key}: {code:?}, expected one of {refused_with:?}"));
            }
            let anonymous = send(&endpoints, &path, None, body).await;
            if anonymous != Code::Unauthenticated {
                wrong.push(format!("{path} without a key: {anonymous:?}"));
            }
        }
    }
    assert!(uncovered.is_empty(), "RPCs without authorization cases: {uncovered:#?}");
    assert!(cases.is_empty(), "cases for RPCs that do not exist: {:?}", cases.keys().collect::<Vec<_>>());
    assert!(wrong.is_empty(), "not refused as expected:\n{}", wrong.join("\n"));

    let status = processes.remove(0).terminate();
    assert!(status.success(), "dev exits cleanly: {status}");
}

/// `count` ListQueues calls of `tenant` with `key`: how many were refused
/// as over a rate limit (each with `RetryInfo` and `RATE_LIMITED`).
async fn rate_limited(endpoints: &Endpoints, key: &str, tenant: &str, count: usize) -> usize {
    let mut routing = routing::routing_service_client::RoutingServiceClient::new(endpoints.channel("routing").await);
    let mut refused = 0;
    for _ in 0..count {
        let request = routing::ListQueuesRequest { parent: format!("tenants/{tenant}"), ..Default::default() };
        match routing.list_queues(authorized(key, request)).await {
            Ok(_) => {}
            Err(status) => {
                use tonic_types::StatusExt;
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.get_details_retry_info().is_some(), "a client learns when to retry");
                assert_eq!(switchboard_test_support::error_reason(&status).as_deref(), Some("RATE_LIMITED"));
                refused += 1;
            }
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tenants_over_their_rate_are_refused_and_no_one_else() {
    let dir = scratch_dir("rate-limits");
    let endpoints = Endpoints::pick();
    let mut env = endpoints.env();
    // Bursts small enough to spend in a test, refills too slow to matter.
    for (name, value) in [
        ("SWITCHBOARD_AUTH__RATE_LIMIT__PER_KEY_PER_SECOND", "1"),
        ("SWITCHBOARD_AUTH__RATE_LIMIT__PER_KEY_BURST", "10"),
        ("SWITCHBOARD_AUTH__RATE_LIMIT__PER_TENANT_PER_SECOND", "1"),
        ("SWITCHBOARD_AUTH__RATE_LIMIT__PER_TENANT_BURST", "15"),
    ] {
        env.push((name.to_owned(), value.to_owned()));
    }
    let mut processes = vec![Process::spawn("dev", &["dev"], &env, &dir)];
    wait_until_serving(&endpoints, &mut processes).await;
    // (`dev` sets itself up with a key of its own; globex's keys are
    // untouched.) A burst of 10 per key: of 14 calls
    // the last 4 are refused (a token may have refilled meanwhile).
    let refused = rate_limited(&endpoints, GLOBEX_READER, "globex", 14).await;
    assert!((3..=4).contains(&refused), "globex's reader over its key's burst: {refused} refused");
    // The tenant's other key shares what is left of its 15.
    let refused = rate_limited(&endpoints, GLOBEX_ADMIN, "globex", 10).await;
    assert!((4..=5).contains(&refused), "globex's admin over the tenant's burst: {refused} refused");
    // Another tenant, and a key of no tenant, are not held back.
    assert_eq!(rate_limited(&endpoints, ACME_READER, "acme", 5).await, 0, "acme is not limited by globex");
    assert_eq!(rate_limited(&endpoints, OPERATOR, "globex", 5).await, 0, "the operator's key has its own bucket");
    let status = processes.remove(0).terminate();
    assert!(status.success(), "dev exits cleanly: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_takes_contacts_in_and_a_supervisor_reads_and_watches() {
    let dir = scratch_dir("roles");
    let endpoints = Endpoints::pick();
    let mut processes = vec![Process::spawn("dev", &["dev"], &endpoints.env(), &dir)];
    wait_until_serving(&endpoints, &mut processes).await;
    let world = world(&endpoints).await;

    // An IVR: a caller's contact in, where it stands, its customer, given up.
    let mut ingestion =
        ingestion::ingestion_service_client::IngestionServiceClient::new(endpoints.channel("ingestion").await);
    let request = ingestion::CreateContactRequest {
        parent: "tenants/acme".to_owned(),
        request_id: "ivr-1".to_owned(),
        contact: Some(ingestion::Contact {
            channel: ChannelKind::Chat as i32,
            from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: "ivr-caller".to_owned() }),
            queue: world.queue.clone(),
            ..ingestion::Contact::default()
        }),
    };
    let contact = ingestion.create_contact(authorized(INTEGRATION, request)).await.expect("taken in").into_inner();
    let mut routing = routing::routing_service_client::RoutingServiceClient::new(endpoints.channel("routing").await);
    let status = routing::GetQueueStatusRequest { name: world.queue.clone() };
    routing.get_queue_status(authorized(INTEGRATION, status)).await.expect("the queue's wait");
    let mut crm = crm::crm_service_client::CrmServiceClient::new(endpoints.channel("crm").await);
    let resolve = crm::ResolveCustomerRequest {
        parent: "tenants/acme".to_owned(),
        identity: Some(CustomerIdentity { kind: IdentityKind::Phone as i32, value: "+15550100333".to_owned() }),
        display_name: String::new(),
    };
    crm.resolve_customer(authorized(INTEGRATION, resolve)).await.expect("a caller resolved");
    let abandon = ingestion::AbandonContactRequest { name: contact.name.clone(), reason: String::new() };
    ingestion.abandon_contact(authorized(INTEGRATION, abandon)).await.expect("the caller hung up");

    // A supervisor: the tenant's contacts, KPIs and agents.
    let list = ingestion::ListContactsRequest { parent: "tenants/acme".to_owned(), ..Default::default() };
    ingestion.list_contacts(authorized(SUPERVISOR, list)).await.expect("acme's contacts");
    let mut kpi = kpi::kpi_service_client::KpiServiceClient::new(endpoints.channel("kpi").await);
    let summary = kpi::GetKpiSummaryRequest {
        filter: Some(kpi::KpiFilter { parent: "tenants/acme".to_owned(), ..Default::default() }),
    };
    kpi.get_kpi_summary(authorized(SUPERVISOR, summary)).await.expect("acme's KPIs");
    let mut presence =
        presence::presence_service_client::PresenceServiceClient::new(endpoints.channel("presence").await);
    let agents = presence::ListAgentsRequest { tenant: "tenants/acme".to_owned(), ..Default::default() };
    let listed = presence.list_agents(authorized(SUPERVISOR, agents)).await.expect("acme's agents").into_inner();
    assert!(listed.agents.iter().any(|agent| agent.name == "agents/bob"), "{listed:?}");
    let mut watch = presence
        .watch_agent_states(authorized(
            SUPERVISOR,
            presence::WatchAgentStatesRequest { tenant: "tenants/acme".to_owned() },
        ))
        .await
        .expect("acme's agents watched")
        .into_inner();
    let force = presence::SetAgentStateRequest {
        name: "agents/bob".to_owned(),
        state: presence::AgentState::Away as i32,
        reason: "coaching".to_owned(),
    };
    presence.set_agent_state(authorized(SUPERVISOR, force)).await.expect("bob, who serves only acme, set away");
    let changed = tokio::time::timeout(std::time::Duration::from_secs(30), watch.message())
        .await
        .expect("a state change within 30 s")
        .expect("the watch is healthy")
        .expect("a change");
    assert_eq!(changed.state, presence::AgentState::Away as i32, "{changed:?}");

    let status = processes.remove(0).terminate();
    assert!(status.success(), "dev exits cleanly: {status}");
}
