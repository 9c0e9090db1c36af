//! TLS with rustls (ring) for every server and for the calls between
//! services (`[tls]`): certificates and keys read from PEM files, read
//! again when the files change, so a renewed certificate (cert-manager)
//! is served without a restart; every new connection uses the files in
//! force when it is made.

mod client;
mod postgres;
mod server;
mod wrapped;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

pub use self::client::tls_channel;
pub use self::postgres::PostgresTls;
pub use self::server::{TlsConnection, TlsListener, accept_tls};
pub use self::wrapped::Wrapped;
use crate::config::{ClientAuth, TlsConfig};

/// What the files said at one reading.
struct Configs {
    grpc_server: Option<Arc<ServerConfig>>,
    http_server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
}

/// The TLS settings of a process, current with their files.
pub struct Tls {
    config: TlsConfig,
    configs: RwLock<Arc<Configs>>,
    /// Modification time and length of each file at the last reading.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

/// Modification time and length of each of `config`'s files.
fn stamps_of(config: &TlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    [&config.cert_file, &config.key_file, &config.ca_file]
        .into_iter()
        .flatten()
        .map(|path| std::fs::metadata(path).ok().and_then(|meta| Some((meta.modified().ok()?, meta.len()))))
        .collect()
}

/// ring, the one crypto library of the whole build (aws-lc-rs would add a
/// C/CMake build); rustls marks it deprecated only because it has no
/// post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default provider, for libraries that build
/// their own rustls settings (the Redis client); once is enough, and a
/// provider already installed is kept.
pub fn install_default_provider() {
    let _ = Arc::try_unwrap(provider()).map(|provider| provider.install_default());
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not PEM certificates", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("{} holds no PEM private key", path.display()))
}

fn roots(ca_file: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for certificate in read_certificates(path)? {
                roots.add(certificate).with_context(|| format!("{} holds an unusable CA", path.display()))?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                // The system's bundle may hold certificates rustls cannot use.
                let _ = roots.add(certificate);
            }
        }
    }
    Ok(roots)
}

impl Configs {
    fn read(config: &TlsConfig) -> anyhow::Result<Configs> {
        let identity = match (&config.cert_file, &config.key_file) {
            (Some(cert_file), Some(key_file)) => Some((read_certificates(cert_file)?, read_key(key_file)?)),
            _ => None,
        };
        let roots = Arc::new(roots(config.ca_file.as_deref())?);
        let (grpc_server, http_server) = match &identity {
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
                let grpc_builder = match config.client_auth {
                    ClientAuth::Required => builder.with_client_cert_verifier(
                        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider()).build()?,
                    ),
                    ClientAuth::None => builder.with_no_client_auth(),
                };
                let mut grpc = grpc_builder
                    .with_single_cert(chain.clone(), key.clone_key())
                    .context("tls.cert_file and tls.key_file do not match")?;
                grpc.alpn_protocols = vec![b"h2".to_vec()];
                let mut http = ServerConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()?
                    .with_no_client_auth()
                    .with_single_cert(chain.clone(), key.clone_key())?;
                http.alpn_protocols = vec![b"http/1.1".to_vec()];
                (Some(Arc::new(grpc)), Some(Arc::new(http)))
            }
            None => (None, None),
        };
        let client_builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::clone(&roots));
        let mut client = match (&identity, config.client_auth) {
            (Some((chain, key)), ClientAuth::Required) => {
                client_builder.with_client_auth_cert(chain.clone(), key.clone_key())?
            }
            _ => client_builder.with_no_client_auth(),
        };
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Configs { grpc_server, http_server, client: Arc::new(client) })
    }
}

impl Tls {
    /// Reads `config`'s files; an error names the file and what is wrong.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Arc<Tls>> {
        config.validate()?;
        // Stamped before reading: a renewal landing in between is read
        // again at the next look.
        let stamps = stamps_of(config);
        let configs = Configs::read(config)?;
        Ok(Arc::new(Tls {
            config: config.clone(),
            configs: RwLock::new(Arc::new(configs)),
            stamps: Mutex::new(stamps),
        }))
    }

    fn configs(&self) -> Arc<Configs> {
        Arc::clone(&self.configs.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The gRPC servers' settings (ALPN h2, client certificates when
    /// `client_auth = "required"`); `None` when they serve plaintext.
    pub fn grpc_server_config(&self) -> Option<Arc<ServerConfig>> {
        self.configs().grpc_server.clone()
    }

    /// The HTTP server's settings (never asks for a client certificate).
    pub fn http_server_config(&self) -> Option<Arc<ServerConfig>> {
        self.configs().http_server.clone()
    }

    /// The settings of calls to `https://` services.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.configs().client)
    }

    /// Reads the files again if any changed; true if the new ones are in
    /// force. Unreadable or mismatched files leave the old ones in force.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let now = stamps_of(&self.config);
        if *switchboard_core::sync::lock_unpoisoned(&self.stamps) == now {
            return Ok(false);
        }
        let configs = Configs::read(&self.config)?;
        *self.configs.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(configs);
        *switchboard_core::sync::lock_unpoisoned(&self.stamps) = now;
        Ok(true)
    }

    /// Looks at the files every `reload_interval_secs` until `shutdown`.
    pub async fn keep_fresh(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let interval = Duration::from_secs(self.config.reload_interval_secs.max(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!("tls certificates reloaded"),
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "tls files changed but cannot be used, the old ones stay in force")
                }
            }
        }
    }
}
