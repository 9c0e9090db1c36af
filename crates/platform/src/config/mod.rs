//! Layered configuration: built-in defaults, then a TOML file, then
//! `SWITCHBOARD_*` environment variables (`__` separates levels, e.g.
//! `SWITCHBOARD_KAFKA__BROKERS`). Validated once at start.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use switchboard_core::TenantId;

mod auth;
mod kafka;
mod tls;

pub use self::auth::*;
pub use self::kafka::{KafkaConfig, MAX_INTERACTIVE_FETCH_WAIT_MS};
pub use self::tls::{ClientAuth, TlsConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Distinguishes replicas (consumer groups that fan out, logs).
    pub instance_id: String,
    pub telemetry: TelemetryConfig,
    pub grpc: GrpcConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub postgres: PostgresConfig,
    pub auth: AuthConfig,
    pub services: ServicesConfig,
    pub routing: RoutingConfig,
    pub presence: PresenceConfig,
    pub ingestion: IngestionConfig,
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            instance_id: default_instance_id(),
            telemetry: TelemetryConfig::default(),
            grpc: GrpcConfig::default(),
            kafka: KafkaConfig::default(),
            redis: RedisConfig::default(),
            postgres: PostgresConfig::default(),
            auth: AuthConfig::default(),
            services: ServicesConfig::default(),
            routing: RoutingConfig::default(),
            presence: PresenceConfig::default(),
            ingestion: IngestionConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// `$HOSTNAME` (a pod's name) when set, else the host's name with the
/// process id and a random suffix: unique for every process started from a
/// shell, where `HOSTNAME` is usually not exported.
fn default_instance_id() -> String {
    instance_id_from(std::env::var("HOSTNAME").ok())
}

fn instance_id_from(hostname_variable: Option<String>) -> String {
    if let Some(hostname) = hostname_variable.filter(|hostname| !hostname.is_empty()) {
        return hostname;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .unwrap_or_else(|| "local".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..6])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `json` (one object per line) or `text`.
    pub log_format: String,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`, or
    /// `https://` (TLS, checked against `otlp_ca_file`, else the system's
    /// roots); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
    /// The CA (PEM) of an `https://` collector's certificate.
    pub otlp_ca_file: Option<std::path::PathBuf>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: "text".to_owned(),
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
            otlp_ca_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Largest request a server decodes; larger ones get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    pub request_timeout_ms: u64,
    /// In-flight requests per connection.
    pub concurrency_limit: usize,
    /// HTTP/2 streams a client may open at once on one connection (agent
    /// sessions and watches hold one each); the rest wait for one to end.
    pub max_concurrent_streams: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            max_message_bytes: 256 * 1024,
            request_timeout_ms: 30_000,
            concurrency_limit: 256,
            max_concurrent_streams: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS, the server's certificate checked
    /// against `ca_file`, else the system's roots).
    pub url: String,
    /// Hash tag of the routing pool, so Redis Cluster keeps a pool's keys
    /// in one slot and scripts can touch them atomically.
    pub pool: String,
    /// The CA (PEM) that signs the Redis server's certificate.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { url: "redis://127.0.0.1:6379".to_owned(), pool: "default".to_owned(), ca_file: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// With `sslmode=require`, TLS verified like libpq's `verify-full`:
    /// the server's certificate against `ca_file` (else the system's
    /// roots) and its name against the host; any other mode is plaintext.
    pub url: String,
    pub pool_size: usize,
    /// The CA (PEM) that signs the PostgreSQL server's certificate.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://switchboard@127.0.0.1:5432/switchboard".to_owned(),
            pool_size: 8,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEndpoint {
    /// Where this service's gRPC API listens.
    pub listen: String,
    /// Where other services reach it.
    pub url: String,
    /// Where its HTTP server listens (`/metrics`, `/healthz`, `/readyz`
    /// and the service's own routes); empty: no HTTP server.
    #[serde(default)]
    pub http_listen: String,
}

impl ServiceEndpoint {
    fn local(port: u16) -> Self {
        ServiceEndpoint {
            listen: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            http_listen: format!("127.0.0.1:{}", port + 10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesConfig {
    pub ingestion: ServiceEndpoint,
    pub routing: ServiceEndpoint,
    pub presence: ServiceEndpoint,
    pub crm: ServiceEndpoint,
    pub kpi: ServiceEndpoint,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            ingestion: ServiceEndpoint::local(50051),
            routing: ServiceEndpoint::local(50052),
            presence: ServiceEndpoint::local(50053),
            crm: ServiceEndpoint::local(50054),
            kpi: ServiceEndpoint::local(50055),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// How often expired offers are swept back to their queue.
    pub offer_sweep_interval_ms: u64,
    /// The shortest time between two rounds of the outbox relay (at most
    /// [`MAX_RELAY_INTERVAL_MS`]): changes made closer together than this
    /// are published and journaled in one round, one broker request and
    /// one database transaction, for up to this much more latency under
    /// load; a change after a quiet spell goes at once. 0 starts a round
    /// for every change (lowest latency, most requests).
    pub relay_interval_ms: u64,
}

/// The longest `routing.relay_interval_ms`: far inside the 5 s an API
/// caller waits for its change to be relayed.
pub const MAX_RELAY_INTERVAL_MS: u64 = 1_000;

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig { offer_sweep_interval_ms: 250, relay_interval_ms: 10 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestionConfig {
    /// The base URL providers reach ingestion's HTTP server at, e.g.
    /// `https://switchboard.example.com` behind an ingress; channels'
    /// webhook URLs are built on it (`{base}/webhooks/{tenant}/{channel}`),
    /// and Twilio's signatures cover it. Empty: `http://` +
    /// `services.ingestion.http_listen`, right only for local use.
    pub public_base_url: String,
    /// Messages one sender (a phone, a handle, a form's address) may post
    /// to one channel a minute, in bursts of `sender_burst`; more are
    /// answered 429 with `Retry-After` (providers retry later; their
    /// redeliveries are stored once). 0 turns it off.
    pub sender_messages_per_minute: u32,
    pub sender_burst: u32,
    /// Whether channel settings (provider API URLs, a PBX's decision URL,
    /// mail servers), which tenant admins write, may name loopback,
    /// private, shared or link-local addresses. Off: only public
    /// addresses are connected to, so a tenant cannot reach the
    /// deployment's internal network (or the cloud metadata address)
    /// through ingestion. Turn it on for an on-premises mail server or
    /// PBX, or local test doubles.
    pub allow_private_destinations: bool,
}

impl Default for IngestionConfig {
    fn default() -> Self {
        IngestionConfig {
            public_base_url: String::new(),
            sender_messages_per_minute: 60,
            sender_burst: 20,
            allow_private_destinations: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// How long a dropped session may reconnect before the agent goes offline.
    pub session_grace_ms: u64,
    /// Consecutive offers an agent lets time out before it is set
    /// NOT_RESPONDING; 0 never sets it.
    pub missed_offers_threshold: u32,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig { session_grace_ms: 15_000, missed_offers_threshold: 3 }
    }
}

impl Config {
    /// Defaults, then `file` (if given), then `SWITCHBOARD_*` env; validated.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file `{}` does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment =
            figment.merge(Env::prefixed("SWITCHBOARD_").split("__").filter(|key| is_config_variable(key.as_str())));
        let config: Config = figment.extract()?;
        config.validate()?;
        Ok(config)
    }

    /// The effective configuration as TOML, for `--print-config`, with
    /// the passwords of backend URLs replaced by `***`.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let mut printable = self.clone();
        printable.postgres.url = redact_url_password(&printable.postgres.url);
        printable.redis.url = redact_url_password(&printable.redis.url);
        printable.kafka.brokers = redact_url_password(&printable.kafka.brokers);
        if let Some(endpoint) = &printable.telemetry.otlp_endpoint {
            printable.telemetry.otlp_endpoint = Some(redact_url_password(endpoint));
        }
        if printable.auth.service_key.is_some() {
            printable.auth.service_key = Some("***".to_owned());
        }
        if printable.kafka.sasl_password.is_some() {
            printable.kafka.sasl_password = Some("***".to_owned());
        }
        for (key, value) in &mut printable.kafka.properties {
            if key.contains("password") || key.contains("secret") || key.ends_with(".key.pem") {
                *value = "***".to_owned();
            }
        }
        Ok(toml::to_string_pretty(&printable)?)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.instance_id.is_empty() {
            anyhow::bail!("instance_id must not be empty");
        }
        if !matches!(self.telemetry.log_format.as_str(), "json" | "text") {
            anyhow::bail!("telemetry.log_format must be `json` or `text`");
        }
        if self.grpc.max_message_bytes < 1024 {
            anyhow::bail!("grpc.max_message_bytes must be at least 1024");
        }
        if self.grpc.concurrency_limit == 0
            || self.grpc.request_timeout_ms == 0
            || self.grpc.max_concurrent_streams == 0
        {
            anyhow::bail!(
                "grpc.concurrency_limit, grpc.request_timeout_ms and grpc.max_concurrent_streams must be positive"
            );
        }
        self.kafka.validate_security()?;
        self.kafka.validate_paces()?;
        if self.kafka.partitions < 1 {
            anyhow::bail!("kafka.partitions must be at least 1");
        }
        if self.kafka.replication_factor < 1 && self.kafka.replication_factor != -1 {
            anyhow::bail!("kafka.replication_factor must be at least 1, or -1 for the brokers' default");
        }
        if self.routing.relay_interval_ms > MAX_RELAY_INTERVAL_MS {
            anyhow::bail!(
                "routing.relay_interval_ms = {} is over {MAX_RELAY_INTERVAL_MS}",
                self.routing.relay_interval_ms
            );
        }
        if self.redis.pool.is_empty() || self.redis.pool.contains(['{', '}']) {
            anyhow::bail!("redis.pool must be non-empty and contain no braces");
        }
        for (name, endpoint) in self.services.all() {
            endpoint
                .listen
                .parse::<SocketAddr>()
                .map_err(|error| anyhow::anyhow!("services.{name}.listen `{}`: {error}", endpoint.listen))?;
            if !endpoint.http_listen.is_empty() {
                endpoint.http_listen.parse::<SocketAddr>().map_err(|error| {
                    anyhow::anyhow!("services.{name}.http_listen `{}`: {error}", endpoint.http_listen)
                })?;
            }
            // Never a plaintext connection where TLS is in use: the servers
            // speak TLS only, so the calls between them must too.
            match (endpoint.url.split_once("://").map(|(scheme, _)| scheme), self.tls.serves_tls()) {
                (Some("https"), _) | (Some("http"), false) => {}
                (Some("http"), true) => anyhow::bail!(
                    "services.{name}.url is http://, but the services speak TLS (tls.cert_file): use https://"
                ),
                _ => anyhow::bail!("services.{name}.url must start with http:// or https://"),
            }
        }
        let otlp_over_tls = self.telemetry.otlp_endpoint.as_deref().is_some_and(|url| url.starts_with("https://"));
        if self.telemetry.otlp_ca_file.is_some() && !otlp_over_tls {
            anyhow::bail!("telemetry.otlp_ca_file is set but telemetry.otlp_endpoint is not https://");
        }
        if !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            anyhow::bail!("redis.url must start with redis:// or rediss://");
        }
        if self.redis.url.starts_with("rediss://") && self.redis.url.contains("#insecure") {
            // The client would skip checking the server's certificate.
            anyhow::bail!("redis.url must not end in #insecure: set redis.ca_file to the CA that signs the server");
        }
        let postgres_tls = self
            .postgres
            .url
            .parse::<tokio_postgres::Config>()
            .is_ok_and(|parsed| parsed.get_ssl_mode() == tokio_postgres::config::SslMode::Require);
        if self.postgres.ca_file.is_some() && !postgres_tls {
            anyhow::bail!(
                "postgres.ca_file is set but postgres.url has no sslmode=require: the connection would be plaintext"
            );
        }
        if self.redis.ca_file.is_some() && !self.redis.url.starts_with("rediss://") {
            anyhow::bail!("redis.ca_file is set but redis.url is redis://: use rediss://");
        }
        self.tls.validate()?;
        for tenant in &self.auth.tenants {
            TenantId::parse(tenant, "auth.tenants").map_err(|error| anyhow::anyhow!("{error}"))?;
        }
        for (index, key) in self.auth.api_keys.iter().enumerate() {
            validate_api_key(index, key, &self.auth.tenants)?;
            // One name is one key, and one secret one holder: a secret
            // configured twice would authenticate as whichever came first.
            if let Some(earlier) = self.auth.api_keys[..index].iter().position(|other| other.name == key.name) {
                anyhow::bail!("auth.api_keys[{index}].name `{}` is also auth.api_keys[{earlier}]'s", key.name);
            }
            if let Some(earlier) = self.auth.api_keys[..index].iter().position(|other| other.sha256 == key.sha256) {
                anyhow::bail!("auth.api_keys[{index}].sha256 is also auth.api_keys[{earlier}]'s: one secret, two keys");
            }
        }
        if let Some(service_key) = &self.auth.service_key
            && (service_key.len() < MIN_SERVICE_KEY_LEN || !service_key.bytes().all(|byte| byte.is_ascii_graphic()))
        {
            anyhow::bail!(
                "auth.service_key must be at least {MIN_SERVICE_KEY_LEN} printable ASCII characters without spaces \
                 (`switchboard service-key new` makes one)"
            );
        }
        Ok(())
    }
}

/// The shortest service key accepted (`auth.service_key`).
pub const MIN_SERVICE_KEY_LEN: usize = 32;

/// `url` with every password replaced by `***`: the user info's
/// (`scheme://user:password@host`) and any `password=` parameter, of a
/// query string (`?password=…&…`) or of a key-value connection string
/// (`host=db password=… dbname=sb`, quoted or not); anything else
/// unchanged.
pub fn redact_url_password(url: &str) -> String {
    redact_password_parameters(&redact_user_info(url))
}

fn redact_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return url.to_owned();
    };
    format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..])
}

fn redact_password_parameters(text: &str) -> String {
    const PARAMETER: &str = "password";
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.to_ascii_lowercase().find(PARAMETER) {
        let after_name = &rest[found + PARAMETER.len()..];
        let starts_parameter = found == 0 || matches!(rest.as_bytes()[found - 1], b'?' | b'&' | b' ' | b'\t' | b';');
        let value = after_name.trim_start_matches([' ', '\t']).strip_prefix('=');
        let (Some(value), true) = (value, starts_parameter) else {
            redacted.push_str(&rest[..found + PARAMETER.len()]);
            rest = after_name;
            continue;
        };
        let value = value.trim_start_matches([' ', '\t']);
        let value_end = match value.strip_prefix('\'') {
            // A quoted value ends at the next unescaped quote.
            Some(quoted) => {
                let mut end = quoted.len();
                let mut escaped = false;
                for (index, character) in quoted.char_indices() {
                    match character {
                        '\\' if !escaped => escaped = true,
                        '\'' if !escaped => {
                            end = index + 1;
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                1 + end.min(quoted.len())
            }
            None => value.find(['&', ' ', '\t', ';']).unwrap_or(value.len()),
        };
        redacted.push_str(&rest[..found + PARAMETER.len()]);
        redacted.push_str("=***");
        rest = &value[value_end.min(value.len())..];
    }
    redacted.push_str(rest);
    redacted
}

/// `SWITCHBOARD_*` variables that are not configuration: the config file
/// path, the binary path and test-backend URLs used by the test scripts.
/// Any other unknown `SWITCHBOARD_*` variable is a typo and fails loading.
fn is_config_variable(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !(key == "config" || key == "bin" || key.starts_with("test_"))
}

impl ServicesConfig {
    pub fn all(&self) -> [(&'static str, &ServiceEndpoint); 5] {
        [
            ("ingestion", &self.ingestion),
            ("routing", &self.routing),
            ("presence", &self.presence),
            ("crm", &self.crm),
            ("kpi", &self.kpi),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_print() {
        let config = Config::default();
        config.validate().expect("defaults validate");
        let printed = config.to_toml().expect("toml");
        assert!(printed.contains("[kafka]"));
    }

    #[test]
    fn only_configuration_variables_are_read_from_the_environment() {
        assert!(is_config_variable("KAFKA__BROKERS"));
        assert!(!is_config_variable("TEST_KAFKA"));
        assert!(!is_config_variable("CONFIG"));
        assert!(!is_config_variable("BIN"));
    }

    #[test]
    fn a_key_name_or_secret_configured_twice_is_refused() {
        let mut config = Config::default();
        config.auth.tenants = vec!["acme".to_owned()];
        let key = |name: &str, secret: &str, role: &str| ApiKeyConfig::for_key(name, secret, role, Some("acme"), None);
        config.auth.api_keys = vec![key("k1", "one", "tenant_admin"), key("k2", "two", "tenant_reader")];
        config.validate().expect("distinct names and secrets");
        config.auth.api_keys.push(key("k1", "three", "tenant_reader"));
        let refused = config.validate().expect_err("a name twice").to_string();
        assert!(refused.contains("auth.api_keys[2].name"), "{refused}");
        config.auth.api_keys[2] = key("k3", "one", "tenant_reader");
        let refused = config.validate().expect_err("a secret twice").to_string();
        assert!(refused.contains("auth.api_keys[2].sha256"), "{refused}");
    }

    #[test]
    fn printed_configuration_hides_passwords() {
        assert_eq!(redact_url_password("postgres://sb:s3cret@db:5432/sb"), "postgres://sb:***@db:5432/sb");
        assert_eq!(redact_url_password("redis://:hunter2@cache:6379"), "redis://:***@cache:6379");
        assert_eq!(redact_url_password("postgres://sb@db/sb"), "postgres://sb@db/sb");
        assert_eq!(redact_url_password("127.0.0.1:9092"), "127.0.0.1:9092");
        assert_eq!(
            redact_url_password("postgres://sb@db/sb?password=qsecret1&sslmode=disable"),
            "postgres://sb@db/sb?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url_password("postgres://sb:a@db/sb?sslmode=require&Password=b"),
            "postgres://sb:***@db/sb?sslmode=require&Password=***"
        );
        assert_eq!(
            redact_url_password("host=db user=sb password=kvsecret6 dbname=sb"),
            "host=db user=sb password=*** dbname=sb"
        );
        assert_eq!(
            redact_url_password("host=db password = 'it\\'s secret' dbname=sb"),
            "host=db password=*** dbname=sb"
        );
        assert_eq!(redact_url_password("host=db passwordless=x"), "host=db passwordless=x", "another parameter");
        let mut config = Config::default();
        config.postgres.url = "postgres://sb:s3cret@db:5432/sb".to_owned();
        config.redis.url = "redis://default:hunter2@cache:6379".to_owned();
        config.auth.service_key = Some("service-key-that-must-never-be-printed".to_owned());
        let printed = config.to_toml().expect("toml");
        assert!(!printed.contains("s3cret") && !printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("never-be-printed"), "{printed}");
    }

    #[test]
    fn a_relay_interval_over_a_second_is_refused_by_name() {
        let mut config = Config::default();
        config.routing.relay_interval_ms = MAX_RELAY_INTERVAL_MS;
        config.validate().expect("the longest interval");
        config.routing.relay_interval_ms = MAX_RELAY_INTERVAL_MS + 1;
        let error = config.validate().expect_err("over the longest");
        assert!(error.to_string().contains("routing.relay_interval_ms"), "{error}");
    }

    #[test]
    fn a_short_or_unprintable_service_key_is_refused() {
        for service_key in
            ["short", "a service key with spaces in it, long enough", "key\u{0}0123456789012345678901234567890"]
        {
            let mut config = Config::default();
            config.auth.service_key = Some(service_key.to_owned());
            let error = config.validate().expect_err(service_key);
            assert!(error.to_string().contains("auth.service_key"), "{error}");
        }
        let mut config = Config::default();
        config.auth.service_key = Some("k".repeat(MIN_SERVICE_KEY_LEN));
        config.validate().expect("a long enough key");
    }

    #[test]
    fn printed_configurations_hide_kafka_credentials() {
        let mut config = Config::default();
        config.kafka.sasl_password = Some("kafka-secret".to_owned());
        config.kafka.properties.insert("ssl.key.password".to_owned(), "key-secret".to_owned());
        config.kafka.properties.insert("client.rack".to_owned(), "zone-a".to_owned());
        let printed = config.to_toml().expect("toml");
        assert!(!printed.contains("kafka-secret") && !printed.contains("key-secret"), "{printed}");
        assert!(printed.contains("zone-a"), "other properties are shown");
    }

    #[test]
    fn a_ca_for_a_plaintext_endpoint_is_refused() {
        let mut config = Config::default();
        config.telemetry.otlp_endpoint = Some("https://collector:4317".to_owned());
        config.telemetry.otlp_ca_file = Some("/etc/switchboard/ca.pem".into());
        assert!(config.validate().is_ok());
        config.telemetry.otlp_endpoint = Some("http://collector:4317".to_owned());
        assert!(config.validate().is_err(), "a CA for a plaintext collector");
        let mut config = Config::default();
        config.redis.ca_file = Some("/etc/switchboard/ca.pem".into());
        assert!(config.validate().is_err(), "a CA for redis://");
        config.redis.url = "rediss://redis:6380".to_owned();
        assert!(config.validate().is_ok());
        config.redis.url = "rediss://redis:6380/#insecure".to_owned();
        assert!(config.validate().is_err(), "no unchecked certificates");
        let mut config = Config::default();
        config.postgres.ca_file = Some("/etc/switchboard/db-ca.pem".into());
        assert!(config.validate().is_err(), "a CA for a plaintext database");
        config.postgres.url =
            "postgres://switchboard@db/switchboard?sslmode=prefer&application_name=sslmode=require".to_owned();
        assert!(config.validate().is_err(), "the parsed mode decides, not the text");
        config.postgres.url = "postgres://switchboard@db/switchboard?sslmode=require".to_owned();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn instance_ids_differ_between_processes_started_from_a_shell() {
        assert_eq!(instance_id_from(Some("routing-7d9f-abcde".to_owned())), "routing-7d9f-abcde");
        let first = instance_id_from(None);
        assert_ne!(first, instance_id_from(None));
        assert!(first.contains(&std::process::id().to_string()), "{first}");
        assert_ne!(instance_id_from(Some(String::new())), "");
    }

    #[test]
    fn bad_keys_are_rejected_with_the_field() {
        let mut config = Config::default();
        config.auth.tenants = vec!["acme".to_owned()];
        config.auth.api_keys = vec![ApiKeyConfig {
            name: "k".to_owned(),
            sha256: "0".repeat(64),
            role: "tenant_admin".to_owned(),
            tenant: Some("globex".to_owned()),
            agent: None,
        }];
        let error = config.validate().expect_err("unknown tenant");
        assert!(error.to_string().contains("auth.api_keys[0].tenant"), "{error}");
    }
}
