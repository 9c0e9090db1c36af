//! The IMAP side of e-mail channels: every [`POLL_INTERVAL`] each enabled
//! e-mail channel with a mailbox is read for unseen mail, which is taken in
//! like a relay's post (same parser, same threading, same idempotency on
//! `Message-ID`). A message is flagged `\Seen` only once it is stored, or
//! once it is known it never will be (unparseable, refused, sent by the
//! channel itself, an auto-reply or a delivery report); a transient failure leaves it and the rest unseen for
//! the next poll. One replica reads a mailbox at a time (a lease of three
//! polls, taken over when its holder stops renewing it); should two ever
//! read it at once, each message is still stored once (its `Message-ID` is
//! the provider message id).

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::time::now_millis;
use switchboard_core::{ChannelId, ErrorCode, TenantId};
use switchboard_proto::ingestion::v1::Channel;
use switchboard_proto::ingestion::v1::channel::Provider;

use super::intake::ConversationIntake;
use crate::channel_settings::{MailProtocol, mail_endpoint};
use crate::channels::email;
use crate::egress::Egress;
use crate::mail;
use crate::store::channels::ChannelStore;
use crate::webhooks::count_item;

/// How often each mailbox is read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Messages taken from one mailbox per poll, at most.
const MAX_PER_POLL: usize = 50;
/// How long a replica holds a mailbox without renewing it: three polls.
const LEASE_TTL_MS: i64 = 15_000;
/// Mailboxes read at the same time, at most.
const MAILBOXES_AT_ONCE: usize = 4;
/// The folder read when the channel names none.
const DEFAULT_FOLDER: &str = "INBOX";

/// Reads the mailboxes of e-mail channels.
pub struct MailboxPoller {
    pub intake: Arc<ConversationIntake>,
    pub channels: Arc<dyn ChannelStore>,
    /// This replica, as the holder of mailbox leases.
    pub replica: String,
    /// What a mailbox's server may be.
    pub egress: Egress,
}

impl MailboxPoller {
    /// Reads every mailbox once; a mailbox that cannot be read is logged
    /// and tried again next time. Returns how many messages were stored.
    pub async fn poll_all(&self) -> Result<usize, switchboard_core::Error> {
        use futures::StreamExt;
        let mailboxes = self.channels.mailboxes().await?;
        // A few at a time: a slow server holds up only its own mailbox.
        let polls = futures::stream::iter(mailboxes)
            .map(|(tenant, channel_id, channel)| async move {
                let leased = self
                    .channels
                    .lease_mailbox(&tenant, &channel_id, &self.replica, now_millis(), LEASE_TTL_MS)
                    .await;
                match leased {
                    Ok(true) => {}
                    Ok(false) => return 0,
                    Err(error) => {
                        tracing::warn!(tenant = %tenant, channel = %channel_id, error = %error, "mailbox lease not taken");
                        return 0;
                    }
                }
                match self.poll(&tenant, &channel_id, &channel).await {
                    Ok(count) => count,
                    Err(reason) => {
                        tracing::warn!(tenant = %tenant, channel = %channel_id, error = %reason, "mailbox not read");
                        0
                    }
                }
            })
            .buffer_unordered(MAILBOXES_AT_ONCE);
        Ok(polls.fold(0, |stored, count| async move { stored + count }).await)
    }

    /// Reads one mailbox: returns how many new messages it stored.
    pub async fn poll(&self, tenant: &TenantId, channel_id: &ChannelId, channel: &Channel) -> Result<usize, String> {
        let Some(Provider::Email(settings)) = &channel.provider else { return Ok(0) };
        let Some(imap) = &settings.imap else { return Ok(0) };
        let folder = if settings.imap_folder.is_empty() { DEFAULT_FOLDER } else { settings.imap_folder.as_str() };
        let own_address = settings.address.to_lowercase();
        let mut session = mail::imap_login(&mail_endpoint(imap, MailProtocol::Imap), self.egress).await?;
        let unseen = mail::unseen(&mut session, folder, MAX_PER_POLL).await?;
        let mut done = Vec::with_capacity(unseen.len());
        let mut stored = 0;
        let mut interrupted = None;
        for (uid, raw) in unseen {
            let automatic = email::automatic(&raw);
            let outcome = match automatic.map_or_else(|| email::parse(&raw).map(Some), |_| Ok(None)) {
                // An auto-reply or a delivery report: seen, stored nowhere.
                Ok(None) => automatic.unwrap_or("automatic"),
                Err(refusal) => {
                    tracing::info!(tenant = %tenant, channel = %channel_id, uid, reason = refusal.reason(), "mail refused");
                    "refused"
                }
                // A copy of the channel's own reply (a Sent folder, a Bcc).
                Ok(Some(message)) if message.from.value == own_address => "own",
                Ok(Some(message)) => match self.intake.take(tenant, channel_id, channel, message).await {
                    Ok(taken) => {
                        stored += usize::from(taken != super::intake::Taken::Duplicate);
                        taken.label()
                    }
                    Err(error) if matches!(error.code, ErrorCode::InvalidArgument | ErrorCode::FailedPrecondition) => {
                        tracing::warn!(tenant = %tenant, channel = %channel_id, uid, error = %error, "mail rejected");
                        "rejected"
                    }
                    Err(error) => {
                        interrupted = Some(error.message);
                        break;
                    }
                },
            };
            count_item(tenant, "email_imap", "message", outcome);
            done.push(uid);
        }
        mail::mark_seen(&mut session, &done).await?;
        // A failed logout loses nothing: every message taken is flagged.
        let _ = session.logout().await;
        match interrupted {
            Some(reason) => Err(format!("stopped after {} messages: {reason}", done.len())),
            None => Ok(stored),
        }
    }
}
