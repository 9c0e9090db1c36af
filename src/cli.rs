//! Command line: `switchboard dev [--demo] [--verbose]`,
//! `switchboard <service>`, `switchboard run --services a,b`,
//! `switchboard api-key new`, `switchboard dead-letters list|replay`,
//! `switchboard kpi recompute`, and `--print-config` everywhere.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard_platform::Config;
use switchboard_platform::config::TelemetryConfig;
use switchboard_platform::shutdown::cancel_on_signal;
use switchboard_platform::telemetry;
use tokio_util::sync::CancellationToken;

use crate::wiring::{Backends, ServiceKind, run_services};

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "Multi-tenant omnichannel contact-center platform")]
pub struct Cli {
    /// TOML configuration file (also `SWITCHBOARD_CONFIG`); `SWITCHBOARD_*`
    /// environment variables override it.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long, global = true)]
    pub print_config: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// All five services in one process on embedded backends (in-process
    /// event bus, in-memory stores), with development API keys.
    Dev {
        /// Also drive simulated customers and agents through the APIs.
        #[arg(long)]
        demo: bool,
        /// Log every event at INFO (by default `dev` logs only warnings and
        /// errors; `RUST_LOG` or `telemetry.log_filter` also choose).
        #[arg(long)]
        verbose: bool,
    },
    /// The ingestion service against Kafka and PostgreSQL.
    Ingestion,
    /// The routing service against Kafka, Redis and PostgreSQL.
    Routing,
    /// The presence service against Kafka, Redis and PostgreSQL.
    Presence,
    /// The CRM service against Kafka and PostgreSQL.
    Crm,
    /// The KPI service against Kafka and PostgreSQL (with `recompute`: an
    /// operator command on the KPI store instead).
    Kpi {
        #[command(subcommand)]
        action: Option<KpiAction>,
    },
    /// Several services in one process against the configured backends.
    Run {
        /// Comma-separated: ingestion,routing,presence,crm,kpi.
        #[arg(long, value_delimiter = ',', required = true)]
        services: Vec<ServiceKind>,
    },
    /// Prints a new random API key and the configuration entry (its SHA-256)
    /// that makes it work.
    ApiKey {
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// Prints a new random service key (`auth.service_key`): the credential
    /// the services present to each other.
    ServiceKey {
        #[command(subcommand)]
        action: ServiceKeyAction,
    },
    /// Records a consumer could never handle: list them, replay them.
    DeadLetters {
        #[command(subcommand)]
        action: crate::operator::DeadLetterAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum KpiAction {
    /// Rebuilds the KPI facts of the contacts that arrived in a range (all,
    /// without one) from the events the broker retains, and every bucket
    /// from the facts; the KPI service may keep running meanwhile.
    Recompute {
        /// RFC 3339, e.g. 2026-12-01T00:00:00Z: contacts that arrived at or
        /// after it.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339: contacts that arrived before it.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyAction {
    /// A new key: `--name` (shown in logs instead of the key), `--role`
    /// (operator_admin, tenant_admin, tenant_reader, supervisor, integration,
    /// agent), and `--tenant` or `--agent` as the role needs.
    New {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceKeyAction {
    /// A new key, and where to set it.
    New,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let dev = matches!(cli.command, Command::Dev { .. });
    let mut config = Config::load(cli.config.as_deref())?;
    if let Command::Dev { verbose, .. } = cli.command {
        crate::dev::apply_dev_defaults(&mut config)?;
        // A newcomer sees the banner and a summary, not a line per event.
        let filter_chosen = std::env::var_os("RUST_LOG").is_some()
            || std::env::var_os("SWITCHBOARD_TELEMETRY__LOG_FILTER").is_some()
            || config.telemetry.log_filter != TelemetryConfig::default().log_filter;
        if !verbose && !filter_chosen {
            config.telemetry.log_filter = "warn".to_owned();
        }
    }
    if cli.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let (services, backends, demo) = match cli.command {
        Command::Dev { demo, .. } => (ServiceKind::ALL.to_vec(), Backends::Embedded, demo),
        Command::Ingestion => (vec![ServiceKind::Ingestion], Backends::External, false),
        Command::Routing => (vec![ServiceKind::Routing], Backends::External, false),
        Command::Presence => (vec![ServiceKind::Presence], Backends::External, false),
        Command::Crm => (vec![ServiceKind::Crm], Backends::External, false),
        Command::Kpi { action: None } => (vec![ServiceKind::Kpi], Backends::External, false),
        Command::Kpi { action: Some(KpiAction::Recompute { from, to }) } => {
            let range = crate::kpi_recompute::Range {
                from_ms: from.as_deref().map(crate::kpi_recompute::parse_instant).transpose()?,
                to_ms: to.as_deref().map(crate::kpi_recompute::parse_instant).transpose()?,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            return runtime.block_on(async move {
                let _telemetry = telemetry::init(&config.telemetry, "switchboard-operator")?;
                crate::kpi_recompute::kpi_recompute(&config, range).await
            });
        }
        Command::Run { services } => (services, Backends::External, false),
        Command::ServiceKey { action: ServiceKeyAction::New } => {
            print!("{}", crate::operator::new_service_key());
            return Ok(());
        }
        Command::ApiKey { action: ApiKeyAction::New { name, role, tenant, agent } } => {
            print!("{}", crate::operator::new_api_key(&name, &role, tenant.as_deref(), agent.as_deref())?);
            return Ok(());
        }
        Command::DeadLetters { action } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            return runtime.block_on(async move {
                let _telemetry = telemetry::init(&config.telemetry, "switchboard-operator")?;
                crate::operator::dead_letters(&config, action).await
            });
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let service_label =
            if dev { "switchboard-dev".to_owned() } else { format!("switchboard-{}", label(&services)) };
        let _telemetry = telemetry::init(&config.telemetry, &service_label)?;
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        run_services(config, services, backends, demo, shutdown).await
    })
}

fn label(services: &[ServiceKind]) -> String {
    services.iter().map(|service| service.name()).collect::<Vec<_>>().join("+")
}
