//! E-mail posted by a mail relay: the raw RFC 5322 message (MIME, any
//! charset, encoded words) as the request body, signed like social posts
//! (`X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the body>`, see
//! [`super::social`]). Parsing is mail-parser's (multipart, transfer
//! encodings, charsets, RFC 2047 words); the text is the `text/plain` part,
//! or the HTML part made text. `Message-ID` is the provider message id;
//! `In-Reply-To` and `References` thread a reply into its conversation.
//!
//! Replies are built here too ([`build_reply`]): plain text, threaded under
//! the customer's last message, with a `Message-ID` made from Switchboard's
//! message id, so a reply sent again after a crash carries the same id and
//! mail clients show it once.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use mail_parser::{MessageParser, MimeHeaders};
use switchboard_core::identity::{IdentityKind, normalize_identity};
use switchboard_proto::common::v1::Channel;

use super::{Attachment, InboundMessage, MAX_ATTACHMENTS, WebhookRefusal, check_size, safe_text, seconds_to_millis};

/// The longest message id kept, in bytes.
const MAX_ID_BYTES: usize = 256;

/// References kept in a reply, newest last: mail clients need the first
/// and the last few to thread.
const MAX_REFERENCES: usize = 20;

/// A reply to send, with what threads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailReply {
    /// The channel's mailbox.
    pub from_address: String,
    /// The name shown with it (the channel's display name), may be empty.
    pub from_name: String,
    pub to_address: String,
    /// The subject of the customer's last message; `Re: ` is added once.
    pub subject: String,
    pub text: String,
    /// Unique and stable for this reply: the `Message-ID` is
    /// `<{id}@{the mailbox's domain}>`.
    pub id: String,
    /// The conversation's earlier message ids, oldest first; the last is
    /// the one answered.
    pub thread: Vec<String>,
}

/// `Re: ` and the subject, unless it already starts with one.
pub fn reply_subject(subject: &str) -> String {
    let subject = subject.trim();
    let answered = subject.get(..3).is_some_and(|prefix| prefix.eq_ignore_ascii_case("re:"));
    match (subject.is_empty(), answered) {
        (true, _) => "Re: your message".to_owned(),
        (false, true) => subject.to_owned(),
        (false, false) => format!("Re: {subject}"),
    }
}

/// The `Message-ID` of a reply, without angle brackets.
pub fn reply_message_id(reply: &EmailReply) -> String {
    let domain = reply.from_address.rsplit_once('@').map_or("switchboard.invalid", |(_, domain)| domain);
    format!("{}@{domain}", reply.id)
}

/// The reply as an RFC 5322 message: `In-Reply-To` the last message of
/// the thread and `References` the thread (its first message and the
/// latest ones).
pub fn build_reply(reply: &EmailReply) -> Result<Message, String> {
    let address = |value: &str, what: &str| value.parse().map_err(|error| format!("the {what} address: {error}"));
    let from_name = (!reply.from_name.is_empty()).then(|| reply.from_name.clone());
    let mut builder = Message::builder()
        .from(Mailbox::new(from_name, address(&reply.from_address, "channel's")?))
        .to(Mailbox::new(None, address(&reply.to_address, "customer's")?))
        .subject(reply_subject(&reply.subject))
        .message_id(Some(format!("<{}>", reply_message_id(reply))))
        .header(ContentType::TEXT_PLAIN);
    if let Some(answered) = reply.thread.last() {
        builder = builder.in_reply_to(format!("<{answered}>"));
        let skip = reply.thread.len().saturating_sub(MAX_REFERENCES);
        let first = reply.thread.first().filter(|_| skip > 0);
        let references: Vec<String> =
            first.into_iter().chain(reply.thread.iter().skip(skip)).map(|id| format!("<{id}>")).collect();
        builder = builder.references(references.join(" "));
    }
    builder.body(reply.text.clone()).map_err(|error| format!("the reply cannot be built: {error}"))
}

/// Why `raw` is mail no person wrote, if it is: an auto-reply
/// (`Auto-Submitted`, RFC 3834; `Precedence: auto_reply|bulk|junk`;
/// `X-Autoreply`), or a delivery report (`multipart/report`, or from
/// `MAILER-DAEMON` or `postmaster`). Such mail opens no conversation: an
/// out-of-office answer to a reply would otherwise open a contact, and two
/// auto-responders would write to each other without end.
pub fn automatic(raw: &[u8]) -> Option<&'static str> {
    let message = MessageParser::default().parse_headers(raw)?;
    let header = |name: &str| message.header_raw(name).map(|value| value.trim().to_ascii_lowercase());
    if header("Auto-Submitted").is_some_and(|value| !value.starts_with("no")) {
        return Some("auto_submitted");
    }
    if header("Precedence").is_some_and(|value| matches!(value.as_str(), "auto_reply" | "bulk" | "junk"))
        || header("X-Autoreply").is_some()
    {
        return Some("auto_reply");
    }
    let report = message.content_type().is_some_and(|kind| {
        kind.ctype().eq_ignore_ascii_case("multipart")
            && kind.subtype().is_some_and(|sub| sub.eq_ignore_ascii_case("report"))
    });
    let daemon = message.from().and_then(|from| from.first()).and_then(|from| from.address()).is_some_and(|address| {
        let local = address.split('@').next().unwrap_or_default().to_ascii_lowercase();
        local == "mailer-daemon" || local == "postmaster"
    });
    (report || daemon).then_some("delivery_report")
}

/// A message id without its angle brackets, if it is one.
fn message_id(raw: &str) -> Option<String> {
    let id = raw.trim().trim_start_matches('<').trim_end_matches('>');
    let valid = !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(|byte| byte.is_ascii_graphic());
    valid.then(|| id.to_owned())
}

/// Reads a raw message: the sender's message, with the ids it replies to
/// (the `In-Reply-To` first, then `References` newest first).
pub fn parse(raw: &[u8]) -> Result<InboundMessage, WebhookRefusal> {
    check_size(raw)?;
    let message =
        MessageParser::default().parse(raw).ok_or_else(|| WebhookRefusal::malformed("not an e-mail message"))?;
    let sender =
        message.from().and_then(|from| from.first()).ok_or_else(|| WebhookRefusal::malformed("`From` is missing"))?;
    let address = sender.address().ok_or_else(|| WebhookRefusal::malformed("`From` has no address"))?;
    let from = normalize_identity(IdentityKind::Email, address, "From")
        .map_err(|error| WebhookRefusal::malformed(format!("`From`: {}", error.message)))?;
    let provider_message_id = message
        .message_id()
        .and_then(message_id)
        .ok_or_else(|| WebhookRefusal::malformed("`Message-ID` is missing or not a message id"))?;
    let subject = safe_text(message.subject().unwrap_or_default());
    let body = message.body_text(0).map(|text| safe_text(&text)).unwrap_or_default();
    let text = if subject.is_empty() { body } else { format!("{subject}\n\n{body}") };
    // Only one line of it is a subject (`safe_text` keeps line feeds).
    let subject = subject.lines().next().unwrap_or_default().to_owned();
    let mut replied_to: Vec<String> = Vec::new();
    let ids = |value: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        match value.as_text_list() {
            Some(list) => list.iter().filter_map(|id| message_id(id)).collect(),
            None => value.as_text().and_then(message_id).into_iter().collect(),
        }
    };
    replied_to.extend(ids(message.in_reply_to()));
    replied_to.extend(ids(message.references()).into_iter().rev());
    replied_to.dedup();
    let attachments = message
        .attachments()
        .take(MAX_ATTACHMENTS)
        .enumerate()
        .map(|(index, part)| {
            let content_type = part.content_type().map_or_else(
                || "application/octet-stream".to_owned(),
                |kind| format!("{}/{}", kind.ctype(), kind.subtype().unwrap_or("octet-stream")),
            );
            Attachment {
                content_type: safe_text(&content_type),
                reference: format!("{provider_message_id}#part-{index}"),
                file_name: safe_text(part.attachment_name().unwrap_or_default()),
                size_bytes: u64::try_from(part.len()).ok(),
                caption: String::new(),
            }
        })
        .collect();
    let inbound = InboundMessage {
        channel: Channel::Email,
        provider_message_id,
        from,
        display_name: safe_text(sender.name().unwrap_or_default()),
        to: message.to().and_then(|to| to.first()).and_then(|to| to.address()).map(safe_text).unwrap_or_default(),
        thread: String::new(),
        text,
        attachments,
        sent_at_ms: message.date().and_then(|date| seconds_to_millis(date.to_timestamp())),
        replied_to,
        subject,
    };
    Ok(inbound)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Latin-1 quoted-printable text, a UTF-8 encoded-word subject, a
    /// base64 attachment, threading headers.
    const LATIN1_MULTIPART: &[u8] = include_bytes!("../../tests/fixtures/mail/latin1-multipart.eml");

    #[test]
    fn a_multipart_latin1_message_with_an_encoded_subject_and_an_attachment() {
        let message = parse(LATIN1_MULTIPART).expect("parsed");
        assert_eq!(message.from.value, "jose@example.com");
        assert_eq!(message.display_name, "José Martínez");
        assert_eq!(message.provider_message_id, "CAF=abc123@mail.example.com");
        assert_eq!(message.text.trim_end(), "Reclamación del pedido\n\nEl pedido llegó roto.");
        assert_eq!(message.to, "support@acme.example");
        assert_eq!(message.sent_at_ms, Some(1_767_261_600_000));
        assert_eq!(message.attachments.len(), 1);
        assert_eq!(message.attachments[0].file_name, "foto.jpg");
        assert_eq!(message.attachments[0].content_type, "image/jpeg");
        assert_eq!(
            message.replied_to,
            ["reply-2@acme.example", "first-1@acme.example"],
            "what it replies to, nearest first"
        );
    }

    #[test]
    fn an_html_only_message_is_read_as_text() {
        let raw = b"From: ann@example.com\r\nMessage-ID: <h1@example.com>\r\nSubject: Hi\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<p>Where is <b>my order</b>?</p>\r\n";
        let message = parse(raw).expect("parsed");
        assert!(message.text.contains("Where is my order?"), "{}", message.text);
        assert!(message.replied_to.is_empty());
    }

    #[test]
    fn messages_without_a_sender_or_an_id_are_refused() {
        let no_id = b"From: ann@example.com\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(matches!(parse(no_id), Err(WebhookRefusal::Malformed(_))));
        let no_from = b"Message-ID: <a@b>\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(matches!(parse(no_from), Err(WebhookRefusal::Malformed(_))));
        let bad_from = b"From: not an address\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n";
        assert!(matches!(parse(bad_from), Err(WebhookRefusal::Malformed(_))));
    }

    fn reply(thread: &[&str]) -> EmailReply {
        EmailReply {
            from_address: "support@acme.example".to_owned(),
            from_name: "Acme Support".to_owned(),
            to_address: "jose@example.com".to_owned(),
            subject: "Reclamación del pedido".to_owned(),
            text: "Lo sentimos, José: enviamos otro hoy.".to_owned(),
            id: "msg_01".to_owned(),
            thread: thread.iter().map(|id| (*id).to_owned()).collect(),
        }
    }

    #[test]
    fn a_reply_is_threaded_under_the_last_message_and_reads_back() {
        let built = build_reply(&reply(&["first-1@example.com", "ours-2@acme.example", "CAF=abc123@mail.example.com"]))
            .expect("built");
        let raw = built.formatted();
        let parsed = MessageParser::default().parse(&raw).expect("parses");
        assert_eq!(parsed.message_id(), Some("msg_01@acme.example"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("CAF=abc123@mail.example.com"));
        let references = parsed.references().as_text_list().expect("a list");
        assert_eq!(references, ["first-1@example.com", "ours-2@acme.example", "CAF=abc123@mail.example.com"]);
        assert_eq!(parsed.subject(), Some("Re: Reclamación del pedido"));
        assert_eq!(parsed.from().and_then(|from| from.first()).and_then(|from| from.name()), Some("Acme Support"));
        assert_eq!(parsed.body_text(0).as_deref().map(str::trim_end), Some("Lo sentimos, José: enviamos otro hoy."));
    }

    #[test]
    fn long_threads_keep_the_first_and_the_latest_references() {
        let ids: Vec<String> = (0..30).map(|index| format!("m{index}@example.com")).collect();
        let thread: Vec<&str> = ids.iter().map(String::as_str).collect();
        let raw = build_reply(&reply(&thread)).expect("built").formatted();
        let parsed = MessageParser::default().parse(&raw).expect("parses");
        let references = parsed.references().as_text_list().expect("a list");
        assert_eq!(references.len(), MAX_REFERENCES + 1);
        assert_eq!(references[0], "m0@example.com");
        assert_eq!(references[MAX_REFERENCES], "m29@example.com");
    }

    #[test]
    fn a_first_message_has_no_threading_headers_and_bad_addresses_are_refused() {
        let raw = build_reply(&reply(&[])).expect("built").formatted();
        let parsed = MessageParser::default().parse(&raw).expect("parses");
        assert!(parsed.in_reply_to().is_empty() && parsed.references().is_empty());
        let mut bad = reply(&[]);
        bad.to_address = "not an address".to_owned();
        assert!(build_reply(&bad).is_err());
    }

    #[test]
    fn auto_replies_and_delivery_reports_are_told_apart_from_people() {
        let person = b"From: ann@example.com\r\nMessage-ID: <p@x>\r\nAuto-Submitted: no\r\n\r\nHi\r\n";
        assert_eq!(automatic(person), None);
        assert_eq!(automatic(LATIN1_MULTIPART), None);
        let away = b"From: ann@example.com\r\nMessage-ID: <a@x>\r\nAuto-Submitted: auto-replied\r\n\r\nAway\r\n";
        assert_eq!(automatic(away), Some("auto_submitted"));
        let bulk = b"From: news@example.com\r\nPrecedence: bulk\r\n\r\nNews\r\n";
        assert_eq!(automatic(bulk), Some("auto_reply"));
        let bounce = b"From: MAILER-DAEMON@mx.example.com\r\nMessage-ID: <b@x>\r\n\r\nUndeliverable\r\n";
        assert_eq!(automatic(bounce), Some("delivery_report"));
        let report = b"From: mx@example.com\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=z\r\n\r\n--z--\r\n";
        assert_eq!(automatic(report), Some("delivery_report"));
    }

    #[test]
    fn subjects_get_one_re() {
        assert_eq!(reply_subject("Order"), "Re: Order");
        assert_eq!(reply_subject("RE: Order"), "RE: Order");
        assert_eq!(reply_subject(" "), "Re: your message");
        assert_eq!(reply_subject("é"), "Re: é");
    }

    proptest! {
        #[test]
        fn arbitrary_replies_build_or_refuse_without_panic(text in "\\PC{0,200}", subject in "\\PC{0,80}", name in "\\PC{0,40}") {
            let mut arbitrary = reply(&["a@b"]);
            arbitrary.text = text;
            arbitrary.subject = subject;
            arbitrary.from_name = name;
            if let Ok(built) = build_reply(&arbitrary) {
                let raw = built.formatted();
                prop_assert!(MessageParser::default().parse(&raw).is_some());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&body);
            let _ = automatic(&body);
        }

        #[test]
        fn arbitrary_header_values_never_panic(value in "[ -~\\t]{0,80}") {
            let raw = format!("From: {value}\r\nMessage-ID: {value}\r\nSubject: {value}\r\nReferences: {value}\r\n\r\n{value}\r\n");
            let _ = parse(raw.as_bytes());
        }
    }
}
