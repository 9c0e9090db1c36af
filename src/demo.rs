//! `switchboard dev --demo`: simulated agents and customers that use only
//! the public gRPC APIs, so the KPIs move the moment the product starts.

use std::time::Duration;

use rand::Rng;
use switchboard_platform::Config;
use switchboard_proto::common::v1::{Channel, CustomerIdentity, IdentityKind};
use switchboard_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use switchboard_proto::ingestion::v1::{AbandonContactRequest, Contact, CreateContactRequest};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{GetKpiSummaryRequest, KpiFilter, RecordSurveyAnswerRequest};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{
    AcceptOffer, AgentSessionRequest, AgentState, CompleteContact, Hello, SetState, agent_session_request,
    agent_session_response,
};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, GetQueueStatusRequest, Queue};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel as GrpcChannel;

use switchboard_platform::auth::authorized;

use crate::dev::{DEV_AGENTS, channel, tolerate_existing};

/// How often the demo prints its summary.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(3);

const QUEUES: [(&str, &str, &[Channel]); 3] = [
    ("acme", "support", &[Channel::Chat, Channel::Email]),
    ("acme", "sales", &[Channel::Voice]),
    ("globex", "helpdesk", &[Channel::Chat, Channel::Email]),
];
/// Sets up queues (the development agents exist already), then runs
/// agents and customers until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut routing = RoutingServiceClient::new(channel(&config.services.routing.url).await?);
    let presence = PresenceServiceClient::new(channel(&config.services.presence.url).await?);
    for (tenant, queue_id, channels) in QUEUES {
        // A short wrap-up, so the simulated agents show it between contacts.
        let queue = Queue {
            channels: channels.iter().map(|channel| *channel as i32).collect(),
            wrap_up_time: Some(switchboard_core::time::duration_from_millis(2_000)),
            ..Queue::default()
        };
        let request = CreateQueueRequest {
            parent: format!("tenants/{tenant}"),
            queue_id: queue_id.to_owned(),
            queue: Some(queue),
        };
        tolerate_existing(routing.create_queue(authorized(&format!("dev-{tenant}-admin"), request)).await)?;
    }
    let kpi = KpiServiceClient::new(channel(&config.services.kpi.url).await?);
    let mut tasks = tokio::task::JoinSet::new();
    for (agent_id, _) in DEV_AGENTS {
        tasks.spawn(simulated_agent(presence.clone(), kpi.clone(), agent_id, shutdown.clone()));
    }
    tasks.spawn(simulated_customers(config.clone(), shutdown.clone()));
    tasks.spawn(summary_printer(config, shutdown.clone()));
    println!("  demo running: simulated customers and agents use the public APIs; a summary every few seconds:");
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(error)) = joined {
            tracing::warn!(error = %error, "demo task stopped");
        }
    }
    Ok(())
}

async fn simulated_agent(
    mut presence: PresenceServiceClient<GrpcChannel>,
    kpi: KpiServiceClient<GrpcChannel>,
    agent_id: &'static str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (requests, outbound) = mpsc::channel(16);
    requests
        .send(AgentSessionRequest {
            kind: Some(agent_session_request::Kind::Hello(Hello { agent: format!("agents/{agent_id}") })),
        })
        .await?;
    let set_state = SetState { state: AgentState::Available as i32, reason: String::new() };
    requests.send(AgentSessionRequest { kind: Some(agent_session_request::Kind::SetState(set_state)) }).await?;
    let mut inbound = presence
        .agent_session(authorized(&format!("dev-agent-{agent_id}"), ReceiverStream::new(outbound)))
        .await?
        .into_inner();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = inbound.message() => message?,
        };
        let Some(message) = message else { return Ok(()) };
        let Some(agent_session_response::Kind::Offer(offer)) = message.kind else { continue };
        let (requests, kpi) = (requests.clone(), kpi.clone());
        tokio::spawn(async move {
            let (ring_ms, talk_ms, resolved) = {
                let mut random = rand::rng();
                (random.random_range(300..2_500), random.random_range(2_000..9_000), random.random_bool(0.8))
            };
            tokio::time::sleep(Duration::from_millis(ring_ms)).await;
            let accept = AcceptOffer { contact: offer.contact.clone() };
            let _ = requests
                .send(AgentSessionRequest { kind: Some(agent_session_request::Kind::AcceptOffer(accept)) })
                .await;
            tokio::time::sleep(Duration::from_millis(talk_ms)).await;
            let complete = CompleteContact {
                contact: offer.contact.clone(),
                disposition: "demo".to_owned(),
                resolved,
                notes: String::new(),
            };
            let _ = requests
                .send(AgentSessionRequest { kind: Some(agent_session_request::Kind::CompleteContact(complete)) })
                .await;
            simulated_survey(kpi, offer.contact).await;
        });
    }
}

/// Half the customers answer the survey a few seconds after their contact,
/// mostly satisfied, as the tenant's integration would record it.
async fn simulated_survey(mut kpi: KpiServiceClient<GrpcChannel>, contact: String) {
    let score = {
        let mut random = rand::rng();
        if !random.random_bool(0.5) {
            return;
        }
        [1, 2, 3, 4, 4, 5, 5, 5][random.random_range(0..8)]
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tenant = contact.split('/').nth(1).unwrap_or_default().to_owned();
    let request = RecordSurveyAnswerRequest { contact, score };
    if let Err(status) = kpi.record_survey_answer(authorized(&format!("dev-{tenant}-admin"), request)).await {
        tracing::debug!(code = ?status.code(), message = status.message(), "demo survey answer not recorded");
    }
}

async fn simulated_customers(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ingestion = IngestionServiceClient::new(channel(&config.services.ingestion.url).await?);
    let mut sequence = 0_u64;
    loop {
        let (pause_ms, queue_index, visitor, abandon_after) = {
            let mut random = rand::rng();
            let abandon = random.random_bool(0.25).then(|| random.random_range(1_000..12_000));
            (random.random_range(400..1_600), random.random_range(0..QUEUES.len()), random.random_range(0..30), abandon)
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(pause_ms)) => {}
        }
        sequence += 1;
        let (tenant, queue_id, channels) = QUEUES[queue_index];
        let channel = channels[usize::try_from(sequence).unwrap_or(0) % channels.len()];
        let kind = if channel == Channel::Email { IdentityKind::Email } else { IdentityKind::ChatVisitor };
        let value = if kind == IdentityKind::Email {
            format!("customer{visitor}@example.com")
        } else {
            format!("visitor-{visitor}")
        };
        let contact = Contact {
            channel: channel as i32,
            from: Some(CustomerIdentity { kind: kind as i32, value }),
            queue: format!("tenants/{tenant}/queues/{queue_id}"),
            subject: "where is my order?".to_owned(),
            ..Contact::default()
        };
        let request = CreateContactRequest {
            parent: format!("tenants/{tenant}"),
            contact: Some(contact),
            request_id: format!("demo-{}-{sequence}", std::process::id()),
        };
        let key = format!("dev-{tenant}-admin");
        let created = match ingestion.clone().create_contact(authorized(&key, request)).await {
            Ok(created) => created.into_inner(),
            Err(status) => {
                tracing::warn!(status = %status.message(), "demo customer could not reach ingestion");
                continue;
            }
        };
        if let Some(wait_ms) = abandon_after {
            let mut ingestion = ingestion.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                let request = AbandonContactRequest { name: created.name, reason: "customer hung up".to_owned() };
                let _answered_already_is_fine = ingestion.abandon_contact(authorized(&key, request)).await;
            });
        }
    }
}

/// Prints one compact line per tenant every few seconds: contacts waiting,
/// offered, answered, abandoned, ASA and service level, from the public APIs.
async fn summary_printer(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut kpi = KpiServiceClient::new(channel(&config.services.kpi.url).await?);
    let mut routing = RoutingServiceClient::new(channel(&config.services.routing.url).await?);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(SUMMARY_INTERVAL) => {}
        }
        for tenant in ["acme", "globex"] {
            let reader = format!("dev-{tenant}-reader");
            let mut waiting = 0;
            for (queue_tenant, queue_id, _) in QUEUES.iter().filter(|(queue_tenant, _, _)| *queue_tenant == tenant) {
                let request = GetQueueStatusRequest { name: format!("tenants/{queue_tenant}/queues/{queue_id}") };
                if let Ok(status) = routing.get_queue_status(authorized(&reader, request)).await {
                    waiting += status.into_inner().channels.iter().map(|line| line.waiting).sum::<i32>();
                }
            }
            let filter = KpiFilter { parent: format!("tenants/{tenant}"), ..KpiFilter::default() };
            let Ok(summary) =
                kpi.get_kpi_summary(authorized(&reader, GetKpiSummaryRequest { filter: Some(filter) })).await
            else {
                continue;
            };
            let summary = summary.into_inner();
            let asa_seconds = summary.asa.map_or(0.0, |asa| asa.seconds as f64 + f64::from(asa.nanos) / 1e9);
            println!(
                "  {tenant:<7} waiting {waiting:>3}  offered {:>5}  answered {:>5}  abandoned {:>4}  ASA {asa_seconds:>5.1}s  SL {:>5.1}%",
                summary.offered,
                summary.answered,
                summary.abandoned,
                summary.service_level * 100.0,
            );
        }
    }
}
