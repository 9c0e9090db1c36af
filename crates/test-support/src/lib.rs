//! Fixtures shared by Switchboard's tests: real-backend URLs (failing under
//! `CI=true` when missing), isolated Kafka topics and PostgreSQL databases,
//! API keys, and services started in-process on a free port. A dev
//! dependency, and an optional one behind the `contract` and `bench`
//! features: the default release build holds none of it.

#![allow(clippy::panic, clippy::expect_used)]

pub mod broker;
pub mod identity_provider;
pub mod leftovers;
pub mod pki;

use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_platform::Config;
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::EventBus;
use switchboard_platform::service::{Kit, Listeners, Service, run};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The URL of a test backend from environment variable `variable`
/// (`SWITCHBOARD_TEST_KAFKA`, `SWITCHBOARD_TEST_REDIS`,
/// `SWITCHBOARD_TEST_POSTGRES`). Missing: under `CI=true` the test fails,
/// elsewhere it is skipped with a note on stderr.
pub fn backend_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{variable} is not set but CI=true: this test needs its backend (run scripts/test.sh)")
        }
        _ => {
            eprintln!("skipping: {variable} is not set (scripts/test.sh starts the backends and sets it)");
            None
        }
    }
}

/// A short random suffix that keeps one test's topics, groups, databases
/// and Redis keys apart from every other test's.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Creates an empty database on the server of `admin_url` and returns the
/// URL of the new database.
pub async fn fresh_database(admin_url: &str) -> anyhow::Result<String> {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let name = format!("test_{}", unique_suffix());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    // The admin URL ends in its database name: swap that for the new one.
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// The URL of a new database of the test server, reached over TLS: its
/// `SWITCHBOARD_TEST_POSTGRES_TLS` URL (`...?sslmode=require`) with the
/// database made through the plaintext admin URL.
pub async fn fresh_tls_database(admin_url: &str, tls_url: &str) -> anyhow::Result<String> {
    let plain = fresh_database(admin_url).await?;
    let name = plain.rsplit_once('/').map_or("", |(_, name)| name);
    let (base, query) = tls_url.split_once('?').unwrap_or((tls_url, ""));
    let base = base.rsplit_once('/').map_or(base, |(base, _)| base);
    Ok(format!("{base}/{name}?{query}"))
}

/// A new directory under the system's temporary one, for a test's files.
pub fn scratch_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-{label}-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Access control for tests: tenants `acme` and `globex` and the keys
/// given as (key, role, tenant, agent); each key's name is the key.
pub fn access_with_keys(
    keys: &[(&str, &str, Option<&str>, Option<&str>)],
) -> std::sync::Arc<switchboard_platform::auth::AccessControl> {
    access_with_policies(keys, std::collections::BTreeMap::new())
}

/// [`access_with_keys`] with the operator's weight and limits for tenants
/// (by id).
pub fn access_with_policies(
    keys: &[(&str, &str, Option<&str>, Option<&str>)],
    tenant_policies: std::collections::BTreeMap<String, switchboard_platform::config::TenantPolicyConfig>,
) -> std::sync::Arc<switchboard_platform::auth::AccessControl> {
    access_configured(keys, |auth| auth.tenant_policies = tenant_policies)
}

/// [`access_with_keys`] with the rest of `[auth]` as `configure` sets it.
pub fn access_configured(
    keys: &[(&str, &str, Option<&str>, Option<&str>)],
    configure: impl FnOnce(&mut switchboard_platform::config::AuthConfig),
) -> std::sync::Arc<switchboard_platform::auth::AccessControl> {
    let mut config = switchboard_platform::config::AuthConfig {
        tenants: vec!["acme".to_owned(), "globex".to_owned()],
        api_keys: keys
            .iter()
            .map(|(key, role, tenant, agent)| {
                switchboard_platform::config::ApiKeyConfig::for_key(key, key, role, *tenant, *agent)
            })
            .collect(),
        ..switchboard_platform::config::AuthConfig::default()
    };
    configure(&mut config);
    switchboard_platform::auth::AccessControl::from_config(&config).expect("test keys are valid")
}

pub use switchboard_platform::auth::authorized;

/// A channel to a server just started on `address`, retrying the connect
/// for up to ten seconds while the server comes up.
pub async fn connect_when_ready(address: std::net::SocketAddr) -> anyhow::Result<tonic::transport::Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(error) if tokio::time::Instant::now() > deadline => return Err(error.into()),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// The `ErrorInfo.reason` of `status`, if it has one.
pub fn error_reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}

/// The `ResourceInfo.resource_name` of `status`, if it has one.
pub fn error_resource(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_resource_info().map(|info| info.resource_name)
}

/// The fields named in a status's `BadRequest` details.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad_request| bad_request.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}

/// Receives from `subscription` until `pick` accepts a routing event, for
/// at most `limit`.
pub async fn next_routing_event<T>(
    subscription: &mut Box<dyn switchboard_platform::bus::Subscription>,
    limit: std::time::Duration,
    pick: impl Fn(switchboard_proto::routing::v1::routing_event::Kind) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let delivery = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .map_err(|_| anyhow::anyhow!("no matching routing event within {limit:?}"))??;
        subscription.ack(&delivery).await?;
        let Some(switchboard_proto::events::v1::event_envelope::Payload::Routing(event)) = delivery.envelope.payload
        else {
            continue;
        };
        if let Some(found) = event.kind.and_then(&pick) {
            return Ok(found);
        }
    }
}

/// Kafka settings whose topics and consumer groups belong to this test run
/// only (prefixed with `label` and a random suffix), on one partition.
pub fn isolated_kafka_config(brokers: String, label: &str) -> switchboard_platform::config::KafkaConfig {
    let run = unique_suffix();
    switchboard_platform::config::KafkaConfig {
        brokers,
        partitions: 1,
        replication_factor: 1,
        group_prefix: format!("{label}-{run}"),
        topic_prefix: format!("{label}-{run}."),
        ..Default::default()
    }
}

/// A service running in this process on a free port.
pub struct RunningService {
    pub address: SocketAddr,
    /// Its HTTP server's address, when it was started with one.
    pub http_address: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningService {
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Cancels the service and waits (at most 30 s) for it to stop cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .expect("the service stops within 30 s");
        outcome.expect("service task").expect("the service stops cleanly");
    }
}

/// A kit for service `S` on `bus` with `access`.
pub fn kit<S: Service>(config: Config, bus: Arc<dyn EventBus>, access: Arc<AccessControl>) -> Kit {
    Kit::new(S::NAME, config, bus, access, CancellationToken::new())
}

/// Runs `service` (built on `kit`) on 127.0.0.1:0 without an HTTP server.
pub async fn start_service<S: Service>(kit: Kit, service: S) -> RunningService {
    start(kit, service, false).await
}

/// [`start_service`] with its HTTP server (probes, metrics, the service's
/// routes) on another free port.
pub async fn start_service_with_http<S: Service>(kit: Kit, service: S) -> RunningService {
    start(kit, service, true).await
}

async fn start<S: Service>(kit: Kit, service: S, with_http: bool) -> RunningService {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let address = listener.local_addr().expect("local address");
    let http = if with_http { Some(TcpListener::bind("127.0.0.1:0").await.expect("bind a free port")) } else { None };
    let http_address = http.as_ref().map(|listener| listener.local_addr().expect("local address"));
    let shutdown = kit.shutdown();
    let task = tokio::spawn(run(kit, service, Listeners { grpc: listener, http }));
    RunningService { address, http_address, shutdown, task }
}

/// An HTTP/1.1 answer: status code, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// Sends one HTTP/1.1 request to `address` over a fresh connection, as a
/// provider's webhook call would, and reads the whole answer (the server
/// closes the connection: `Connection: close`).
pub async fn http_request(
    address: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpAnswer> {
    use anyhow::Context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut request = format!(
        "{method} {path_and_query} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").context("an HTTP answer has a head and a body")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("a status line")?;
    let status = status_line.split(' ').nth(1).context("a status code")?.parse()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers.iter().any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok(HttpAnswer { status, headers, body })
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut payload = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        payload.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    payload
}

/// A gRPC codec that sends and receives raw bytes: for calling any method by
/// path with whatever bytes a test wants (malformed protobuf, say).
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

/// Writes the bytes as the message.
#[derive(Debug, Clone, Default)]
pub struct RawEncoder;

/// Reads the whole message as bytes.
#[derive(Debug, Clone, Default)]
pub struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buffer.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buffer: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut bytes = vec![0; buffer.remaining()];
        buffer.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// Every RPC of the Switchboard API as (`/package.Service/Method`, whether
/// the client streams), read from the descriptor set reflection serves, so
/// a new RPC is covered by tests that walk them all.
pub fn every_rpc() -> Vec<(String, bool)> {
    use prost::Message;
    let descriptors = prost_types::FileDescriptorSet::decode(switchboard_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut rpcs = Vec::new();
    for file in descriptors.file {
        let package = file.package.clone().unwrap_or_default();
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{package}.{}/{}", service.name(), method.name());
                rpcs.push((path, method.client_streaming()));
            }
        }
    }
    rpcs
}

/// The value of the sample of metric `name` whose labels include every one
/// of `labels`, from a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
        let matches =
            metric == name && labels.iter().all(|(key, wanted)| label_text.contains(&format!("{key}=\"{wanted}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}
