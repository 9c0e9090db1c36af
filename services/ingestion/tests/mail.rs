//! The e-mail channel on real mail servers (`scripts/test-env.sh` starts
//! dovecot for IMAP and aiosmtpd as an SMTP sink): mail put in a mailbox
//! becomes a conversation, is flagged seen once stored, a second copy makes
//! nothing new, and a reply leaves by SMTP threaded under the customer's
//! message, and the customer's answer to it joins the same conversation.

// Test code: a broken expectation panics, which is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the test binaries of this crate; each uses a part of it.
#[allow(dead_code)]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use mail_parser::MessageParser;
use support::*;
use switchboard_ingestion::channel_settings::{MailEndpoint, MailTls};
use switchboard_ingestion::egress::Egress;
use switchboard_ingestion::mail::{self, ImapSession};
use switchboard_proto::common::v1::Channel as ChannelKind;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{
    Channel, Conversation, CreateChannelRequest, DeliveryState, EmailSettings, GetChannelRequest,
    ListConversationsRequest, ListMessagesRequest, MailSecurity, MailServer, Message, SendMessageRequest,
};
use switchboard_test_support::{backend_url, http_request, unique_suffix, violated_fields};
use tonic::Code;

/// Polls come every 5 s; a few of them, and the SMTP round trip, fit.
const PATIENCE: Duration = Duration::from_secs(40);
/// The test IMAP server takes any user name with this password.
const IMAP_PASSWORD: &str = "switchboard";
const ADDRESS: &str = "support@acme.example";

struct MailServers {
    imap: (String, u16),
    smtp: (String, u16),
    delivered: PathBuf,
}

fn mail_servers() -> Option<MailServers> {
    let host_port = |value: String| {
        let (host, port) = value.rsplit_once(':').expect("host:port");
        (host.to_owned(), port.parse().expect("a port"))
    };
    Some(MailServers {
        imap: host_port(backend_url("SWITCHBOARD_TEST_IMAP")?),
        smtp: host_port(backend_url("SWITCHBOARD_TEST_SMTP")?),
        delivered: PathBuf::from(backend_url("SWITCHBOARD_TEST_SMTP_MAILDIR")?),
    })
}

fn server((host, port): &(String, u16), username: &str, password: &str) -> MailServer {
    MailServer {
        host: host.clone(),
        port: u32::from(*port),
        security: MailSecurity::None as i32,
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

async fn mailbox_session(servers: &MailServers, user: &str) -> ImapSession {
    let endpoint = MailEndpoint {
        host: servers.imap.0.clone(),
        port: servers.imap.1,
        tls: MailTls::Plain,
        username: user.to_owned(),
        password: IMAP_PASSWORD.to_owned(),
    };
    mail::imap_login(&endpoint, Egress::Anywhere).await.unwrap()
}

/// Puts `raw` in the user's INBOX, as a mail server delivering it would.
async fn deliver(servers: &MailServers, user: &str, raw: &str) {
    let mut session = mailbox_session(servers, user).await;
    session.append("INBOX", None, None, raw.as_bytes()).await.unwrap();
    session.logout().await.unwrap();
}

async fn unseen_count(servers: &MailServers, user: &str) -> usize {
    let mut session = mailbox_session(servers, user).await;
    session.select("INBOX").await.unwrap();
    let unseen = session.uid_search("UNSEEN").await.unwrap().len();
    session.logout().await.unwrap();
    unseen
}

async fn create_mail_channel(harness: &mut Harness, channel_id: &str, settings: EmailSettings) {
    let channel = Channel {
        display_name: "Acme Support".to_owned(),
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Email(settings)),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: channel_id.to_owned(),
        channel: Some(channel),
    };
    harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap();
}

async fn conversations(harness: &mut Harness) -> Vec<Conversation> {
    let request = ListConversationsRequest { parent: "tenants/acme".to_owned(), ..Default::default() };
    harness.conversations.list_conversations(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner().conversations
}

async fn messages(harness: &mut Harness, conversation: &str) -> Vec<Message> {
    let request = ListMessagesRequest { parent: conversation.to_owned(), ..Default::default() };
    harness.conversations.list_messages(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner().messages
}

/// Waits until `conversation` holds `count` messages.
async fn until_messages(harness: &mut Harness, conversation: &str, count: usize) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let found = messages(harness, conversation).await;
        if found.len() >= count {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{conversation} has {} messages, not {count}", found.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The message delivered to the SMTP sink with `Message-ID: <id>`.
async fn until_delivered(servers: &MailServers, id: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        for folder in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(servers.delivered.join(folder)) else { continue };
            for entry in entries {
                let raw = std::fs::read(entry.unwrap().path()).unwrap();
                let parsed = MessageParser::default().parse(&raw).unwrap();
                if parsed.message_id() == Some(id) {
                    return raw;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no message <{id}> reached the SMTP server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fixture's mail, with a `Message-ID` of this run's.
fn first_mail(suffix: &str) -> String {
    let fixture = include_str!("fixtures/mail/latin1-multipart.eml");
    fixture.replace("<CAF=abc123@mail.example.com>", &format!("<first-{suffix}@example.com>"))
}

#[tokio::test]
async fn mailbox_mail_becomes_a_conversation_and_replies_leave_by_smtp_threaded() {
    let Some(servers) = mail_servers() else { return };
    let mut harness = Harness::start().await;
    let suffix = unique_suffix();
    let user = format!("support-{suffix}");
    create_mail_channel(
        &mut harness,
        "mailbox",
        EmailSettings {
            address: ADDRESS.to_owned(),
            smtp: Some(server(&servers.smtp, "", "")),
            imap: Some(server(&servers.imap, &user, IMAP_PASSWORD)),
            ..EmailSettings::default()
        },
    )
    .await;
    let first = first_mail(&suffix);
    deliver(&servers, &user, &first).await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let conversation = loop {
        if let Some(conversation) = conversations(&mut harness).await.pop() {
            break conversation;
        }
        assert!(tokio::time::Instant::now() < deadline, "the mailbox was never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(conversation.channel_kind, ChannelKind::Email as i32);
    assert_eq!(
        conversation.customer_identity.as_ref().map(|identity| identity.value.as_str()),
        Some("jose@example.com")
    );
    let inbound = until_messages(&mut harness, &conversation.name, 1).await.remove(0);
    assert_eq!(inbound.subject, "Reclamación del pedido");
    assert!(inbound.text.trim_end().ends_with("El pedido llegó roto."), "{}", inbound.text);
    assert_eq!(inbound.author_display_name, "José Martínez");
    assert_eq!(inbound.attachments.len(), 1);
    assert_eq!(inbound.attachments[0].file_name, "foto.jpg");
    assert_eq!(inbound.provider_message_id, format!("mailbox/first-{suffix}@example.com"));
    assert_eq!(unseen_count(&servers, &user).await, 0, "a stored message is flagged seen");

    // The same message delivered twice (a second copy in the box): nothing new.
    deliver(&servers, &user, &first).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while unseen_count(&servers, &user).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the copy was never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(messages(&mut harness, &conversation.name).await.len(), 1, "the copy made no second message");

    let request = SendMessageRequest {
        parent: conversation.name.clone(),
        text: "Lo sentimos, José: enviamos otro hoy.".to_owned(),
        request_id: format!("reply-{suffix}"),
    };
    let reply = harness.conversations.send_message(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let sent = loop {
        let found = messages(&mut harness, &conversation.name).await.into_iter().find(|m| m.name == reply.name);
        let found = found.expect("the reply is stored");
        if found.delivery_state == DeliveryState::Sent as i32 {
            break found;
        }
        assert_ne!(found.delivery_state, DeliveryState::Failed as i32, "{}", found.failure_reason);
        assert!(tokio::time::Instant::now() < deadline, "the reply was never sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reply_id = sent.provider_message_id.strip_prefix("mailbox/").expect("scoped by the channel").to_owned();
    assert!(reply_id.ends_with("@acme.example"), "{reply_id}");

    let delivered = until_delivered(&servers, &reply_id).await;
    let parsed = MessageParser::default().parse(&delivered).unwrap();
    let first_id = format!("first-{suffix}@example.com");
    assert_eq!(parsed.in_reply_to().as_text(), Some(first_id.as_str()));
    assert_eq!(parsed.references().as_text(), Some(first_id.as_str()));
    assert_eq!(parsed.subject(), Some("Re: Reclamación del pedido"));
    assert_eq!(parsed.to().and_then(|to| to.first()).and_then(|to| to.address()), Some("jose@example.com"));
    let from = parsed.from().and_then(|from| from.first()).expect("a sender");
    assert_eq!((from.name(), from.address()), (Some("Acme Support"), Some(ADDRESS)));
    assert_eq!(parsed.body_text(0).as_deref().map(str::trim_end), Some("Lo sentimos, José: enviamos otro hoy."));

    // José answers the reply from his phone: it joins the conversation.
    let answer = format!(
        "From: jose@example.com\r\nTo: {ADDRESS}\r\nMessage-ID: <answer-{suffix}@example.com>\r\n\
         In-Reply-To: <{reply_id}>\r\nReferences: <{first_id}> <{reply_id}>\r\nSubject: Re: Reclamación\r\n\r\nGracias.\r\n"
    );
    deliver(&servers, &user, &answer).await;
    let all = until_messages(&mut harness, &conversation.name, 3).await;
    assert!(all[2].text.trim_end().ends_with("Gracias."), "{:?}", all[2].text);
    assert_eq!(conversations(&mut harness).await.len(), 1, "no second conversation");
}

#[tokio::test]
async fn a_reply_without_an_smtp_server_fails_with_the_reason_and_passwords_are_never_returned() {
    let mut harness = Harness::start().await;
    create_mail_channel(
        &mut harness,
        "relay-only",
        EmailSettings {
            address: ADDRESS.to_owned(),
            signing_secret: "relay-secret".to_owned(),
            imap: Some(MailServer {
                host: "imap.acme.example".to_owned(),
                username: "support".to_owned(),
                password: "imap-password".to_owned(),
                ..MailServer::default()
            }),
            ..EmailSettings::default()
        },
    )
    .await;
    let request = GetChannelRequest { name: "tenants/acme/channels/relay-only".to_owned() };
    let read = harness.channels.get_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    let Some(Provider::Email(settings)) = &read.provider else { panic!("an e-mail channel: {read:?}") };
    assert_eq!(settings.imap.as_ref().map(|imap| imap.password.as_str()), Some(""));
    assert_eq!(read.secrets_set, ["email.signing_secret", "email.imap.password"]);

    let raw = "From: ann@example.com\r\nMessage-ID: <q1@example.com>\r\nSubject: Invoice\r\n\r\nWhere is it?\r\n";
    let signature = switchboard_ingestion::channels::social::signature("relay-secret", raw.as_bytes()).unwrap();
    let headers = [("content-type", "message/rfc822"), ("x-switchboard-signature", signature.as_str())];
    let answer =
        http_request(harness.http, "POST", "/webhooks/acme/relay-only", &headers, raw.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let conversation = conversations(&mut harness).await.remove(0);
    let request = SendMessageRequest {
        parent: conversation.name.clone(),
        text: "Attached.".to_owned(),
        request_id: "r-1".to_owned(),
    };
    let reply = harness.conversations.send_message(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let found = messages(&mut harness, &conversation.name).await.into_iter().find(|m| m.name == reply.name);
        let found = found.expect("stored");
        if found.delivery_state == DeliveryState::Failed as i32 {
            assert_eq!(found.failure_reason, "the channel has no SMTP server for replies");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the reply never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mail_channels_need_a_way_in_and_a_mailbox_only_channel_takes_no_posts() {
    let mut harness = Harness::start().await;
    let no_way_in = Channel {
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Email(EmailSettings { address: ADDRESS.to_owned(), ..EmailSettings::default() })),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "m1".to_owned(),
        channel: Some(no_way_in),
    };
    let refused = harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["channel.email.signing_secret"]);

    let bad_servers = Channel {
        queue: SUPPORT_QUEUE.to_owned(),
        provider: Some(Provider::Email(EmailSettings {
            address: ADDRESS.to_owned(),
            imap: Some(MailServer { host: "bad host/".to_owned(), port: 70_000, ..MailServer::default() }),
            smtp: Some(MailServer {
                host: "smtp.example".to_owned(),
                username: "u".to_owned(),
                ..MailServer::default()
            }),
            ..EmailSettings::default()
        })),
        ..Channel::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/acme".to_owned(),
        channel_id: "m2".to_owned(),
        channel: Some(bad_servers),
    };
    let refused = harness.channels.create_channel(authed(request, ACME_ADMIN_KEY)).await.unwrap_err();
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(
        fields,
        [
            "channel.email.imap.host",
            "channel.email.imap.password",
            "channel.email.imap.port",
            "channel.email.imap.username",
            "channel.email.smtp.password",
        ]
    );

    create_mail_channel(
        &mut harness,
        "polled",
        EmailSettings {
            address: ADDRESS.to_owned(),
            imap: Some(MailServer {
                host: "127.0.0.1".to_owned(),
                port: 9,
                username: "support".to_owned(),
                password: "pw".to_owned(),
                security: MailSecurity::None as i32,
            }),
            ..EmailSettings::default()
        },
    )
    .await;
    let raw = "From: ann@example.com\r\nMessage-ID: <q1@example.com>\r\n\r\nhi\r\n";
    // Whatever the signature: the channel has no key to check it with.
    let empty_key_signature = switchboard_ingestion::channels::social::signature("x", raw.as_bytes()).unwrap();
    let headers = [("x-switchboard-signature", empty_key_signature.as_str())];
    let answer = http_request(harness.http, "POST", "/webhooks/acme/polled", &headers, raw.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 404);
    assert!(conversations(&mut harness).await.is_empty());
}

#[tokio::test]
async fn out_of_office_answers_and_bounces_open_nothing() {
    let mut harness = Harness::start().await;
    create_mail_channel(
        &mut harness,
        "relayed",
        EmailSettings {
            address: ADDRESS.to_owned(),
            signing_secret: "relay-secret".to_owned(),
            ..EmailSettings::default()
        },
    )
    .await;
    let automatic = [
        "From: ann@example.com\r\nMessage-ID: <ooo@example.com>\r\nAuto-Submitted: auto-replied\r\n\
         Subject: Out of office\r\n\r\nBack on Monday.\r\n",
        "From: MAILER-DAEMON@mx.example.com\r\nMessage-ID: <dsn@mx.example.com>\r\n\
         Subject: Undeliverable\r\n\r\nCould not deliver.\r\n",
    ];
    for raw in automatic {
        let signature = switchboard_ingestion::channels::social::signature("relay-secret", raw.as_bytes()).unwrap();
        let headers = [("content-type", "message/rfc822"), ("x-switchboard-signature", signature.as_str())];
        let answer =
            http_request(harness.http, "POST", "/webhooks/acme/relayed", &headers, raw.as_bytes()).await.unwrap();
        assert_eq!(answer.status, 200, "taken, so the relay does not retry: {answer:?}");
    }
    assert!(conversations(&mut harness).await.is_empty(), "no conversation, no contact");
    let metrics = http_request(harness.http, "GET", "/metrics", &[], b"").await.unwrap().body;
    assert!(
        metrics.lines().any(|line| line.contains("outcome=\"auto_submitted\"") && line.contains("provider=\"email\"")),
        "counted: {metrics}"
    );
}
