//! TLS on a service's gRPC and HTTP servers and on calls to it, with
//! certificates made by the test's own CA: plaintext refused, the CA
//! checked, mutual TLS, and certificates renewed on disk taken up without a
//! restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use switchboard_platform::Config;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::config::{ClientAuth, TlsConfig};
use switchboard_platform::grpc::lazy_channel;
use switchboard_platform::service::{Kit, Service};
use switchboard_platform::tls::Tls;
use switchboard_test_support::pki::{Leaf, TestCa};
use switchboard_test_support::{RunningService, access_with_keys, kit, scratch_dir, start_service_with_http};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A service with no API of its own: health, reflection and the HTTP
/// probes are what every service has.
struct Bare;

impl Service for Bare {
    const NAME: &'static str = "bare";

    fn in_memory(_kit: &mut Kit) -> Bare {
        Bare
    }

    async fn connect(_kit: &mut Kit) -> anyhow::Result<Bare> {
        Ok(Bare)
    }

    async fn start(self, _kit: &mut Kit) -> anyhow::Result<()> {
        Ok(())
    }
}

fn server_settings(ca: &TestCa, leaf: &Leaf, client_auth: ClientAuth) -> TlsConfig {
    TlsConfig {
        cert_file: Some(leaf.cert_file.clone()),
        key_file: Some(leaf.key_file.clone()),
        ca_file: Some(ca.ca_file()),
        client_auth,
        ..TlsConfig::default()
    }
}

fn client_settings(ca_file: &Path, identity: Option<&Leaf>) -> Arc<Tls> {
    let config = TlsConfig {
        ca_file: Some(ca_file.to_owned()),
        cert_file: identity.map(|leaf| leaf.cert_file.clone()),
        key_file: identity.map(|leaf| leaf.key_file.clone()),
        client_auth: if identity.is_some() { ClientAuth::Required } else { ClientAuth::None },
        ..TlsConfig::default()
    };
    Tls::load(&config).expect("client settings")
}

async fn start_bare(tls: Arc<Tls>) -> RunningService {
    let mut kit = kit::<Bare>(Config::default(), Arc::new(MemoryBus::new()), access_with_keys(&[])).with_tls(Some(tls));
    let bare = Bare::in_memory(&mut kit);
    start_service_with_http(kit, bare).await
}

/// Whether a health check over `url` with `tls` is answered (waiting up to
/// 5 s for the server to come up).
async fn health_answers(url: &str, tls: Option<&Arc<Tls>>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = HealthClient::new(lazy_channel(url, tls).expect("a channel"));
        if client.check(HealthCheckRequest { service: String::new() }).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the health check fails at once (the server is known to be up).
async fn health_refused(url: &str, tls: Option<&Arc<Tls>>) -> bool {
    let mut client = HealthClient::new(lazy_channel(url, tls).expect("a channel"));
    client.check(HealthCheckRequest { service: String::new() }).await.is_err()
}

#[tokio::test]
async fn grpc_and_http_are_served_only_over_tls_to_clients_that_trust_the_ca() {
    let dir = scratch_dir("tls-serve");
    let ca = TestCa::new(&dir, "services");
    let server = start_bare(Tls::load(&server_settings(&ca, &ca.leaf("server"), ClientAuth::None)).unwrap()).await;
    let https = format!("https://localhost:{}", server.address.port());
    assert!(health_answers(&https, Some(&client_settings(&ca.ca_file(), None))).await, "a client trusting the CA");
    assert!(health_refused(&format!("http://{}", server.address), None).await, "plaintext is not served");
    let stranger = TestCa::new(&dir, "stranger");
    assert!(health_refused(&https, Some(&client_settings(&stranger.ca_file(), None))).await, "another CA");

    let http_address = server.http_address.expect("an HTTP server");
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca.ca_file()).unwrap()).unwrap())
        .build()
        .unwrap();
    let probe = trusting.get(format!("https://localhost:{}/healthz", http_address.port())).send().await;
    assert_eq!(probe.expect("HTTPS probe").status(), 200);
    let plain = reqwest::Client::new().get(format!("http://{http_address}/healthz")).send().await;
    assert!(plain.is_err(), "no plaintext HTTP either");
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_admits_only_callers_with_a_certificate_of_the_ca() {
    let dir = scratch_dir("tls-mutual");
    let ca = TestCa::new(&dir, "services");
    let server = start_bare(Tls::load(&server_settings(&ca, &ca.leaf("server"), ClientAuth::Required)).unwrap()).await;
    let https = format!("https://localhost:{}", server.address.port());
    let routing = ca.leaf("routing");
    assert!(
        health_answers(&https, Some(&client_settings(&ca.ca_file(), Some(&routing)))).await,
        "a service's certificate"
    );
    assert!(health_refused(&https, Some(&client_settings(&ca.ca_file(), None))).await, "no certificate");
    let stranger = TestCa::new(&dir, "stranger");
    let impostor = stranger.leaf("impostor");
    assert!(
        health_refused(&https, Some(&client_settings(&ca.ca_file(), Some(&impostor)))).await,
        "a certificate of another CA"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_renewed_on_disk_is_served_to_new_connections_without_a_restart() {
    let dir = scratch_dir("tls-reload");
    let old_ca = TestCa::new(&dir, "old");
    let files = old_ca.leaf("server");
    let settings = TlsConfig { reload_interval_secs: 1, ..server_settings(&old_ca, &files, ClientAuth::None) };
    let tls = Tls::load(&settings).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(Arc::clone(&tls).keep_fresh(shutdown.clone()));
    let server = start_bare(tls).await;
    let https = format!("https://localhost:{}", server.address.port());
    let new_ca = TestCa::new(&dir, "new");
    let trusts_new = client_settings(&new_ca.ca_file(), None);
    assert!(health_refused(&https, Some(&trusts_new)).await, "not the new certificate yet");
    new_ca.write_leaf(&files, "server");
    assert!(health_answers(&https, Some(&trusts_new)).await, "the renewed certificate, within the reload interval");
    assert!(health_refused(&https, Some(&client_settings(&old_ca.ca_file(), None))).await, "and no longer the old");
    shutdown.cancel();
    server.stop().await;
}

#[tokio::test]
async fn broken_files_are_refused_at_start_and_keep_the_old_ones_on_reload() {
    let dir = scratch_dir("tls-broken");
    let ca = TestCa::new(&dir, "services");
    let files = ca.leaf("server");
    let missing =
        TlsConfig { key_file: Some(dir.join("absent.pem")), ..server_settings(&ca, &files, ClientAuth::None) };
    let error = Tls::load(&missing).err().expect("a missing key file");
    assert!(format!("{error:#}").contains("absent.pem"), "the file is named: {error:#}");
    let other = ca.leaf("other");
    let mismatched =
        TlsConfig { key_file: Some(other.key_file.clone()), ..server_settings(&ca, &files, ClientAuth::None) };
    assert!(Tls::load(&mismatched).is_err(), "a key of another certificate");
    let only_cert = TlsConfig { key_file: None, ..server_settings(&ca, &files, ClientAuth::None) };
    assert!(Tls::load(&only_cert).is_err());

    let tls = Tls::load(&server_settings(&ca, &files, ClientAuth::None)).unwrap();
    std::fs::write(&files.cert_file, "not a certificate").unwrap();
    assert!(tls.reload_if_changed().is_err(), "a half-written renewal is not taken");
    assert!(tls.grpc_server_config().is_some(), "the old certificate stays in force");
}

#[test]
fn no_plaintext_where_tls_is_promised_or_in_use() {
    assert!(lazy_channel("https://routing:50052", None).is_err(), "https without TLS settings");
    let mut config = Config::default();
    config.services.routing.url = "https://routing:50052".to_owned();
    assert!(config.validate().is_ok(), "https with the system's roots");
    config.tls.cert_file = Some("/etc/switchboard/tls/tls.crt".into());
    config.tls.key_file = Some("/etc/switchboard/tls/tls.key".into());
    let error = config.validate().expect_err("http:// to TLS-only servers");
    assert!(error.to_string().contains("services.ingestion.url is http://"), "{error}");
    config.tls.key_file = None;
    assert!(config.validate().is_err(), "a certificate without its key");
}

/// Traces to an `https://` collector go over TLS, trusting
/// `telemetry.otlp_ca_file`: the collector here is a TLS listener of the
/// test's CA, which sees the exporter's handshake complete.
#[tokio::test]
async fn traces_reach_an_https_collector_over_tls() {
    let dir = scratch_dir("tls-otlp");
    let ca = TestCa::new(&dir, "collector");
    let collector = Tls::load(&server_settings(&ca, &ca.leaf("collector"), ClientAuth::None)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut handshakes =
        switchboard_platform::tls::accept_tls(listener, move || collector.grpc_server_config(), stop.clone());
    let telemetry = switchboard_platform::config::TelemetryConfig {
        otlp_endpoint: Some(format!("https://localhost:{port}")),
        otlp_ca_file: Some(ca.ca_file()),
        ..Default::default()
    };
    let guard = switchboard_platform::telemetry::init(&telemetry, "tls-test").expect("telemetry");
    tracing::info_span!("exported").in_scope(|| tracing::info!("a span to export"));
    // Dropping the guard flushes the batch to the collector.
    let flushing = tokio::task::spawn_blocking(move || drop(guard));
    let handshake = tokio::time::timeout(Duration::from_secs(10), handshakes.recv()).await;
    assert!(matches!(handshake, Ok(Some(_))), "the exporter completed a TLS handshake with the collector");
    stop.cancel();
    let _ = flushing.await;
}

/// A caller keeping its connection open does not hold up a shutdown: the
/// server drains it and stops.
#[tokio::test]
async fn a_server_stops_cleanly_while_callers_keep_tls_connections_open() {
    let dir = scratch_dir("tls-drain");
    let ca = TestCa::new(&dir, "services");
    let server = start_bare(Tls::load(&server_settings(&ca, &ca.leaf("server"), ClientAuth::None)).unwrap()).await;
    let https = format!("https://localhost:{}", server.address.port());
    let client_tls = client_settings(&ca.ca_file(), None);
    assert!(health_answers(&https, Some(&client_tls)).await);
    let mut kept = HealthClient::new(lazy_channel(&https, Some(&client_tls)).unwrap());
    kept.check(HealthCheckRequest { service: String::new() }).await.expect("an open connection");
    let started = tokio::time::Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10), "stopped in {:?}", started.elapsed());
    drop(kept);
}
