//! The fixture corpus (`tests/fixtures/channels/*.json`: real-world-shaped
//! webhook requests with their signatures, each with the outcome it must
//! have), the providers' published signature examples, the outbound
//! requests' shapes, and arbitrary bytes against every parser.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};
use switchboard_proto::common::v1::Channel;

use super::meta::{MetaAccount, MetaProduct};
use super::telegram::TelegramBot;
use super::twilio::TwilioAccount;
use super::*;

/// What a fixture's request yields, in the fixtures' own notation.
fn describe(inbound: &[Inbound]) -> Value {
    let identity =
        |identity: &switchboard_core::identity::Identity| format!("{}:{}", identity.kind.as_str(), identity.value);
    let items: Vec<Value> = inbound
        .iter()
        .map(|item| match item {
            Inbound::Message(message) => json!({
                "kind": "message",
                "channel": message.channel.as_str_name(),
                "id": message.provider_message_id,
                "from": identity(&message.from),
                "name": message.display_name,
                "to": message.to,
                "thread": message.thread,
                "text": message.text,
                "attachments": message.attachments.iter().map(|attachment| json!({
                    "type": attachment.content_type,
                    "ref": attachment.reference,
                    "file": attachment.file_name,
                    "size": attachment.size_bytes,
                    "caption": attachment.caption,
                })).collect::<Vec<_>>(),
                "sent_at_ms": message.sent_at_ms,
            }),
            Inbound::Edit(edit) => json!({
                "kind": "edit",
                "id": edit.provider_message_id,
                "from": identity(&edit.from),
                "text": edit.text,
                "edited_at_ms": edit.edited_at_ms,
            }),
            Inbound::Status(update) => json!({
                "kind": "status",
                "id": update.provider_message_id,
                "state": match &update.state {
                    DeliveryState::Sent => "sent".to_owned(),
                    DeliveryState::Delivered => "delivered".to_owned(),
                    DeliveryState::Read => "read".to_owned(),
                    DeliveryState::Failed { reason } => format!("failed: {reason}"),
                },
                "at_ms": update.at_ms,
            }),
        })
        .collect();
    json!({ "items": items })
}

/// Verifies and parses one fixture's request as its provider's endpoint does.
fn receive(case: &Value) -> Result<Vec<Inbound>, WebhookRefusal> {
    use base64::Engine;
    let text = |field: &str| case.get(field).and_then(Value::as_str);
    let body: Vec<u8> = match (text("body"), text("body_base64")) {
        (Some(body), _) => body.as_bytes().to_vec(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD.decode(encoded).expect("fixture base64"),
        (None, None) => panic!("a fixture needs a body"),
    };
    let secret = text("secret").expect("fixture secret");
    let signature = text("signature");
    match text("provider").expect("fixture provider") {
        "twilio" => {
            twilio::verify(secret, text("url").expect("twilio fixtures name the URL"), &body, signature)?;
            twilio::parse(&body)
        }
        "meta" => {
            meta::verify(secret, &body, signature)?;
            meta::parse(&body)
        }
        "telegram" => {
            telegram::verify(secret, &body, signature)?;
            telegram::parse(&body)
        }
        other => panic!("unknown provider {other}"),
    }
}

#[test]
fn every_fixture_has_its_expected_outcome() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/channels");
    let mut checked = 0;
    for entry in std::fs::read_dir(&directory).expect("the fixture directory") {
        let path = entry.expect("a fixture").path();
        let case: Value = serde_json::from_slice(&std::fs::read(&path).expect("readable")).expect("fixture JSON");
        let expected = &case["expect"];
        let outcome = match receive(&case) {
            Ok(inbound) => describe(&inbound),
            Err(refusal) => json!({ "refused": refusal.reason() }),
        };
        assert_eq!(&outcome, expected, "{}: {}", path.display(), case["description"]);
        checked += 1;
    }
    assert!(checked >= 30, "the corpus is there ({checked} fixtures)");
}

#[test]
fn twilio_signature_matches_the_published_example() {
    // The example of Twilio's security documentation.
    let parameters: Vec<(String, String)> = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(twilio::signature("12345", url, &parameters).as_deref(), Ok("0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
}

#[test]
fn twilio_replies_are_form_posts_with_basic_auth() {
    let account = TwilioAccount {
        account_sid: "AC01".to_owned(),
        auth_token: "secret".to_owned(),
        from: "whatsapp:+14155238886".to_owned(),
        api_base_url: "http://127.0.0.1:9/twilio".to_owned(),
    };
    let message = OutboundMessage {
        to: "+447700900123".to_owned(),
        text: "Hi & welcome".to_owned(),
        idempotency_key: "r1".to_owned(),
    };
    let request = twilio::build_send(&account, &message);
    assert_eq!(request.url, "http://127.0.0.1:9/twilio/2010-04-01/Accounts/AC01/Messages.json");
    assert!(request.headers.contains(&("authorization".to_owned(), "Basic QUMwMTpzZWNyZXQ=".to_owned())));
    let form = twilio::form_parameters(&request.body);
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    assert_eq!(field("To"), Some("whatsapp:+447700900123"), "a WhatsApp sender writes to a WhatsApp address");
    assert_eq!(field("Body"), Some("Hi & welcome"));
    assert_eq!(twilio::sent_message_id(br#"{"sid":"SM0123","status":"queued"}"#).as_deref(), Some("SM0123"));
    assert_eq!(twilio::sent_message_id(br#"{"code":21211,"message":"Invalid 'To'"}"#), None);
}

#[test]
fn meta_replies_name_the_number_or_the_page() {
    let account = |product| MetaAccount {
        product,
        app_secret: "app".to_owned(),
        verify_token: "verify".to_owned(),
        access_token: "token".to_owned(),
        api_base_url: "http://127.0.0.1:9/v21.0".to_owned(),
    };
    let message = OutboundMessage {
        to: "+16505551234".to_owned(),
        text: "Yes, in blue".to_owned(),
        idempotency_key: "r1".to_owned(),
    };
    let whatsapp = meta::build_send(&account(MetaProduct::WhatsApp { phone_number_id: "1065".to_owned() }), &message);
    assert_eq!(whatsapp.url, "http://127.0.0.1:9/v21.0/1065/messages");
    let body: Value = serde_json::from_slice(&whatsapp.body).expect("JSON");
    assert_eq!((body["to"].as_str(), body["text"]["body"].as_str()), (Some("16505551234"), Some("Yes, in blue")));
    assert!(whatsapp.headers.contains(&("authorization".to_owned(), "Bearer token".to_owned())));
    let messenger =
        meta::build_send(&account(MetaProduct::Messenger), &OutboundMessage { to: "678".to_owned(), ..message });
    assert_eq!(messenger.url, "http://127.0.0.1:9/v21.0/me/messages");
    let body: Value = serde_json::from_slice(&messenger.body).expect("JSON");
    assert_eq!(body["recipient"]["id"], "678");
    assert_eq!(meta::sent_message_id(br#"{"messages":[{"id":"wamid.X"}]}"#).as_deref(), Some("wamid.X"));
    assert_eq!(meta::sent_message_id(br#"{"recipient_id":"678","message_id":"m_1"}"#).as_deref(), Some("m_1"));
}

#[test]
fn meta_subscription_handshake_echoes_the_challenge_only_for_the_token() {
    let query = "hub.mode=subscribe&hub.verify_token=s3cret&hub.challenge=1158201444";
    assert_eq!(meta::subscription_challenge(query, "s3cret"), Ok("1158201444".to_owned()));
    assert_eq!(meta::subscription_challenge(query, "other").map_err(|refusal| refusal.http_status()), Err(401));
    let unsubscribe = "hub.mode=unsubscribe&hub.verify_token=s3cret&hub.challenge=1";
    assert_eq!(meta::subscription_challenge(unsubscribe, "s3cret").map_err(|refusal| refusal.http_status()), Err(400));
    assert!(meta::subscription_challenge("hub.mode=subscribe&hub.verify_token=&hub.challenge=1", "").is_err());
}

#[test]
fn telegram_replies_go_to_the_chat() {
    let bot = TelegramBot {
        bot_token: "123:ABC".to_owned(),
        webhook_secret: "s".to_owned(),
        api_base_url: "http://127.0.0.1:9".to_owned(),
    };
    let message = OutboundMessage {
        to: "418273645".to_owned(),
        text: "Заказ в пути".to_owned(),
        idempotency_key: "r1".to_owned(),
    };
    let request = telegram::build_send(&bot, &message);
    assert_eq!(request.url, "http://127.0.0.1:9/bot123:ABC/sendMessage");
    let body: Value = serde_json::from_slice(&request.body).expect("JSON");
    assert_eq!((body["chat_id"].as_str(), body["text"].as_str()), (Some("418273645"), Some("Заказ в пути")));
    let answer = br#"{"ok":true,"result":{"message_id":77,"chat":{"id":418273645,"type":"private"},"date":1}}"#;
    assert_eq!(telegram::sent_message_id(answer).as_deref(), Some("418273645:77"));
    assert_eq!(telegram::sent_message_id(br#"{"ok":false,"error_code":403}"#), None);
    assert!(
        telegram::is_valid_secret("sb_tg-1")
            && !telegram::is_valid_secret("with space")
            && !telegram::is_valid_secret("")
    );
}

#[test]
fn oversized_bodies_are_refused_unread() {
    let body = vec![b'a'; MAX_WEBHOOK_BODY_BYTES + 1];
    assert_eq!(twilio::verify("t", "https://x", &body, Some("AAAA")), Err(WebhookRefusal::TooLarge));
    assert_eq!(meta::verify("s", &body, Some("sha256=00")), Err(WebhookRefusal::TooLarge));
    assert_eq!(telegram::verify("s", &body, Some("s")), Err(WebhookRefusal::TooLarge));
    assert_eq!(WebhookRefusal::TooLarge.http_status(), 413);
}

#[test]
fn text_keeps_nothing_the_stored_text_rule_refuses() {
    assert_eq!(safe_text("pay\u{202E}evil\r\nnow\u{0}"), "payevil\nnow", "bidi override, CR and NUL dropped");
}

#[test]
fn long_text_is_cut_and_marked() {
    let text = safe_text(&"x".repeat(MAX_MESSAGE_TEXT_CHARS + 10));
    assert_eq!(text.chars().count(), MAX_MESSAGE_TEXT_CHARS + 1);
    assert!(text.ends_with('…'));
}

#[test]
fn channels_are_those_of_the_api() {
    assert_eq!(Channel::Messenger.as_str_name(), "CHANNEL_MESSENGER");
}

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = twilio::parse(&body);
        let _ = meta::parse(&body);
        let _ = telegram::parse(&body);
        let _ = twilio::verify("token", "https://example.com/hook", &body, Some("c2lnbmF0dXJl"));
        let _ = meta::verify("secret", &body, Some("sha256=abcd"));
        let _ = telegram::verify("secret", &body, Some("secret"));
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_json(value in arbitrary_json()) {
        let body = value.to_string().into_bytes();
        let _ = meta::parse(&body);
        let _ = telegram::parse(&body);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_forms(fields in proptest::collection::vec((form_name(), ".{0,40}"), 0..12)) {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let _ = twilio::parse(body.as_bytes());
    }

    #[test]
    fn a_signed_form_verifies_and_any_change_breaks_it(
        fields in proptest::collection::vec((form_name(), "[ -~]{0,20}"), 1..8),
        token in "[a-f0-9]{32}",
        tampered_value in "[ -~]{0,20}",
    ) {
        let url = "https://switchboard.example.com/webhooks/acme/ch_1";
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields.clone()).finish();
        let parameters = twilio::form_parameters(body.as_bytes());
        let header = twilio::signature(&token, url, &parameters).expect("signed");
        prop_assert_eq!(twilio::verify(&token, url, body.as_bytes(), Some(&header)), Ok(()));
        let mut tampered = fields;
        prop_assume!(tampered[0].1 != tampered_value);
        tampered[0].1 = tampered_value;
        let tampered_body = form_urlencoded::Serializer::new(String::new()).extend_pairs(tampered).finish();
        prop_assert!(twilio::verify(&token, url, tampered_body.as_bytes(), Some(&header)).is_err());
    }

    #[test]
    fn safe_text_keeps_no_control_characters(raw in ".{0,200}") {
        let text = safe_text(&raw);
        prop_assert!(text.chars().all(|character| !character.is_control() || character == '\n' || character == '\t'));
    }
}

fn form_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("MessageSid".to_owned()),
        Just("From".to_owned()),
        Just("To".to_owned()),
        Just("Body".to_owned()),
        Just("NumMedia".to_owned()),
        Just("MediaUrl0".to_owned()),
        Just("MessageStatus".to_owned()),
        Just("ProfileName".to_owned()),
        "[A-Za-z0-9]{1,12}",
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|number| json!(number)),
        prop_oneof![
            Just("message".to_owned()),
            Just("text".to_owned()),
            Just("whatsapp_business_account".to_owned()),
            Just("page".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let keys = prop_oneof![
            Just("object".to_owned()),
            Just("entry".to_owned()),
            Just("changes".to_owned()),
            Just("value".to_owned()),
            Just("messages".to_owned()),
            Just("statuses".to_owned()),
            Just("messaging".to_owned()),
            Just("message".to_owned()),
            Just("update_id".to_owned()),
            Just("from".to_owned()),
            Just("chat".to_owned()),
            Just("id".to_owned()),
            Just("photo".to_owned()),
            Just("field".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(keys, inner, 0..6).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}
