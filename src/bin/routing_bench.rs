//! `routing_bench`: the routing engine alone against Redis, no broker in
//! the loop. Seeds agents and waiting contacts across queues and tenants,
//! then runs matching passes in steady state (each offered contact is
//! accepted and completed, a new contact takes its place, and the outbox
//! relay drains the events into a discarding bus) and reports
//! decisions per second with latency percentiles, next to `redis-benchmark`
//! SET and EVALSHA measured against the same server in the same run.
//!
//! ```sh
//! cargo run --release --features bench --bin routing_bench -- --redis redis://127.0.0.1:6379 \
//!     --agents 10000 --tenants 100 --queues 1000 --waiting 1000,10000,100000 --seconds 10
//! ```

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use clap::Parser;
use switchboard_core::{AgentId, ContactId, Error, QueueId, TenantId};
use switchboard_platform::bus::{EventBus, Pace, RawRecord, Scan, StartFrom, Subscription};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_routing::domain::{AgentProfile, ContactRecord, RoutingStatus};
use switchboard_routing::engine::Engine;
use switchboard_routing::store::RoutingState;
use switchboard_routing::store::memory::MemoryQueueStore;
use switchboard_routing::store::redis::RedisRoutingState;

const CHAT: i32 = 3;

#[derive(Debug, Parser)]
#[command(about = "Routing decisions per second against Redis, next to redis-benchmark baselines")]
struct Options {
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    #[arg(long, default_value_t = 1_000)]
    queues: usize,
    /// Waiting contacts to hold steady, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    waiting: Vec<usize>,
    /// Measured seconds per run (after seeding).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests per redis-benchmark baseline.
    #[arg(long, default_value_t = 100_000)]
    baseline_requests: usize,
}

/// The broker is not part of this measurement: events are dropped.
struct DiscardBus;

#[async_trait]
impl EventBus for DiscardBus {
    async fn publish(&self, _topic: &str, _envelope: &EventEnvelope) -> Result<(), Error> {
        Ok(())
    }

    async fn publish_raw(&self, _record: &RawRecord) -> Result<(), Error> {
        Ok(())
    }

    async fn subscribe_paced(
        &self,
        _group: &str,
        _topics: &[&str],
        _start: StartFrom,
        _pace: Pace,
    ) -> Result<Box<dyn Subscription>, Error> {
        Err(Error::internal("the benchmark bus has no subscribers"))
    }

    async fn scan(&self, _topic: &str, _visit: &mut (dyn FnMut(RawRecord) -> Scan + Send)) -> Result<(), Error> {
        Ok(())
    }

    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}

struct Fixture {
    tenants: Vec<TenantId>,
    queues: Vec<(TenantId, QueueId)>,
}

impl Fixture {
    fn new(tenant_count: usize, queue_count: usize) -> anyhow::Result<Fixture> {
        let tenants: Vec<TenantId> =
            (0..tenant_count).map(|index| TenantId::parse(&format!("t{index}"), "tenant")).collect::<Result<_, _>>()?;
        let queues = (0..queue_count)
            .map(|index| Ok((tenants[index % tenants.len()].clone(), QueueId::parse(&format!("q{index}"), "queue")?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Fixture { tenants, queues })
    }

    fn contact(&self, sequence: usize, now_ms: i64) -> ContactRecord {
        let (tenant, queue) = &self.queues[sequence % self.queues.len()];
        ContactRecord {
            tenant: tenant.clone(),
            contact: ContactId::generate(),
            queue: queue.clone(),
            channel: CHAT,
            customer: String::new(),
            subject: String::new(),
            session_url: String::new(),
            conversation: String::new(),
            priority: i32::try_from(sequence % 3).unwrap_or(0),
            required_skills: Vec::new(),
            strategy: switchboard_routing::domain::Strategy::LongestIdle,
            priority_step_ms: switchboard_routing::domain::STRICT_PRIORITY_STEP_MS,
            enqueue_ms: now_ms,
            offer_timeout_ms: 600_000,
            status: RoutingStatus::Queued,
            agent: None,
            last_offered: None,
            offer_expire_ms: 0,
            answer_ms: 0,
            end_ms: 0,
            rules: switchboard_routing::domain::QueueRules::default(),
            revision: 0,
        }
    }

    /// Agent `index` serves its own tenant and the next one (shared pools).
    fn agent(&self, index: usize) -> anyhow::Result<AgentProfile> {
        let tenant_count = self.tenants.len();
        Ok(AgentProfile {
            agent: AgentId::parse(&format!("a{index}"), "agent")?,
            tenants: vec![self.tenants[index % tenant_count].clone(), self.tenants[(index + 1) % tenant_count].clone()],
            skills: BTreeMap::new(),
            tenant_skills: BTreeMap::new(),
            capacities: BTreeMap::from([(CHAT, 1)]),
        })
    }
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

struct RunReport {
    waiting: usize,
    decisions: usize,
    matching_seconds: f64,
    cycle_seconds: f64,
    pass_latencies: Vec<Duration>,
    decision_latencies: Vec<Duration>,
}

async fn run_level(options: &Options, fixture: &Fixture, waiting: usize) -> anyhow::Result<RunReport> {
    let connection = switchboard_platform::redis::connect(&options.redis).await?;
    let pool = format!("bench-{}", switchboard_test_support::unique_suffix());
    let state: Arc<dyn RoutingState> = Arc::new(RedisRoutingState::new(connection, &pool));
    // A fresh pool is whole once marked, as the routing service's guard does.
    state.restore(&[], &[], 0).await?;
    state.finish_rebuild().await?;
    // The journal is not part of this measurement either: it stays in memory.
    let journal = Arc::new(switchboard_routing::store::journal::MemoryJournal::default());
    let engine = Engine::new(state.clone(), Arc::new(MemoryQueueStore::default()), journal, Arc::new(DiscardBus))?;
    let now = switchboard_core::time::now_millis();
    eprintln!("seeding {} agents and {waiting} waiting contacts (pool {pool})", options.agents);
    let mut sequence = 0;
    for _ in 0..waiting {
        state.enqueue(&fixture.contact(sequence, now), &[]).await?;
        sequence += 1;
    }
    for index in 0..options.agents {
        state.upsert_agent(&fixture.agent(index)?, true, now).await?;
    }

    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let (mut decisions, mut matching, mut cycle) = (0, Duration::ZERO, Duration::ZERO);
    let (mut pass_latencies, mut decision_latencies) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        let cycle_start = Instant::now();
        let offered = engine.match_once().await?;
        let pass = cycle_start.elapsed();
        matching += pass;
        pass_latencies.push(pass);
        if offered > 0 {
            let per_decision = pass / u32::try_from(offered).unwrap_or(u32::MAX);
            decision_latencies.extend(std::iter::repeat_n(per_decision, offered));
        }
        decisions += offered;
        // Steady state: every offer is answered and completed (freeing the
        // agent) and a new contact arrives in its place.
        let now = switchboard_core::time::now_millis();
        for offer in state.expired_offers(i64::MAX, 1_000_000).await? {
            // As the API does: the record read (for authorization) is the
            // transition's first view.
            let offered = state.get_contact(&offer.tenant, &offer.contact).await?;
            let offered = offered.ok_or_else(|| anyhow::anyhow!("an offered contact is stored"))?;
            let answered = engine.accept(&offered, &offer.agent).await?;
            engine.complete(&answered, &offer.agent, "bench", true).await?;
            state.enqueue(&fixture.contact(sequence, now), &[]).await?;
            sequence += 1;
        }
        // The relay drains the outbox (into the discarding bus) as in the service.
        engine.relay_once("bench").await?;
        cycle += cycle_start.elapsed();
        if offered == 0 {
            anyhow::bail!("a pass made no offer: the fixture has no eligible agent for the waiting contacts");
        }
    }
    pass_latencies.sort();
    decision_latencies.sort();
    Ok(RunReport {
        waiting,
        decisions,
        matching_seconds: matching.as_secs_f64(),
        cycle_seconds: cycle.as_secs_f64(),
        pass_latencies,
        decision_latencies,
    })
}

/// `redis-benchmark` requests per second for `command` (one client, like
/// the engine's sequential calls).
fn redis_benchmark(options: &Options, command: &[&str]) -> anyhow::Result<f64> {
    let url = options.redis.trim_start_matches("redis://");
    let (host, port) = url.split_once(':').context("--redis must be redis://host:port")?;
    let port = port.trim_end_matches('/');
    let output = Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-c", "1", "-q", "-n", &options.baseline_requests.to_string()])
        .args(command)
        .output()
        .context("redis-benchmark must be installed (Debian package redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // The last line: "<NAME>: 12345.67 requests per second, p50=0.063 msec".
    let line =
        text.lines().rev().find(|line| line.contains("requests per second")).context("no redis-benchmark result")?;
    // The echoed command may contain colons: take the number right before
    // "requests per second".
    let rate = line
        .split(" requests per second")
        .next()
        .and_then(|before| before.split_whitespace().last())
        .context("malformed result")?;
    Ok(rate.parse()?)
}

async fn evalsha_baseline(options: &Options) -> anyhow::Result<f64> {
    let client = redis::Client::open(options.redis.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let sha: String =
        redis::cmd("SCRIPT").arg("LOAD").arg("return redis.call('GET', KEYS[1])").query_async(&mut connection).await?;
    redis_benchmark(options, &["EVALSHA", &sha, "1", "bench:key"])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let fixture = Fixture::new(options.tenants, options.queues)?;
    let set_rate = redis_benchmark(&options, &["-t", "set"])?;
    let evalsha_rate = evalsha_baseline(&options).await?;
    println!("baseline redis-benchmark (1 client): SET {set_rate:.0}/s, EVALSHA {evalsha_rate:.0}/s");
    println!(
        "{:>9} {:>10} {:>13} {:>13} {:>9} {:>9} {:>10} {:>10} {:>11} {:>13}",
        "waiting",
        "decisions",
        "match dec/s",
        "cycle dec/s",
        "pass p50",
        "pass p99",
        "dec p50",
        "dec p99",
        "dec/SET",
        "dec/EVALSHA"
    );
    for waiting in options.waiting.clone() {
        let report = run_level(&options, &fixture, waiting).await?;
        let match_rate = report.decisions as f64 / report.matching_seconds.max(f64::EPSILON);
        let cycle_rate = report.decisions as f64 / report.cycle_seconds.max(f64::EPSILON);
        println!(
            "{:>9} {:>10} {:>13.0} {:>13.0} {:>7.0}us {:>7.0}us {:>8.1}us {:>8.1}us {:>11.3} {:>13.3}",
            report.waiting,
            report.decisions,
            match_rate,
            cycle_rate,
            micros(percentile(&report.pass_latencies, 0.50)),
            micros(percentile(&report.pass_latencies, 0.99)),
            micros(percentile(&report.decision_latencies, 0.50)),
            micros(percentile(&report.decision_latencies, 0.99)),
            match_rate / set_rate,
            match_rate / evalsha_rate,
        );
    }
    Ok(())
}
