//! Starts services on embedded or external backends. In both modes the
//! services talk only through their gRPC APIs and the event bus.

use std::sync::Arc;

use switchboard_core::event::ALL_TOPICS;
use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::EventBus;
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::memory::MemoryBus;
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
            ServiceKind::Ingestion => "ingestion",
            ServiceKind::Routing => "routing",
            ServiceKind::Presence => "presence",
            ServiceKind::Crm => "crm",
            ServiceKind::Kpi => "kpi",
        }
    }

    fn listen_address(self, config: &Config) -> &str {
        match self {
            ServiceKind::Ingestion => &config.services.ingestion.listen,
            ServiceKind::Routing => &config.services.routing.listen,
            ServiceKind::Presence => &config.services.presence.listen,
            ServiceKind::Crm => &config.services.crm.listen,
            ServiceKind::Kpi => &config.services.kpi.listen,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// In-process bus and in-memory stores (`switchboard dev`).
    Embedded,
    /// Kafka, Redis and PostgreSQL from configuration.
    External,
}

type ServiceTask = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

async fn prepare(
    kind: ServiceKind,
    config: &Config,
    backends: Backends,
    bus: Arc<dyn EventBus>,
    access: Arc<AccessControl>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<ServiceTask> {
    let config_owned = config.clone();
    let embedded = backends == Backends::Embedded;
    Ok(match kind {
        ServiceKind::Ingestion => {
            let deps = if embedded {
                switchboard_ingestion::Deps::in_memory(bus, access)
            } else {
                switchboard_ingestion::Deps::connect(config, bus, access).await?
            };
            Box::pin(switchboard_ingestion::run(config_owned, deps, listener, shutdown))
        }
        ServiceKind::Routing => {
            let deps = if embedded {
                switchboard_routing::Deps::in_memory(bus, access)
            } else {
                switchboard_routing::Deps::connect(config, bus, access).await?
            };
            Box::pin(switchboard_routing::run(config_owned, deps, listener, shutdown))
        }
        ServiceKind::Presence => {
            let deps = if embedded {
                switchboard_presence::Deps::in_memory(bus, access)
            } else {
                switchboard_presence::Deps::connect(config, bus, access).await?
            };
            Box::pin(switchboard_presence::run(config_owned, deps, listener, shutdown))
        }
        ServiceKind::Crm => {
            let deps = if embedded {
                switchboard_crm::Deps::in_memory(bus, access)
            } else {
                switchboard_crm::Deps::connect(config, bus, access).await?
            };
            Box::pin(switchboard_crm::run(config_owned, deps, listener, shutdown))
        }
        ServiceKind::Kpi => {
            let deps = if embedded {
                switchboard_kpi::Deps::in_memory(bus, access)
            } else {
                switchboard_kpi::Deps::connect(config, bus, access).await?
            };
            Box::pin(switchboard_kpi::run(config_owned, deps, listener, shutdown))
        }
    })
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
    let access = AccessControl::from_config(&config.auth)?;
    let bus: Arc<dyn EventBus> = match backends {
        Backends::Embedded => Arc::new(MemoryBus::new()),
        Backends::External => Arc::new(KafkaBus::connect(&config.kafka, &ALL_TOPICS).await?),
    };
    let mut tasks = JoinSet::new();
    let mut endpoints = Vec::new();
    for kind in services {
        let address = kind.listen_address(&config);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| anyhow::anyhow!("{} cannot listen on {address}: {error}", kind.name()))?;
        endpoints.push((kind.name(), listener.local_addr()?));
        let task = prepare(kind, &config, backends, bus.clone(), access.clone(), listener, shutdown.clone()).await?;
        let service_shutdown = shutdown.clone();
        tasks.spawn(async move {
            let outcome = task.await;
            if let Err(error) = &outcome {
                tracing::error!(service = kind.name(), error = %error, "service failed");
                // One failed service takes the process down so an
                // orchestrator restarts it, rather than limping on.
                service_shutdown.cancel();
            }
            outcome.map_err(|error| anyhow::anyhow!("{}: {error:#}", kind.name()))
        });
    }
    for (name, address) in &endpoints {
        tracing::info!(service = name, %address, "service started");
    }
    if backends == Backends::Embedded {
        crate::dev::print_banner(&endpoints);
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
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }
    tracing::info!("switchboard stopped");
    Ok(())
}
