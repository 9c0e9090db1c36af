//! Starts services on embedded or external backends. In both modes the
//! services talk only through their gRPC APIs and the event bus.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use switchboard_core::event::ALL_TOPICS;
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::EventBus;
use switchboard_platform::bus::hints::Hints;
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::config::{PostgresConfig, ServiceEndpoint};
use switchboard_platform::credentials::{CredentialStore, MemoryCredentialStore, PostgresCredentialStore};
pub use switchboard_platform::service::Backends;
use switchboard_platform::service::{Kit, Listeners, Service, launch};
use switchboard_platform::tls::Tls;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceKind {
    Ingestion,
    Routing,
    Presence,
    Crm,
    Kpi,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 5] =
        [ServiceKind::Ingestion, ServiceKind::Routing, ServiceKind::Presence, ServiceKind::Crm, ServiceKind::Kpi];

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Ingestion => switchboard_ingestion::Ingestion::NAME,
            ServiceKind::Routing => switchboard_routing::Routing::NAME,
            ServiceKind::Presence => switchboard_presence::Presence::NAME,
            ServiceKind::Crm => switchboard_crm::Crm::NAME,
            ServiceKind::Kpi => switchboard_kpi::Kpi::NAME,
        }
    }

    fn endpoint(self, config: &Config) -> &ServiceEndpoint {
        match self {
            ServiceKind::Ingestion => &config.services.ingestion,
            ServiceKind::Routing => &config.services.routing,
            ServiceKind::Presence => &config.services.presence,
            ServiceKind::Crm => &config.services.crm,
            ServiceKind::Kpi => &config.services.kpi,
        }
    }

    /// Builds the service on `backends` and runs it until shutdown.
    async fn launch(self, kit: Kit, backends: Backends, listeners: Listeners) -> anyhow::Result<()> {
        match self {
            ServiceKind::Ingestion => launch::<switchboard_ingestion::Ingestion>(kit, backends, listeners).await,
            ServiceKind::Routing => launch::<switchboard_routing::Routing>(kit, backends, listeners).await,
            ServiceKind::Presence => launch::<switchboard_presence::Presence>(kit, backends, listeners).await,
            ServiceKind::Crm => launch::<switchboard_crm::Crm>(kit, backends, listeners).await,
            ServiceKind::Kpi => launch::<switchboard_kpi::Kpi>(kit, backends, listeners).await,
        }
    }
}

/// Where a started service listens.
#[derive(Debug, Clone)]
pub struct StartedService {
    pub name: &'static str,
    pub grpc: SocketAddr,
    pub http: Option<SocketAddr>,
}

async fn bind(kind: ServiceKind, what: &str, address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("{} cannot listen ({what}) on {address}: {error}", kind.name()))
}

/// Where this process reads the tenants and API keys made through the API:
/// in memory for `dev`, else the deployment's PostgreSQL (schema `access`,
/// shared by every service), on a pool of its own.
async fn credential_store(config: &Config, backends: Backends) -> anyhow::Result<Arc<dyn CredentialStore>> {
    Ok(match backends {
        Backends::Embedded => Arc::new(MemoryCredentialStore::new()),
        Backends::External => {
            let pool_config = PostgresConfig { pool_size: 2, ..config.postgres.clone() };
            let pool = switchboard_platform::postgres::pool(&pool_config)
                .map_err(|error| anyhow::anyhow!("the credentials' PostgreSQL pool: {error}"))?;
            let store = PostgresCredentialStore::connect(pool)
                .await
                .map_err(|error| anyhow::anyhow!("the credentials' PostgreSQL schema: {error}"))?;
            Arc::new(store)
        }
    })
}

/// `step` of the start-up, unless shutdown is asked first (`None`): a
/// process told to stop while a backend cannot be reached exits at once,
/// not when the step times out (10 s and more).
async fn unless_stopped<T>(
    shutdown: &CancellationToken,
    step: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Option<T>> {
    tokio::select! {
        outcome = step => outcome.map(Some),
        () = shutdown.cancelled() => {
            tracing::info!("stopped during start-up");
            Ok(None)
        }
    }
}

/// Binds, connects and runs `services` until `shutdown`; then waits for
/// each to drain. Fails if any service fails.
pub async fn run_services(
    config: Config,
    services: Vec<ServiceKind>,
    backends: Backends,
    demo: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let credentials = async {
        let access = AccessControl::with_credentials(&config.auth, credential_store(&config, backends).await?)?;
        // The first read happens before any service answers a call.
        access.refresh().await.map_err(|error| anyhow::anyhow!("reading tenants and API keys: {error}"))?;
        Ok(access)
    };
    let Some(access) = unless_stopped(&shutdown, credentials).await? else { return Ok(()) };
    let refresher = tokio::spawn(Arc::clone(&access).keep_fresh(shutdown.clone()));
    // One set of certificates for every service of the process, read again
    // when the files change.
    let tls = if config.tls.serves_tls() || config.tls.ca_file.is_some() {
        let tls = Tls::load(&config.tls).context("[tls]")?;
        tokio::spawn(Arc::clone(&tls).keep_fresh(shutdown.clone()));
        Some(tls)
    } else {
        None
    };
    let bus: Arc<dyn EventBus> = match backends {
        Backends::Embedded => Arc::new(MemoryBus::new()),
        Backends::External => {
            let brokers = switchboard_platform::config::redact_url_password(&config.kafka.brokers);
            tracing::info!(brokers = %brokers, "connecting to the event bus");
            let connected = async {
                let bus = KafkaBus::connect(&config.kafka, &ALL_TOPICS).await?;
                if !config.kafka.hints {
                    return Ok(bus);
                }
                Ok(bus.with_hints(Hints::through_redis(&config.redis)?))
            };
            let Some(bus) = unless_stopped(&shutdown, connected).await? else { return Ok(()) };
            Arc::new(bus)
        }
    };
    let mut tasks = JoinSet::new();
    let mut started = Vec::new();
    for kind in services {
        let endpoint = kind.endpoint(&config);
        let grpc = bind(kind, "grpc", &endpoint.listen).await?;
        let http = match endpoint.http_listen.as_str() {
            "" => None,
            address => Some(bind(kind, "http", address).await?),
        };
        started.push(StartedService {
            name: kind.name(),
            grpc: grpc.local_addr()?,
            http: http.as_ref().map(TcpListener::local_addr).transpose()?,
        });
        let kit =
            Kit::new(kind.name(), config.clone(), bus.clone(), access.clone(), shutdown.clone()).with_tls(tls.clone());
        let service_shutdown = shutdown.clone();
        tasks.spawn(async move {
            let outcome = kind.launch(kit, backends, Listeners { grpc, http }).await;
            if let Err(error) = &outcome {
                tracing::error!(service = kind.name(), error = %format!("{error:#}"), "service failed");
                // One failed service takes the process down so an
                // orchestrator restarts it, rather than limping on.
                service_shutdown.cancel();
            }
            outcome.map_err(|error| anyhow::anyhow!("{}: {error:#}", kind.name()))
        });
    }
    for service in &started {
        tracing::info!(service = service.name, grpc = %service.grpc, http = ?service.http, "service started");
    }
    if backends == Backends::Embedded {
        // The agents the banner names exist before it is printed.
        if let Err(error) = crate::dev::create_dev_agents(&config).await {
            tracing::error!(error = %format!("{error:#}"), "development agents not created");
        }
        if let Err(error) = crate::dev::create_dev_channels(&config).await {
            tracing::error!(error = %format!("{error:#}"), "development channels not created");
        }
        crate::dev::print_banner(&started, &config, demo);
        if demo {
            let demo_config = config.clone();
            let demo_shutdown = shutdown.clone();
            tasks.spawn(async move { crate::demo::run(demo_config, demo_shutdown).await });
        }
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(error.to_string()),
            Err(error) => failures.push(format!("task panicked: {error}")),
        }
    }
    if let Err(error) = bus.flush().await {
        tracing::warn!(error = %error, "event bus flush failed at shutdown");
    }
    shutdown.cancel();
    let _ = refresher.await;
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }
    tracing::info!("switchboard stopped");
    Ok(())
}
