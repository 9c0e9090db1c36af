//! Starting the `switchboard` binary for end-to-end tests, and gRPC helpers.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod browser;
pub mod desktop;
pub mod load;
pub mod routing_log;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[allow(unused_imports)] // each test binary uses its own share of the support module
pub use switchboard_test_support::{authorized, error_resource, violated_fields};

pub const SERVICES: [&str; 5] = ["ingestion", "routing", "presence", "crm", "kpi"];

/// The service whose port serves the RPC `path` (`/package.Service/Method`).
pub fn service_of(path: &str) -> &'static str {
    // Presence serves the access API (tenants, API keys, audit).
    if path.starts_with("/switchboard.access.v1.") {
        return "presence";
    }
    SERVICES
        .into_iter()
        .find(|service| path.starts_with(&format!("/switchboard.{service}.v1.")))
        .unwrap_or_else(|| panic!("no service serves {path}"))
}

/// The health name that reports a service's readiness.
pub fn readiness_name(service: &str) -> String {
    let api = match service {
        "ingestion" => "ingestion.v1.IngestionService",
        "routing" => "routing.v1.RoutingService",
        "presence" => "presence.v1.PresenceService",
        "crm" => "crm.v1.CrmService",
        _ => "kpi.v1.KpiService",
    };
    format!("switchboard.{api}")
}

/// A port for a test's process to listen on: free now, never handed out
/// twice by this test binary, and below the kernel's ephemeral range
/// (32768 and up), so no listener on port 0 (the services' HTTP servers)
/// and no outgoing connection can take it before the process binds it.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = switchboard_core::sync::lock_unpoisoned(&HANDED_OUT);
    loop {
        let port = rand::random_range(20_000..32_000);
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

pub use switchboard_test_support::scratch_dir;

/// Where each service listens, and the env that tells the binary so.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub ports: Vec<(&'static str, u16)>,
}

impl Endpoints {
    pub fn pick() -> Endpoints {
        Endpoints { ports: SERVICES.iter().map(|service| (*service, free_port())).collect() }
    }

    pub fn url(&self, service: &str) -> String {
        let port = self.ports.iter().find(|(name, _)| *name == service).map(|(_, port)| *port).expect("service");
        format!("http://127.0.0.1:{port}")
    }

    pub fn env(&self) -> Vec<(String, String)> {
        // The tests' mail server and provider stubs are on loopback.
        let mut env = vec![("SWITCHBOARD_INGESTION__ALLOW_PRIVATE_DESTINATIONS".to_owned(), "true".to_owned())];
        for (service, port) in &self.ports {
            let upper = service.to_uppercase();
            env.push((format!("SWITCHBOARD_SERVICES__{upper}__LISTEN"), format!("127.0.0.1:{port}")));
            env.push((format!("SWITCHBOARD_SERVICES__{upper}__URL"), format!("http://127.0.0.1:{port}")));
        }
        env
    }

    pub async fn channel(&self, service: &str) -> Channel {
        Channel::from_shared(self.url(service)).expect("url").connect_lazy()
    }
}

/// A running `switchboard` process; killed on drop if still running.
pub struct Process {
    pub label: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(label: &str, args: &[&str], env: &[(String, String)], dir: &Path) -> Process {
        let log = dir.join(format!("{label}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        // HTTP servers on free ports unless a test picks one: several
        // processes of one service run side by side in these tests.
        let http_ports = SERVICES.iter().map(|service| {
            (format!("SWITCHBOARD_SERVICES__{}__HTTP_LISTEN", service.to_uppercase()), "127.0.0.1:0".to_owned())
        });
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .envs(http_ports)
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .env("SWITCHBOARD_TELEMETRY__LOG_FILTER", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log clone"))
            .stderr(log_file)
            .spawn()
            .expect("spawn switchboard");
        Process { label: label.to_owned(), child, log }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 30 s of SIGTERM:\n{}",
                self.label,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How often `needle` occurs in the logs of the processes whose label
/// starts with `label_prefix`.
pub fn count_in_logs(processes: &[Process], label_prefix: &str, needle: &str) -> usize {
    processes
        .iter()
        .filter(|process| process.label.starts_with(label_prefix))
        .map(|process| std::fs::read_to_string(&process.log).unwrap_or_default().matches(needle).count())
        .sum()
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until every service's server is up: SERVING on the overall
/// (empty) name, which says the process is live, not that its backends
/// answer (see [`wait_until_ready`]).
pub async fn wait_until_serving(endpoints: &Endpoints, processes: &mut [Process]) {
    for service in SERVICES {
        wait_until_url_serving(service, &endpoints.url(service), processes).await;
    }
}

/// Waits until every service is ready: SERVING under its API's name, which
/// needs its backends to answer and its consumers to hold their partitions.
pub async fn wait_until_ready(endpoints: &Endpoints, processes: &mut [Process]) {
    for service in SERVICES {
        wait_until_health(service, &endpoints.url(service), &readiness_name(service), processes).await;
    }
}

/// Waits until the server at `url` reports itself SERVING, failing early
/// when one of `processes` exits.
pub async fn wait_until_url_serving(label: &str, url: &str, processes: &mut [Process]) {
    wait_until_health(label, url, "", processes).await;
}

/// Waits until the server at `url` reports `health_name` SERVING.
pub async fn wait_until_health(label: &str, url: &str, health_name: &str, processes: &mut [Process]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for process in processes.iter_mut() {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{} exited early with {status}:\n{}", process.label, process.log_tail());
            }
        }
        let serving = async {
            let channel = Channel::from_shared(url.to_owned()).ok()?.connect().await.ok()?;
            let response =
                HealthClient::new(channel).check(HealthCheckRequest { service: health_name.to_owned() }).await.ok()?;
            Some(response.into_inner().status == ServingStatus::Serving as i32)
        };
        if serving.await == Some(true) {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(|p| format!("--- {}\n{}", p.label, p.log_tail())).collect();
            panic!("{label} never became SERVING:\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `probe` until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn expect_code<T: std::fmt::Debug>(outcome: Result<T, Status>, code: Code, what: &str) -> Status {
    match outcome {
        Ok(value) => panic!("{what}: expected {code:?}, got success {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {}", status.message());
            status
        }
    }
}

/// One test's run on the real backends: its scratch dir, run id, Kafka
/// brokers and config file (the development keys, everything isolated).
pub struct RealRun {
    pub dir: PathBuf,
    pub run: String,
    pub kafka: String,
    /// The run's own database.
    pub postgres: String,
    /// The `--config` argument.
    pub config: String,
}

/// A [`RealRun`] on the test backends (`None` skips the test when they are
/// not set, outside CI), with a fresh database.
pub async fn real_run(label: &str, session_grace_ms: u64) -> Option<RealRun> {
    let kafka = switchboard_test_support::backend_url("SWITCHBOARD_TEST_KAFKA")?;
    let redis = switchboard_test_support::backend_url("SWITCHBOARD_TEST_REDIS")?;
    let postgres_admin = switchboard_test_support::backend_url("SWITCHBOARD_TEST_POSTGRES")?;
    let postgres = switchboard_test_support::fresh_database(&postgres_admin).await.expect("database");
    let run = switchboard_test_support::unique_suffix();
    let dir = scratch_dir(label);
    let config_path = dir.join("switchboard.toml");
    std::fs::write(&config_path, real_backend_config(&kafka, &redis, &postgres, &run, session_grace_ms))
        .expect("config file");
    let config = config_path.to_string_lossy().to_string();
    Some(RealRun { dir, run, kafka, postgres, config })
}

impl RealRun {
    /// The five services, one `switchboard <service>` process each.
    pub fn spawn_services(&self, env: &[(String, String)]) -> Vec<Process> {
        SERVICES
            .iter()
            .map(|service| Process::spawn(service, &[service, "--config", &self.config], env, &self.dir))
            .collect()
    }
}

/// The environment that also puts ingestion's HTTP server (webhooks, web
/// chat) on `http_port`.
pub fn ingestion_http_env(endpoints: &Endpoints, http_port: u16) -> Vec<(String, String)> {
    let mut env = endpoints.env();
    env.push(("SWITCHBOARD_SERVICES__INGESTION__HTTP_LISTEN".to_owned(), format!("127.0.0.1:{http_port}")));
    env
}

/// Runs `scenario` on `switchboard dev`, with ingestion's HTTP server on a
/// port of its own (the scenario gets the endpoints and that port).
pub async fn on_dev(label: &str, scenario: impl AsyncFnOnce(&Endpoints, u16)) {
    let dir = scratch_dir(label);
    let endpoints = Endpoints::pick();
    let http_port = free_port();
    let mut processes = vec![Process::spawn("dev", &["dev"], &ingestion_http_env(&endpoints, http_port), &dir)];
    wait_until_ready(&endpoints, &mut processes).await;
    scenario(&endpoints, http_port).await;
    terminate_cleanly(processes);
}

/// Runs `scenario` on five `switchboard <service>` processes against the
/// test backends, as [`on_dev`] does on `dev` (skipped without them,
/// outside CI).
pub async fn on_real_backends(label: &str, scenario: impl AsyncFnOnce(&Endpoints, u16)) {
    let Some(real) = real_run(label, 2_000).await else { return };
    let endpoints = Endpoints::pick();
    let http_port = free_port();
    let mut processes = real.spawn_services(&ingestion_http_env(&endpoints, http_port));
    wait_until_ready(&endpoints, &mut processes).await;
    scenario(&endpoints, http_port).await;
    terminate_cleanly(processes);
}

/// Stops every process with SIGTERM; each must exit cleanly.
pub fn terminate_cleanly(processes: Vec<Process>) {
    for process in processes {
        let label = process.label.clone();
        let status = process.terminate();
        assert!(status.success(), "switchboard {label} exits cleanly on SIGTERM: {status}");
    }
}

/// A configuration with the development keys, isolated from every other
/// test by its own topics, consumer groups, Redis pool and database.
pub fn real_backend_config(kafka: &str, redis: &str, postgres: &str, run: &str, session_grace_ms: u64) -> String {
    let mut config = format!(
        "instance_id = \"e2e-{run}\"\n\
         [kafka]\nbrokers = \"{kafka}\"\ntopic_prefix = \"e2e-{run}.\"\ngroup_prefix = \"e2e-{run}\"\npartitions = 3\n\
         [redis]\nurl = \"{redis}\"\npool = \"e2e-{run}\"\n\
         [postgres]\nurl = \"{postgres}\"\npool_size = 4\n\
         [presence]\nsession_grace_ms = {session_grace_ms}\n\
         [auth]\ntenants = [\"acme\", \"globex\"]\nservice_key = \"e2e-service-key-of-run-{run}\"\n"
    );
    for (key, role, tenant, agent) in switchboard::dev::DEV_KEYS {
        config.push_str(&format!(
            "[[auth.api_keys]]\nname = \"{key}\"\nsha256 = \"{}\"\nrole = \"{role}\"\n",
            switchboard_platform::auth::hash_api_key(key)
        ));
        if let Some(tenant) = tenant {
            config.push_str(&format!("tenant = \"{tenant}\"\n"));
        }
        if let Some(agent) = agent {
            config.push_str(&format!("agent = \"{agent}\"\n"));
        }
    }
    config
}

/// Configuration lines adding an agent key `e2e-agent-<agent>` for each of
/// `agents`, to append to [`real_backend_config`].
pub fn agent_keys_config(agents: &[&str]) -> String {
    let mut config = String::new();
    for agent in agents {
        let key = agent_key(agent);
        config.push_str(&format!(
            "[[auth.api_keys]]\nname = \"{key}\"\nsha256 = \"{}\"\nrole = \"agent\"\nagent = \"{agent}\"\n",
            switchboard_platform::auth::hash_api_key(&key)
        ));
    }
    config
}

/// The API key [`agent_keys_config`] gives `agent`.
pub fn agent_key(agent: &str) -> String {
    format!("e2e-agent-{agent}")
}

/// A `redis-server` of the test's own on `port`, without persistence (a
/// restart comes back empty), so the test may flush or kill it.
pub fn start_redis(port: u16, dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test-env.sh installs it)")
}

/// `GET path` on a service's HTTP server (metrics, probes): the body, or
/// `None` when the server cannot be reached or answers other than 200.
pub async fn http_get(address: &str, path: &str) -> Option<String> {
    let address = address.parse().ok()?;
    let answer = switchboard_test_support::http_request(address, "GET", path, &[], b"").await.ok()?;
    (answer.status == 200).then_some(answer.body)
}
