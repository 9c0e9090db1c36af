//! `kpi_bench`: the KPI service's store against PostgreSQL. Aggregates a
//! month of contacts for one tenant (one facts update per contact, in the
//! consumer's batches of 256), then times summary queries over the month
//! from the buckets and the live figures' way from an applied update to a
//! watcher; next to baselines measured in the same run: a raw rdkafka
//! consumer reading records of the same count from the broker, and raw
//! batched upserts of the same shape into PostgreSQL.
//!
//! ```sh
//! cargo run --release --features bench --bin kpi_bench -- --postgres postgres://... \
//!     --kafka 127.0.0.1:9092 --contacts 1000000 --queries 200
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use switchboard_core::{ContactId, CustomerId, QueueId, TenantId};
use switchboard_kpi::domain::{FactsEvent, FactsFilter, FactsUpdate, INTERVAL_MS};
use switchboard_kpi::live::LiveBoards;
use switchboard_kpi::store::postgres::{MIGRATION_SERVICE, MIGRATIONS, PostgresKpiStore};
use switchboard_kpi::store::{KpiStore, counts_by_interval, summary_counts};
use switchboard_kpi::usage::Month;
use switchboard_platform::config::PostgresConfig;
use switchboard_platform::postgres::{migrate, pool};
use switchboard_proto::common::v1::Channel;

#[derive(Debug, Parser)]
#[command(about = "KPI aggregation and queries against PostgreSQL, next to raw rdkafka and PostgreSQL baselines")]
struct Options {
    /// An admin URL: the bench makes a database of its own there.
    #[arg(long)]
    postgres: String,
    /// Brokers for the raw consume baseline.
    #[arg(long)]
    kafka: String,
    /// Contacts in the month.
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u64,
    /// Summary queries timed.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Live samples timed.
    #[arg(long, default_value_t = 40)]
    live_samples: usize,
}

const BATCH: usize = 256;
const QUEUES: [&str; 3] = ["sales", "support", "billing"];
const CHANNELS: [Channel; 4] = [Channel::Voice, Channel::Chat, Channel::Email, Channel::Sms];

fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * fraction).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// One contact's whole story as one update: arrived, queued, and answered
/// and completed, or abandoned, or still waiting.
fn contact_update(tenant: &TenantId, number: u64, month: Month) -> anyhow::Result<FactsEvent> {
    let span_ms = month.end_ms() - month.start_ms() - 3_600_000;
    let arrival_ms = month.start_ms() + (number.wrapping_mul(2_654_435_761) % span_ms.unsigned_abs()) as i64;
    let contact = ContactId::parse(&format!("ct_bench{number:010}"), "contact")?;
    let customer = CustomerId::parse(&format!("cu_bench{:07}", number % 300_000), "customer")?;
    let outcome = number % 10;
    let answered = (outcome < 7).then_some(arrival_ms + 5_000 + (number % 40) as i64 * 1_000);
    let update = FactsUpdate {
        queue: Some(QueueId::parse(QUEUES[(number % 3) as usize], "queue")?),
        queue_entered: true,
        channel: Some(CHANNELS[(number % 4) as usize]),
        customer: Some(customer),
        inbound: Some(true),
        created_ms: Some(arrival_ms),
        queued_ms: Some(arrival_ms + 200),
        answered_ms: answered,
        abandoned_ms: (outcome == 7 || outcome == 8).then_some(arrival_ms + 30_000),
        completed_ms: answered.map(|answered_ms| answered_ms + 240_000),
        resolved: answered.map(|_| !number.is_multiple_of(3)),
        wrap_up_ms: answered.map(|_| 30_000),
        ..FactsUpdate::default()
    };
    Ok(FactsEvent { tenant: tenant.clone(), contact, update })
}

/// Records per second a raw rdkafka consumer reads from the start of a
/// topic holding `count` records of 256 bytes.
async fn raw_consume_rate(kafka: &str, count: u64) -> anyhow::Result<f64> {
    let topic = format!("kpi-bench-{}", switchboard_test_support::unique_suffix());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", kafka).create().context("admin client")?;
    let created = admin
        .create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .context("create the baseline topic")?;
    for outcome in created {
        outcome.map_err(|(topic, error)| anyhow::anyhow!("topic {topic}: {error}"))?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("producer")?;
    let mut deliveries = Vec::with_capacity(10_000);
    for sequence in 0..count {
        let payload = vec![(sequence % 251) as u8; 256];
        let key = format!("key-{}", sequence % 1024);
        let record = FutureRecord::to(&topic).key(&key).payload(&payload);
        deliveries.push(producer.send_result(record).map_err(|(error, _)| anyhow::anyhow!("{error}"))?);
        if deliveries.len() >= 10_000 {
            for delivered in futures::future::join_all(deliveries.drain(..)).await {
                delivered?.map_err(|(error, _)| anyhow::anyhow!("{error}"))?;
            }
        }
    }
    for delivered in futures::future::join_all(deliveries).await {
        delivered?.map_err(|(error, _)| anyhow::anyhow!("{error}"))?;
    }
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", format!("{topic}.raw"))
        .set("enable.auto.commit", "false")
        .create()
        .context("consumer")?;
    let mut assigned = TopicPartitionList::new();
    assigned.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&assigned)?;
    let started = Instant::now();
    for _ in 0..count {
        tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.context("a record")??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Rows per second of raw batched upserts shaped like the facts' (same
/// batch size, one statement each), into a table of the bench's database.
async fn raw_upsert_rate(pool: &deadpool_postgres::Pool, count: u64) -> anyhow::Result<f64> {
    let client = pool.get().await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS bench_raw (tenant text, contact text, created_ms bigint, answered_ms bigint,
                 completed_ms bigint, PRIMARY KEY (tenant, contact))",
        )
        .await?;
    let statement = client
        .prepare(
            "INSERT INTO bench_raw SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[])
             ON CONFLICT (tenant, contact) DO UPDATE SET answered_ms = LEAST(bench_raw.answered_ms, EXCLUDED.answered_ms)",
        )
        .await?;
    let started = Instant::now();
    let mut number = 0;
    while number < count {
        let rows: Vec<u64> = (number..(number + BATCH as u64).min(count)).collect();
        let tenants: Vec<&str> = rows.iter().map(|_| "bench").collect();
        let contacts: Vec<String> = rows.iter().map(|row| format!("ct_raw{row:010}")).collect();
        let instants: Vec<i64> = rows.iter().map(|row| *row as i64).collect();
        client.execute(&statement, &[&tenants, &contacts, &instants, &instants, &instants]).await?;
        number += rows.len() as u64;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let url = switchboard_test_support::fresh_database(&options.postgres).await?;
    let postgres = pool(&PostgresConfig { url, pool_size: 4, ca_file: None })?;
    migrate(&postgres, MIGRATION_SERVICE, MIGRATIONS).await?;
    let store = std::sync::Arc::new(PostgresKpiStore::connect(postgres.clone()).await?);
    let tenant = TenantId::parse("bench", "tenant")?;
    let month = Month::parse("2026-11", "month")?;

    let baseline_count = options.contacts.min(200_000);
    let consume_rate = raw_consume_rate(&options.kafka, baseline_count).await?;
    let upsert_rate = raw_upsert_rate(&postgres, baseline_count).await?;
    println!(
        "baseline raw rdkafka consume: {consume_rate:.0} records/s; raw PostgreSQL batched upsert: {upsert_rate:.0} rows/s"
    );

    let started = Instant::now();
    let mut resident_at_tenth = 0.0;
    let mut number = 0;
    while number < options.contacts {
        let batch = (number..(number + BATCH as u64).min(options.contacts))
            .map(|number| contact_update(&tenant, number, month))
            .collect::<anyhow::Result<Vec<_>>>()?;
        number += batch.len() as u64;
        store.apply_all(batch).await?;
        if number == (options.contacts / 10).div_ceil(BATCH as u64) * BATCH as u64 {
            resident_at_tenth = resident_mib();
        }
    }
    let aggregation = started.elapsed();
    let rate = options.contacts as f64 / aggregation.as_secs_f64();
    println!(
        "aggregated {} contacts in {:.1} s: {rate:.0} updates/s = {:.3} of raw consume, {:.3} of raw upsert",
        options.contacts,
        aggregation.as_secs_f64(),
        rate / consume_rate,
        rate / upsert_rate
    );
    println!(
        "resident memory: {resident_at_tenth:.0} MiB after a tenth of the month, {:.0} MiB after all of it",
        resident_mib()
    );

    let whole = FactsFilter {
        arrival_start_ms: Some(month.start_ms()),
        arrival_end_ms: Some(month.end_ms()),
        ..FactsFilter::default()
    };
    let ragged = FactsFilter {
        arrival_start_ms: Some(month.start_ms() + 7 * 60_000),
        arrival_end_ms: Some(month.end_ms() - INTERVAL_MS - 11 * 60_000),
        ..FactsFilter::default()
    };
    let now_ms = switchboard_core::time::now_millis();
    for (name, filter) in [("the month", &whole), ("the month, unaligned ends", &ragged)] {
        let mut summaries = Vec::with_capacity(options.queries);
        let mut by_interval = Vec::with_capacity(options.queries);
        let mut offered = 0;
        for _ in 0..options.queries {
            let started = Instant::now();
            let (counts, _) = summary_counts(store.as_ref(), &tenant, filter, 200_000, now_ms).await?;
            summaries.push(started.elapsed());
            offered = counts.offered;
            let started = Instant::now();
            counts_by_interval(store.as_ref(), &tenant, filter, 200_000).await?;
            by_interval.push(started.elapsed());
        }
        let ms = |samples: &mut Vec<Duration>, fraction| percentile(samples, fraction).as_secs_f64() * 1_000.0;
        println!(
            "over {name} ({offered} contacts): summary p50 {:.1} ms, p99 {:.1} ms; 15-minute intervals p50 {:.1} ms, p99 {:.1} ms",
            ms(&mut summaries, 0.5),
            ms(&mut summaries, 0.99),
            ms(&mut by_interval, 0.5),
            ms(&mut by_interval, 0.99)
        );
    }

    let boards = LiveBoards::new(store.clone(), tokio_util::sync::CancellationToken::new());
    let mut board = boards.watch(&tenant, 0);
    board.changed().await?;
    let mut samples = Vec::with_capacity(options.live_samples);
    for sample in 0..options.live_samples {
        let now_ms = switchboard_core::time::now_millis();
        let update = FactsUpdate {
            queue: Some(QueueId::parse("support", "queue")?),
            queue_entered: true,
            inbound: Some(true),
            created_ms: Some(now_ms),
            queued_ms: Some(now_ms),
            ..FactsUpdate::default()
        };
        let contact = ContactId::parse(&format!("ct_live{sample:06}"), "contact")?;
        let applied = Instant::now();
        store.apply(&tenant, &contact, update).await?;
        board.changed().await?;
        samples.push(applied.elapsed());
    }
    println!(
        "applied update to watcher: p50 {:.0} ms, p99 {:.0} ms (boards read every 500 ms)",
        percentile(&mut samples, 0.5).as_secs_f64() * 1_000.0,
        percentile(&mut samples, 0.99).as_secs_f64() * 1_000.0
    );
    Ok(())
}
