//! The event-bus contract against the in-process bus and a real Kafka
//! broker (`SWITCHBOARD_TEST_KAFKA`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use switchboard_platform::bus::contract::{at_least_once_in_order, latest_skips_history, scan_reads_every_record};
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::memory::MemoryBus;
use switchboard_platform::bus::{EventBus, StartFrom};
use switchboard_platform::metrics::metrics;
use switchboard_test_support::{backend_url, isolated_kafka_config, unique_suffix};

#[tokio::test]
async fn memory_bus_passes_the_contract() {
    let bus = MemoryBus::new();
    at_least_once_in_order(&bus, "contract.memory", "m").await.expect("at least once, in order");
    latest_skips_history(&bus, "contract.memory.latest", "m").await.expect("latest");
    scan_reads_every_record(&bus, "contract.memory.scan").await.expect("scan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_passes_the_contract() {
    let Some(brokers) = backend_url("SWITCHBOARD_TEST_KAFKA") else { return };
    let config = isolated_kafka_config(brokers, "contract");
    let run = unique_suffix();
    let bus = KafkaBus::connect(&config, &["events", "latest", "scan"]).await.expect("kafka bus");
    at_least_once_in_order(&bus, "events", &run).await.expect("at least once, in order");
    latest_skips_history(&bus, "latest", &run).await.expect("latest");
    scan_reads_every_record(&bus, "scan").await.expect("scan");
}

/// CPU time, in nanoseconds, that this process's threads named `name` have
/// spent on a CPU (`/proc/self/task/*/schedstat`, first field).
fn cpu_nanos_of_threads(name: &str) -> (usize, u64) {
    let mut threads = 0;
    let mut nanos = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let task = task.expect("a task").path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        if comm.trim_end() != name {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.join("schedstat")).expect("schedstat");
        threads += 1;
        nanos += schedstat.split_whitespace().next().and_then(|field| field.parse::<u64>().ok()).expect("on-CPU time");
    }
    (threads, nanos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_producer_sleeps_while_idle() {
    let Some(brokers) = backend_url("SWITCHBOARD_TEST_KAFKA") else { return };
    let config = isolated_kafka_config(brokers, "idle");
    let bus = KafkaBus::connect(&config, &["idle"]).await.expect("kafka bus");
    at_least_once_in_order(&bus, "idle", &unique_suffix()).await.expect("delivered before idling");
    let (threads, before) = cpu_nanos_of_threads("kafka-reports");
    assert_eq!(threads, 1, "one polling thread for the bus's producer");
    // The idle time itself is what is measured: a producer whose polling
    // thread busy-waits the end of each 100 ms poll spends about 20 ms of
    // CPU in 2 s (rdkafka's future producer did), one that sleeps well
    // under 1 ms.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (_, after) = cpu_nanos_of_threads("kafka-reports");
    let spent_ms = (after - before) as f64 / 1e6;
    assert!(spent_ms < 8.0, "the producer's polling thread spent {spent_ms:.1} ms of CPU in 2 s idle");
}

/// Every partition a consumer holds has a lag series once statistics come
/// in, the ones that never held a record too (at 0): librdkafka reports
/// those as unknown. A member that leaves drops its series: another member
/// reports those partitions now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumer_lag_has_a_series_for_every_partition_it_holds() {
    let Some(brokers) = backend_url("SWITCHBOARD_TEST_KAFKA") else { return };
    let mut config = isolated_kafka_config(brokers, "lag");
    config.partitions = 3;
    let bus = KafkaBus::connect(&config, &["lag"]).await.expect("kafka bus");
    let group = format!("lag-{}", unique_suffix());
    let mut subscription = bus.subscribe(&group, &["lag"], StartFrom::Earliest).await.expect("subscribe");
    // A consumer serves its statistics while it is asked for records.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consuming = tokio::spawn(async move {
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return subscription,
                delivery = subscription.next() => {
                    let delivery = delivery.expect("next record");
                    subscription.ack(&delivery).await.expect("ack");
                }
            }
        }
    });
    let lags = || -> Vec<Option<String>> {
        let text = metrics().render();
        (0..3)
            .map(|partition| {
                let wanted =
                    [format!("consumer=\"{group}\""), "topic=\"lag\"".to_owned(), format!("partition=\"{partition}\"")];
                text.lines().find_map(|line| {
                    let rest = line.strip_prefix("switchboard_consumer_lag{")?;
                    let (labels, value) = rest.split_once("} ")?;
                    wanted
                        .iter()
                        .all(|label| labels.split(',').any(|given| given == label))
                        .then(|| value.trim().to_owned())
                })
            })
            .collect()
    };
    // librdkafka sends statistics every 5 s.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let lags = lags();
        if lags.iter().all(Option::is_some) {
            assert!(lags.iter().all(|lag| lag.as_deref() == Some("0")), "empty partitions are 0 behind: {lags:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no lag series for every partition: {lags:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.send(()).expect("consumer running");
    let subscription = consuming.await.expect("consumer task");
    subscription.close().await.expect("close");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while lags().iter().any(Option::is_some) {
        assert!(tokio::time::Instant::now() < deadline, "a member that left still reports {:?}", lags());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
