//! The shared clock against a real Redis: a host whose clock is off by an
//! hour reads Redis's `TIME` once it has synced.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use switchboard_core::clock::{Clock, Sample};
use switchboard_core::time::now_millis;
use switchboard_platform::redis::{connect, sync_clock};
use switchboard_test_support::backend_url;

#[tokio::test]
async fn a_skewed_host_reads_the_redis_clock_after_a_sync() {
    let Some(url) = backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let connection = connect(&url).await.expect("redis");
    let ahead = Clock::reading(|| now_millis() + 3_600_000);
    let sample = sync_clock(&connection, &ahead).await.expect("sync");
    let Sample::Adjusted { offset_ms } = sample else { panic!("a local round trip is trusted: {sample:?}") };
    assert!((offset_ms + 3_600_000).abs() < 1_000, "the hour is taken back: {offset_ms}");
    let mut raw = connection.clone();
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut raw).await.expect("time");
    let redis_ms = seconds * 1_000 + micros / 1_000;
    assert!((ahead.now_millis() - redis_ms).abs() < 500, "{} vs redis {redis_ms}", ahead.now_millis());
}
