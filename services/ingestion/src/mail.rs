//! The e-mail channel's IO, apart from its pure format
//! ([`crate::channels::email`]): sending over SMTP (lettre) and reading a
//! mailbox over IMAP (async-imap), each with TLS from the first byte,
//! STARTTLS that must succeed, or plain text when the channel says so.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_imap::Client;
use futures::TryStreamExt;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::channel_settings::{MailEndpoint, MailTls};
use crate::egress::{Egress, Unreachable};

/// How long one SMTP send or one IMAP command may take.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a send did not go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailFailure {
    /// Worth another attempt: no connection, a timeout, a 4xx answer.
    Transient(String),
    /// Will not change: a 5xx answer, a refused login.
    Permanent(String),
}

/// Sends `message` through `endpoint`, on an address `egress` allows.
pub async fn send(endpoint: &MailEndpoint, egress: Egress, message: lettre::Message) -> Result<(), MailFailure> {
    // Connect to the address checked here, not to whatever the name
    // resolves to when lettre connects; TLS still verifies the name.
    let address = match egress.resolve(&endpoint.host, endpoint.port).await {
        Ok(addresses) => addresses[0].ip(),
        Err(Unreachable::Refused(reason)) => {
            return Err(MailFailure::Permanent(format!("the SMTP server cannot be used: {reason}")));
        }
        Err(Unreachable::Failed(reason)) => return Err(MailFailure::Transient(format!("SMTP: {reason}"))),
    };
    let tls = match endpoint.tls {
        MailTls::Implicit => TlsParameters::new(endpoint.host.clone()).map(Tls::Wrapper),
        MailTls::StartTls => TlsParameters::new(endpoint.host.clone()).map(Tls::Required),
        MailTls::Plain => Ok(Tls::None),
    };
    let tls = tls.map_err(|error| MailFailure::Permanent(format!("the SMTP server cannot be used: {error}")))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.to_string())
        .tls(tls)
        .port(endpoint.port)
        .timeout(Some(MAIL_TIMEOUT));
    if !endpoint.username.is_empty() {
        builder = builder.credentials(Credentials::new(endpoint.username.clone(), endpoint.password.clone()));
    }
    let transport = builder.build();
    match transport.send(message).await {
        Ok(_answer) => Ok(()),
        Err(error) if error.is_permanent() => Err(MailFailure::Permanent(format!("the SMTP server refused: {error}"))),
        Err(error) => Err(MailFailure::Transient(format!("SMTP: {error}"))),
    }
}

/// A connection an IMAP client can run on: TCP, or TLS over it.
pub trait MailIo: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> MailIo for T {}

/// An IMAP session, logged in.
pub type ImapSession = async_imap::Session<Box<dyn MailIo>>;

fn tls_connector() -> TlsConnector {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        Arc::new(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
    });
    TlsConnector::from(Arc::clone(config))
}

async fn wrap_tls(host: &str, stream: Box<dyn MailIo>) -> Result<Box<dyn MailIo>, String> {
    let name = ServerName::try_from(host.to_owned()).map_err(|error| format!("`{host}`: {error}"))?;
    let tls = tls_connector().connect(name, stream).await.map_err(|error| format!("TLS with `{host}`: {error}"))?;
    Ok(Box::new(tls))
}

/// Connects (on an address `egress` allows) and logs in to `endpoint`'s
/// IMAP server.
pub async fn imap_login(endpoint: &MailEndpoint, egress: Egress) -> Result<ImapSession, String> {
    bounded(imap_login_unbounded(endpoint, egress)).await
}

async fn imap_login_unbounded(endpoint: &MailEndpoint, egress: Egress) -> Result<ImapSession, String> {
    let tcp = egress.connect(&endpoint.host, endpoint.port).await.map_err(|reason| format!("IMAP {reason}"))?;
    let stream: Box<dyn MailIo> = match endpoint.tls {
        MailTls::Implicit => wrap_tls(&endpoint.host, Box::new(tcp)).await?,
        MailTls::Plain | MailTls::StartTls => Box::new(tcp),
    };
    let mut client = Client::new(stream);
    client
        .read_response()
        .await
        .map_err(|error| format!("IMAP greeting: {error}"))?
        .ok_or("the IMAP server closed the connection")?;
    if endpoint.tls == MailTls::StartTls {
        client.run_command_and_check_ok("STARTTLS", None).await.map_err(|error| format!("IMAP STARTTLS: {error}"))?;
        client = Client::new(wrap_tls(&endpoint.host, client.into_inner()).await?);
    }
    client
        .login(&endpoint.username, &endpoint.password)
        .await
        .map_err(|(error, _client)| format!("IMAP login: {error}"))
}

/// `work`, or a timeout error after [`MAIL_TIMEOUT`].
async fn bounded<T>(work: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(MAIL_TIMEOUT, work).await.map_err(|_| "the IMAP server did not answer in time".to_owned())?
}

/// Up to `limit` unseen messages of `folder`, by UID, raw; reading them
/// does not mark them seen.
pub async fn unseen(session: &mut ImapSession, folder: &str, limit: usize) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let work = async {
        session.select(folder).await.map_err(|error| format!("IMAP SELECT `{folder}`: {error}"))?;
        let mut uids: Vec<u32> =
            session.uid_search("UNSEEN").await.map_err(|error| format!("IMAP SEARCH: {error}"))?.into_iter().collect();
        uids.sort_unstable();
        uids.truncate(limit);
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let fetches: Vec<_> = session
            .uid_fetch(&set, "BODY.PEEK[]")
            .await
            .map_err(|error| format!("IMAP FETCH: {error}"))?
            .try_collect()
            .await
            .map_err(|error| format!("IMAP FETCH: {error}"))?;
        let mut messages: Vec<(u32, Vec<u8>)> =
            fetches.iter().filter_map(|fetch| Some((fetch.uid?, fetch.body()?.to_vec()))).collect();
        messages.sort_unstable_by_key(|(uid, _)| *uid);
        Ok(messages)
    };
    bounded(work).await
}

/// Flags the messages `uids` name as seen: the next poll passes them by.
pub async fn mark_seen(session: &mut ImapSession, uids: &[u32]) -> Result<(), String> {
    if uids.is_empty() {
        return Ok(());
    }
    let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let work = async {
        let updates: Vec<_> = session
            .uid_store(&set, "+FLAGS.SILENT (\\Seen)")
            .await
            .map_err(|error| format!("IMAP STORE: {error}"))?
            .try_collect()
            .await
            .map_err(|error| format!("IMAP STORE: {error}"))?;
        drop(updates);
        Ok(())
    };
    bounded(work).await
}
