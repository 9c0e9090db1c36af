//! The event-bus contract against the in-process bus and a real Kafka
//! broker (`SWITCHBOARD_TEST_KAFKA`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use switchboard_platform::bus::contract::{at_least_once_in_order, latest_skips_history, scan_reads_every_record};
use switchboard_platform::bus::kafka::KafkaBus;
use switchboard_platform::bus::memory::MemoryBus;
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
