//! Social posts and reviews as signed JSON (Switchboard's own format, for
//! social listening and review platforms or an integration relaying them):
//! `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the body>`, and a
//! body `{"id", "platform", "author": {"id", "name"}, "text", "rating",
//! "url", "created_at"}`.

use serde_json::Value;
use switchboard_core::identity::provider_handle;
use switchboard_proto::common::v1::Channel;

use super::{
    InboundMessage, WebhookRefusal, check_size, required_token, safe_text, seconds_to_millis, sha256_signature,
    verify_sha256_signature,
};

/// The header the body's signature is in.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// The signature header for `body`.
pub fn signature(secret: &str, body: &[u8]) -> Result<String, WebhookRefusal> {
    sha256_signature(secret, body)
}

/// Checks the signature over the raw body, in constant time.
pub fn verify(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), WebhookRefusal> {
    verify_sha256_signature(secret, body, header)
}

/// Reads a verified post: one message from `platform:author id`.
pub fn parse(body: &[u8]) -> Result<InboundMessage, WebhookRefusal> {
    check_size(body)?;
    let post: Value =
        serde_json::from_slice(body).map_err(|error| WebhookRefusal::malformed(format!("not JSON: {error}")))?;
    fn text_field<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
        value.get(field).and_then(Value::as_str)
    }
    let platform = required_token(text_field(&post, "platform"), "platform", 64)?;
    if !platform.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_') {
        return Err(WebhookRefusal::malformed("`platform` must be a lower-case name (`google_reviews`)"));
    }
    let author = post.get("author").ok_or_else(|| WebhookRefusal::malformed("`author` is missing"))?;
    let author_id = required_token(text_field(author, "id"), "author.id", 256)?;
    let from = provider_handle(&platform, &author_id, "author.id")
        .map_err(|error| WebhookRefusal::malformed(error.message))?;
    let text = text_field(&post, "text").ok_or_else(|| WebhookRefusal::malformed("`text` is missing"))?;
    let mut decorated = safe_text(text);
    if let Some(rating) = post.get("rating") {
        let Some(rating) = rating.as_u64().filter(|rating| (1..=5).contains(rating)) else {
            return Err(WebhookRefusal::malformed("`rating` must be 1 to 5"));
        };
        decorated = format!("{}{} {decorated}", "★".repeat(rating as usize), "☆".repeat(5 - rating as usize));
    }
    if let Some(url) = text_field(&post, "url").filter(|url| url.starts_with("https://") || url.starts_with("http://"))
    {
        decorated = format!("{decorated}\n{}", safe_text(url));
    }
    Ok(InboundMessage {
        channel: Channel::Social,
        provider_message_id: required_token(text_field(&post, "id"), "id", 256)?,
        from,
        display_name: safe_text(text_field(author, "name").unwrap_or_default()),
        to: platform,
        thread: String::new(),
        text: decorated,
        attachments: Vec::new(),
        sent_at_ms: post.get("created_at").and_then(Value::as_i64).and_then(seconds_to_millis),
        replied_to: Vec::new(),
        subject: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const REVIEW: &str = r#"{"id":"rv-1","platform":"google_reviews","author":{"id":"109876","name":"Ann"},
        "text":"Slow delivery.","rating":2,"url":"https://maps.example/review/rv-1","created_at":1767225600}"#;

    #[test]
    fn a_signed_review_is_a_message_from_the_platforms_author() {
        let header = signature("s3cret", REVIEW.as_bytes()).unwrap();
        assert_eq!(verify("s3cret", REVIEW.as_bytes(), Some(&header)), Ok(()));
        let message = parse(REVIEW.as_bytes()).unwrap();
        assert_eq!(message.from.value, "google_reviews:109876");
        assert_eq!(message.text, "★★☆☆☆ Slow delivery.\nhttps://maps.example/review/rv-1");
        assert_eq!((message.provider_message_id.as_str(), message.sent_at_ms), ("rv-1", Some(1_767_225_600_000)));
    }

    #[test]
    fn forged_or_malformed_posts_are_refused() {
        let forged = signature("other", REVIEW.as_bytes()).unwrap();
        assert!(matches!(verify("s3cret", REVIEW.as_bytes(), Some(&forged)), Err(WebhookRefusal::Unauthenticated(_))));
        assert!(matches!(verify("s3cret", REVIEW.as_bytes(), None), Err(WebhookRefusal::Unauthenticated(_))));
        let bad_rating = REVIEW.replace("\"rating\":2", "\"rating\":9");
        assert!(matches!(parse(bad_rating.as_bytes()), Err(WebhookRefusal::Malformed(_))));
        let bad_platform = REVIEW.replace("google_reviews", "Google Reviews");
        assert!(matches!(parse(bad_platform.as_bytes()), Err(WebhookRefusal::Malformed(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&body);
            let _ = verify("secret", &body, Some("sha256=00"));
        }
    }
}
