//! The web chat's wire format between the widget and ingestion: JSON text
//! frames on a WebSocket. Pure: frames in are parsed and checked into
//! [`ClientFrame`]s, frames out are built from stored messages.
//!
//! The visitor says `hello` first, with its token (a random string the
//! widget keeps in the browser); the server answers `ready` and every
//! message of the visitor's open conversation, then each new one as it
//! comes. A visitor's `message` carries an id of the widget's own making:
//! a resend after a reconnect is stored once, and its `ack` names it.
//!
//! ```text
//! → {"type":"hello","visitor":"<16-128 of [A-Za-z0-9_-]>","name":"Ann"}
//! ← {"type":"ready","greeting":"…","title":"…"}
//! → {"type":"message","id":"<1-64 of [A-Za-z0-9_-]>","text":"Hi"}
//! ← {"type":"ack","id":"…"}
//! ← {"type":"message","name":"tenants/…/messages/…","direction":"inbound"|"outbound",
//!    "client_id":"…","text":"…","author":"…","time_ms":…}
//! → {"type":"delivered","name":"tenants/…/messages/…"}
//! ← {"type":"closed"}                       (the conversation ended)
//! ← {"type":"error","reason":"…"}
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchboard_core::identity::Identity;
use switchboard_core::identity::IdentityKind;
use switchboard_proto::common::v1::Channel;

use super::{InboundMessage, safe_text};

/// The largest frame a visitor may send, in bytes.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
const MAX_NAME_CHARS: usize = 100;
/// The longest message a visitor may send, as the widget's input allows.
pub const MAX_CHAT_TEXT_CHARS: usize = 4096;

/// A frame from the widget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Hello {
        visitor_token: String,
        name: String,
    },
    Message {
        id: String,
        text: String,
    },
    /// The widget showed the message with this name.
    Delivered {
        name: String,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RawFrame {
    Hello {
        visitor: String,
        #[serde(default)]
        name: String,
    },
    Message {
        id: String,
        text: String,
    },
    Delivered {
        name: String,
    },
}

fn is_token(value: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&value.len())
        && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Reads one frame; the error says what is wrong, for the widget.
pub fn parse_frame(text: &str) -> Result<ClientFrame, String> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(format!("a frame is at most {MAX_FRAME_BYTES} bytes"));
    }
    let raw: RawFrame = serde_json::from_str(text).map_err(|_| "not a frame of the web chat".to_owned())?;
    match raw {
        RawFrame::Hello { visitor, name } => {
            if !is_token(&visitor, 16, 128) {
                return Err("`visitor` must be 16-128 of A-Z, a-z, 0-9, `-` and `_`".to_owned());
            }
            let name: String = safe_text(&name).replace(['\n', '\t'], " ").chars().take(MAX_NAME_CHARS).collect();
            Ok(ClientFrame::Hello { visitor_token: visitor, name: name.trim().to_owned() })
        }
        RawFrame::Message { id, text } => {
            if !is_token(&id, 1, 64) {
                return Err("`id` must be 1-64 of A-Z, a-z, 0-9, `-` and `_`".to_owned());
            }
            if text.chars().count() > MAX_CHAT_TEXT_CHARS {
                return Err(format!("`text` is at most {MAX_CHAT_TEXT_CHARS} characters"));
            }
            let text = safe_text(&text);
            if text.trim().is_empty() {
                return Err("`text` is empty".to_owned());
            }
            Ok(ClientFrame::Message { id, text })
        }
        RawFrame::Delivered { name } if name.len() <= 512 => Ok(ClientFrame::Delivered { name }),
        RawFrame::Delivered { .. } => Err("`name` is not a message name".to_owned()),
    }
}

/// The visitor's identity: a digest of its token, so whoever reads the
/// conversation (an agent, an admin) cannot act as the visitor.
pub fn visitor_identity(visitor_token: &str) -> Identity {
    let digest = hex::encode(Sha256::digest(visitor_token.as_bytes()));
    Identity { kind: IdentityKind::ChatVisitor, value: format!("webchat:{}", &digest[..32]) }
}

/// The visitor's message as intake takes it.
pub fn inbound(visitor_token: &str, name: &str, id: String, text: String) -> InboundMessage {
    let from = visitor_identity(visitor_token);
    let provider_message_id = format!("{}/{id}", &from.value["webchat:".len()..]);
    InboundMessage::text(Channel::Chat, provider_message_id, from, name.to_owned(), text)
}

/// A frame to the widget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Ready {
        greeting: String,
        title: String,
    },
    Ack {
        id: String,
    },
    Message {
        name: String,
        direction: &'static str,
        /// The widget's id of an inbound message; empty for replies.
        client_id: String,
        text: String,
        author: String,
        time_ms: i64,
    },
    Closed,
    Error {
        reason: String,
    },
}

impl ServerFrame {
    pub fn to_json(&self) -> String {
        // A frame of strings and integers always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"error","reason":"internal"}"#.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hello_message_and_delivered_frames_are_read() {
        let hello = parse_frame(r#"{"type":"hello","visitor":"abcdefghijklmnop-_12","name":" Ann\nLee "}"#);
        assert_eq!(
            hello,
            Ok(ClientFrame::Hello { visitor_token: "abcdefghijklmnop-_12".to_owned(), name: "Ann Lee".to_owned() })
        );
        let message = parse_frame(r#"{"type":"message","id":"m-1","text":"Hi\u0000 there"}"#);
        assert_eq!(message, Ok(ClientFrame::Message { id: "m-1".to_owned(), text: "Hi there".to_owned() }));
        let delivered = parse_frame(r#"{"type":"delivered","name":"tenants/acme/conversations/c/messages/m"}"#);
        assert!(matches!(delivered, Ok(ClientFrame::Delivered { .. })));
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        assert!(parse_frame("not json").unwrap_err().contains("not a frame"));
        assert!(parse_frame(r#"{"type":"hello","visitor":"short"}"#).unwrap_err().contains("visitor"));
        assert!(parse_frame(r#"{"type":"message","id":"a b","text":"x"}"#).unwrap_err().contains("id"));
        assert!(parse_frame(r#"{"type":"message","id":"a","text":"  "}"#).unwrap_err().contains("empty"));
        let long = format!(r#"{{"type":"message","id":"a","text":"{}"}}"#, "x".repeat(MAX_CHAT_TEXT_CHARS + 1));
        assert!(parse_frame(&long).unwrap_err().contains("at most"));
        assert!(parse_frame(&"x".repeat(MAX_FRAME_BYTES + 1)).unwrap_err().contains("bytes"));
    }

    #[test]
    fn the_visitor_is_a_digest_of_its_token_and_message_ids_are_its_own() {
        let identity = visitor_identity("abcdefghijklmnop");
        assert!(identity.value.starts_with("webchat:") && identity.value.len() == 40);
        assert!(!identity.value.contains("abcdefghijklmnop"));
        assert_ne!(identity, visitor_identity("abcdefghijklmnoq"));
        let first = inbound("abcdefghijklmnop", "Ann", "m-1".to_owned(), "Hi".to_owned());
        let other_visitor = inbound("abcdefghijklmnoq", "Bo", "m-1".to_owned(), "Hi".to_owned());
        assert_ne!(first.provider_message_id, other_visitor.provider_message_id, "ids are per visitor");
    }

    #[test]
    fn frames_out_are_json_with_their_type() {
        assert_eq!(ServerFrame::Ack { id: "m-1".to_owned() }.to_json(), r#"{"type":"ack","id":"m-1"}"#);
        assert_eq!(ServerFrame::Closed.to_json(), r#"{"type":"closed"}"#);
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(text in "\\PC{0,300}") {
            let _ = parse_frame(&text);
        }

        #[test]
        fn arbitrary_json_frames_never_panic(kind in "(hello|message|delivered|x)", field in "\\PC{0,80}") {
            let frame = serde_json::json!({"type": kind, "visitor": field, "id": field, "text": field, "name": field});
            let _ = parse_frame(&frame.to_string());
        }
    }
}
