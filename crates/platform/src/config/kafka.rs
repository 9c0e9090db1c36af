//! `[kafka]`: the brokers, the topics the platform creates, and how it
//! reaches the brokers (TLS, SASL, librdkafka properties).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Partitions of each topic the platform creates if missing.
    pub partitions: i32,
    /// Copies of each topic the platform creates: 1 (default, fits a
    /// one-broker cluster), at most the brokers' count (3 in production),
    /// or -1 for the brokers' `default.replication.factor` (Kafka 2.4+).
    pub replication_factor: i32,
    /// Prefix of every consumer group id.
    pub group_prefix: String,
    /// Prefix of every topic name, so several deployments (or test runs)
    /// can share one cluster.
    pub topic_prefix: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, with the SASL protocols.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// From a Secret as `SWITCHBOARD_KAFKA__SASL_PASSWORD`.
    pub sasl_password: Option<String>,
    /// The CA (PEM) of the brokers' certificates, with the SSL protocols;
    /// unset: the system's roots.
    pub ssl_ca_location: Option<std::path::PathBuf>,
    /// Any other librdkafka property (`[kafka.properties]`, e.g.
    /// `"ssl.certificate.location"` for mutual TLS, `"client.rack"`), set
    /// last on every producer, consumer and admin client. The ones the
    /// delivery guarantees rest on cannot be set here.
    pub properties: std::collections::BTreeMap<String, String>,
    /// How long the broker may hold a fetch of a consumer on a contact's
    /// way to an agent (routing's intake, presence's pushes):
    /// `fetch.wait.max.ms` of the interactive pace, 1 to
    /// [`MAX_INTERACTIVE_FETCH_WAIT_MS`]. tansu 0.6 holds every fetch
    /// this long even when records arrive, so a hop costs about one and a
    /// half of it: 5 (the default). A broker that answers as soon as
    /// records arrive (Apache Kafka, Redpanda) adds no latency at 100 or
    /// more, and each such consumer then asks it 10 times a second when
    /// idle instead of 200 (at 100).
    pub interactive_fetch_wait_ms: u32,
    /// Every acknowledged record is also published on Redis pub/sub (the
    /// `[redis]` of the process) and the consumers on a contact's way to
    /// an agent take records from there at once, fetching from the broker
    /// only at the background pace to catch hints lost. `true` (the
    /// default) unless the process has no Redis it may use; a Redis outage
    /// then costs latency (a hop up to a background fetch wait, 100 ms),
    /// never records (architecture.md, "Hints").
    pub hints: bool,
}

/// The default of [`KafkaConfig::interactive_fetch_wait_ms`].
const DEFAULT_INTERACTIVE_FETCH_WAIT_MS: u32 = 5;
/// The most [`KafkaConfig::interactive_fetch_wait_ms`] may be: as long as
/// the read models' consumers wait.
pub const MAX_INTERACTIVE_FETCH_WAIT_MS: u32 = 500;

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            partitions: 3,
            replication_factor: 1,
            group_prefix: "switchboard".to_owned(),
            topic_prefix: String::new(),
            security_protocol: "plaintext".to_owned(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            properties: std::collections::BTreeMap::new(),
            interactive_fetch_wait_ms: DEFAULT_INTERACTIVE_FETCH_WAIT_MS,
            hints: true,
        }
    }
}

/// librdkafka properties Switchboard sets itself because its guarantees
/// rest on them (idempotent, fully acknowledged produce; offsets stored
/// only after the side effect) or because they have their own settings.
const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.idempotence",
    "acks",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "auto.offset.reset",
    // Rebalance handling (commits before revocation, the partitions a
    // member holds, hints) assumes the eager protocol.
    "partition.assignment.strategy",
    "group.protocol",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    // Either would keep `ssl` while checking no certificate.
    "enable.ssl.certificate.verification",
    "ssl.endpoint.identification.algorithm",
];

impl KafkaConfig {
    /// The interactive fetch wait is within its bounds.
    pub fn validate_paces(&self) -> anyhow::Result<()> {
        if !(1..=MAX_INTERACTIVE_FETCH_WAIT_MS).contains(&self.interactive_fetch_wait_ms) {
            anyhow::bail!(
                "kafka.interactive_fetch_wait_ms = {} is not between 1 and {MAX_INTERACTIVE_FETCH_WAIT_MS}",
                self.interactive_fetch_wait_ms
            );
        }
        Ok(())
    }

    /// The protocol names a known one; SASL has its mechanism and
    /// credentials and only with a SASL protocol; a CA only with an SSL
    /// protocol (never a CA configured for a plaintext connection); no
    /// reserved property passed through.
    pub fn validate_security(&self) -> anyhow::Result<()> {
        let (sasl, ssl) = match self.security_protocol.as_str() {
            "plaintext" => (false, false),
            "ssl" => (false, true),
            "sasl_plaintext" => (true, false),
            "sasl_ssl" => (true, true),
            other => anyhow::bail!(
                "kafka.security_protocol `{other}` is not one of plaintext, ssl, sasl_plaintext, sasl_ssl"
            ),
        };
        let sasl_set = self.sasl_mechanism.is_some() || self.sasl_username.is_some() || self.sasl_password.is_some();
        if sasl {
            match self.sasl_mechanism.as_deref() {
                Some("PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {}
                _ => anyhow::bail!("kafka.sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
            }
            if self.sasl_username.as_deref().is_none_or(str::is_empty) || self.sasl_password.is_none() {
                anyhow::bail!("kafka.sasl_username and kafka.sasl_password are needed with {}", self.security_protocol);
            }
        } else if sasl_set {
            anyhow::bail!("kafka.sasl_* is set but kafka.security_protocol is {}", self.security_protocol);
        }
        if !ssl && self.ssl_ca_location.is_some() {
            anyhow::bail!("kafka.ssl_ca_location is set but kafka.security_protocol is {}", self.security_protocol);
        }
        if let Some(reserved) = self.properties.keys().find(|key| RESERVED_KAFKA_PROPERTIES.contains(&key.as_str())) {
            anyhow::bail!("kafka.properties cannot set `{reserved}`: Switchboard sets it (see kafka.* settings)");
        }
        Ok(())
    }
}
