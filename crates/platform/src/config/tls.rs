//! `[tls]`: transport security of every server and of the calls between
//! services.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// TLS for the service's gRPC and HTTP servers and for its calls to the
/// other services. With `cert_file` and `key_file` set, every server
/// speaks TLS only; with `ca_file` set, calls to `https://` services trust
/// that CA (else the system's roots). Files are PEM and are read again
/// when they change, every `reload_interval_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// This service's certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The CA bundle the services' certificates are signed by.
    pub ca_file: Option<PathBuf>,
    /// `none`, or `required`: mutual TLS on the gRPC servers — a caller
    /// must present a certificate signed by `ca_file`, and this service
    /// presents `cert_file` on its own calls. The HTTP server (probes,
    /// metrics, webhooks) never asks for one.
    pub client_auth: ClientAuth,
    pub reload_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    None,
    Required,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            ca_file: None,
            client_auth: ClientAuth::None,
            reload_interval_secs: 5,
        }
    }
}

impl TlsConfig {
    /// Whether the servers speak TLS.
    pub fn serves_tls(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Certificate and key together; mutual TLS only with both and a CA.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            anyhow::bail!("tls.cert_file and tls.key_file go together");
        }
        if self.client_auth == ClientAuth::Required && (self.ca_file.is_none() || self.cert_file.is_none()) {
            anyhow::bail!(
                "tls.client_auth = \"required\" needs tls.ca_file (to check callers) and tls.cert_file/key_file \
                 (to present on calls)"
            );
        }
        if self.reload_interval_secs == 0 {
            anyhow::bail!("tls.reload_interval_secs must be positive");
        }
        Ok(())
    }
}
