//! Round trips per contact over a run, to find where CPU goes: Redis
//! commands (`INFO commandstats`), Kafka records per topic (the topics'
//! high watermarks) and PostgreSQL transactions committed in the run's
//! database (`pg_stat_database`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::tokio_postgres;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// What the backends had done at one instant.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    redis_calls: BTreeMap<String, u64>,
    kafka_records: BTreeMap<String, i64>,
    postgres_commits: i64,
}

/// Where to read the counts from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub redis_url: String,
    pub kafka_bootstrap: String,
    /// Physical topic names.
    pub topics: Vec<String>,
    pub postgres_url: String,
}

pub async fn sample(sources: &Sources) -> anyhow::Result<Counts> {
    let redis = redis::Client::open(sources.redis_url.as_str())?;
    let mut connection = redis.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection).await?;
    let redis_calls = info
        .lines()
        .filter_map(|line| {
            let (command, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|field| field.strip_prefix("calls="))?.parse().ok()?;
            Some((command.to_owned(), calls))
        })
        .collect();

    let (bootstrap, topics) = (sources.kafka_bootstrap.clone(), sources.topics.clone());
    let kafka_records = tokio::task::spawn_blocking(move || -> anyhow::Result<BTreeMap<String, i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "latency-bench-counts")
            .create()?;
        let mut records = BTreeMap::new();
        for topic in topics {
            let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            let partitions = metadata.topics().first().map(|topic| topic.partitions().len()).unwrap_or(0);
            let mut total = 0;
            for partition in 0..partitions {
                let (low, high) =
                    consumer.fetch_watermarks(&topic, i32::try_from(partition)?, Duration::from_secs(10))?;
                total += high - low;
            }
            records.insert(topic, total);
        }
        Ok(records)
    })
    .await??;

    let (client, connection) = tokio_postgres::connect(&sources.postgres_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    // Each backend reports its statistics within a second of going idle.
    let row = client
        .query_one("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()", &[])
        .await
        .context("pg_stat_database")?;
    Ok(Counts { redis_calls, kafka_records, postgres_commits: row.get(0) })
}

/// Prints what happened between `before` and `after`, per contact.
pub fn report(before: &Counts, after: &Counts, contacts: usize) {
    let per_contact = |count: f64| count / contacts.max(1) as f64;
    let mut redis: Vec<(String, u64)> = after
        .redis_calls
        .iter()
        .map(|(command, calls)| (command.clone(), calls - before.redis_calls.get(command).copied().unwrap_or(0)))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    redis.sort_by_key(|(_, calls)| std::cmp::Reverse(*calls));
    let redis_total: u64 = redis.iter().map(|(_, calls)| calls).sum();
    let top: Vec<String> =
        redis.iter().take(8).map(|(command, calls)| format!("{command} {:.1}", per_contact(*calls as f64))).collect();
    println!("round trips per contact:");
    println!("  redis commands {:.1} ({})", per_contact(redis_total as f64), top.join(", "));
    let records: Vec<String> = after
        .kafka_records
        .iter()
        .map(|(topic, count)| {
            let added = count - before.kafka_records.get(topic).copied().unwrap_or(0);
            format!("{} {:.2}", topic.rsplit('.').nth(1).unwrap_or(topic), per_contact(added as f64))
        })
        .collect();
    println!("  kafka records {}", records.join(", "));
    println!("  postgres transactions {:.1}", per_contact((after.postgres_commits - before.postgres_commits) as f64));
}
