//! `--via webhook`: contacts come in as Telegram updates posted to a
//! channel's webhook over HTTP (one new sender each, so each opens a
//! conversation and a contact), next to a raw HTTP baseline measured in
//! the same run: the same client posting the same bodies at the same rate
//! to a server that only answers 200.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::{Channel as ChannelResource, CreateChannelRequest, TelegramSettings};
use switchboard_test_support::{authorized, http_request};
use tokio::time::Instant;
use tonic::transport::Channel as GrpcChannel;

/// The bench channel's webhook secret.
const SECRET: &str = "bench_webhook_secret";
/// The bench channel's id.
pub const CHANNEL: &str = "bench-bot";

/// The Telegram update of contact `sequence`: its own sender, text
/// `bench {sequence}` (the offer's subject, by which the agent finds it).
pub fn update(sequence: usize) -> Vec<u8> {
    // Warm-up contacts count down from `usize::MAX`: give them senders of
    // their own that fit Telegram's integer ids.
    let sender = match usize::MAX - sequence {
        from_top if from_top < 1_000_000 => 999_000_000 + from_top,
        _ => sequence + 1,
    };
    format!(
        r#"{{"update_id":{sender},"message":{{"message_id":1,"date":1767225600,"text":"bench {sequence}","from":{{"id":{sender},"first_name":"Bench"}},"chat":{{"id":{sender},"type":"private"}}}}}}"#
    )
    .into_bytes()
}

/// Posts `body` to `path` at `address` with the bench channel's secret;
/// an error unless the answer is 200.
pub async fn post(address: SocketAddr, path: &str, body: &[u8]) -> anyhow::Result<()> {
    let headers = [("content-type", "application/json"), ("x-telegram-bot-api-secret-token", SECRET)];
    let answer = http_request(address, "POST", path, &headers, body).await?;
    anyhow::ensure!(answer.status == 200, "HTTP {}: {}", answer.status, answer.body);
    Ok(())
}

/// The webhook path of the bench channel.
pub fn path() -> String {
    format!("/webhooks/bench/{CHANNEL}")
}

/// Creates the bench tenant's Telegram channel into `queue`.
pub async fn create_channel(ingestion: GrpcChannel, admin_key: &str, queue: &str) -> Result<(), tonic::Status> {
    let channel = ChannelResource {
        queue: queue.to_owned(),
        provider: Some(Provider::Telegram(TelegramSettings {
            // Replies are not sent in the bench.
            api_base_url: "http://127.0.0.1:9".to_owned(),
            bot_token: "1:bench".to_owned(),
            webhook_secret: SECRET.to_owned(),
        })),
        ..ChannelResource::default()
    };
    let request = CreateChannelRequest {
        parent: "tenants/bench".to_owned(),
        channel_id: CHANNEL.to_owned(),
        channel: Some(channel),
    };
    ChannelServiceClient::new(ingestion).create_channel(authorized(admin_key, request)).await.map(|_| ())
}

/// The raw baseline: each post timed from its scheduled send to the 200.
pub async fn raw_http_baseline(rate: u64, seconds: u64) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let router = axum::Router::new().route("/{*path}", axum::routing::post(|_body: axum::body::Bytes| async { "" }));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let total = usize::try_from(rate * seconds)?;
    let interval = Duration::from_secs(1) / u32::try_from(rate)?;
    let start = Instant::now() + Duration::from_millis(100);
    let mut posts = tokio::task::JoinSet::new();
    for sequence in 0..total {
        let at = start + interval * u32::try_from(sequence)?;
        tokio::time::sleep_until(at).await;
        let body = update(sequence);
        posts.spawn(async move { post(address, &path(), &body).await.map(|()| at.elapsed()) });
    }
    let mut latencies = Vec::with_capacity(total);
    while let Some(posted) = posts.join_next().await {
        latencies.push(posted??);
    }
    let elapsed = start.elapsed();
    server.abort();
    Ok((latencies, elapsed))
}
