//! Chaos: every service in its own process on real Kafka, Redis and
//! PostgreSQL, agents on their desktops and customers arriving all along,
//! and each service in turn killed with `kill -9` and restarted at once —
//! what Kubernetes does with a crashed pod. Whatever the broker does with
//! the dead member's partitions, each restarted service must become ready
//! again (readiness follows its consumers' partitions) and consume again,
//! and in the end:
//! - every contact ends in exactly one terminal state, which GetAssignment
//!   and the replayed routing log agree on, with the routing invariants;
//! - CRM's timelines and KPI's counts saw every contact (their consumers
//!   did not stall after a restart, and counted nothing twice).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::load::{Load, Rig, SETTLE, Settled, create_queues_and_agents, grpc};
use support::{Endpoints, Process, authorized, eventually, free_port, readiness_name};
use switchboard_proto::crm::v1::crm_service_client::CrmServiceClient;
use switchboard_proto::crm::v1::{ListCustomersRequest, ListTimelineEntriesRequest};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{GetKpiSummaryRequest, KpiFilter};

const CONTACTS: usize = 360;
/// Slow enough that the load lasts through the five restarts (each ~10-15 s:
/// the group waits out the dead member's session).
const CREATE_INTERVAL: Duration = Duration::from_millis(200);
/// The order the services are killed in.
const VICTIMS: [&str; 5] = ["routing", "ingestion", "crm", "presence", "kpi"];

/// Where each service's HTTP server (metrics, probes) listens, kept across
/// its restarts.
type HttpPorts = HashMap<&'static str, String>;

fn spawn_service(
    service: &str,
    generation: usize,
    config: &str,
    endpoints: &Endpoints,
    http: &HttpPorts,
    dir: &std::path::Path,
) -> Process {
    let mut env = endpoints.env();
    env.push(("SWITCHBOARD_INSTANCE_ID".to_owned(), format!("{service}-{generation}")));
    env.push((format!("SWITCHBOARD_SERVICES__{}__HTTP_LISTEN", service.to_uppercase()), http[service].clone()));
    Process::spawn(&format!("{service}-{generation}"), &[service, "--config", config], &env, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_killed_and_restarted_under_load_loses_nothing() {
    let Some(rig) = Rig::prepare("chaos").await else { return };
    let Some(redis_url) = switchboard_test_support::backend_url("SWITCHBOARD_TEST_REDIS") else { return };
    let began = Instant::now();
    let (dir, seed) = (rig.dir.clone(), rig.seed);
    let config_arg = rig.configure(&redis_url).await;

    let endpoints = Endpoints::pick();
    let mut generations: HashMap<&str, usize> = VICTIMS.iter().map(|service| (*service, 1)).collect();
    let http: HttpPorts = VICTIMS.iter().map(|service| (*service, format!("127.0.0.1:{}", free_port()))).collect();
    let mut processes: Vec<Process> =
        VICTIMS.iter().map(|service| spawn_service(service, 1, &config_arg, &endpoints, &http, &dir)).collect();
    support::wait_until_ready(&endpoints, &mut processes).await;
    create_queues_and_agents(&endpoints).await;
    eprintln!("{:?}: five services ready", began.elapsed());

    let load = Load::start(&endpoints, seed, CONTACTS, CREATE_INTERVAL);

    for (turn, service) in VICTIMS.iter().enumerate() {
        let due = CONTACTS * (turn + 1) / (VICTIMS.len() + 1);
        load.until_created(due).await;
        let position = processes.iter().position(|process| process.label.starts_with(service)).unwrap();
        let mut victim = processes.swap_remove(position);
        victim.child.kill().expect("kill -9");
        victim.child.wait().expect("killed");
        let generation = generations.get_mut(service).unwrap();
        *generation += 1;
        processes.push(spawn_service(service, *generation, &config_arg, &endpoints, &http, &dir));
        let killed_at = Instant::now();
        support::wait_until_health(service, &endpoints.url(service), &readiness_name(service), &mut processes).await;
        eprintln!(
            "{:?}: {service} killed after {} contacts, restarted and ready again after {:?}",
            began.elapsed(),
            load.created(),
            killed_at.elapsed()
        );
        // Every service, not only the restarted one: a group rebalance
        // moves the other members' partitions too.
        support::wait_until_ready(&endpoints, &mut processes).await;
    }

    let Settled { created, statuses, replayed, ended } = load.settle(&rig, &endpoints, &processes, &redis_url).await;
    assert_eq!(created.len(), CONTACTS);
    eprintln!("{:?}: settled", began.elapsed());
    assert!(ended.get("completed").copied().unwrap_or(0) > CONTACTS / 2, "most contacts were served: {ended:?}");

    // KPI counted every contact once, per tenant.
    let kpi = KpiServiceClient::new(grpc(&endpoints.url("kpi")));
    for tenant in ["acme", "globex"] {
        let of_tenant: Vec<_> = created.iter().filter(|contact| contact.tenant == tenant).collect();
        let completed = of_tenant.iter().filter(|contact| replayed.terminal.get(&contact.name) == Some(&"completed"));
        let expected = (of_tenant.len() as i64, completed.count() as i64);
        let summary = eventually(&format!("KPI to count every {tenant} contact"), SETTLE, || {
            let mut kpi = kpi.clone();
            async move {
                let filter = KpiFilter { parent: format!("tenants/{tenant}"), ..KpiFilter::default() };
                let request =
                    authorized(&format!("dev-{tenant}-reader"), GetKpiSummaryRequest { filter: Some(filter) });
                let summary = kpi.get_kpi_summary(request).await.ok()?.into_inner();
                (summary.offered == expected.0 && summary.completed == expected.1 && summary.waiting == 0)
                    .then_some(summary)
            }
        })
        .await;
        eprintln!("{tenant}: KPI {summary:?}");
    }

    // CRM: one customer per contact, each timeline entry in its end state.
    let crm = CrmServiceClient::new(grpc(&endpoints.url("crm")));
    for tenant in ["acme", "globex"] {
        let key = format!("dev-{tenant}-reader");
        let expected: HashMap<&str, i32> = created
            .iter()
            .filter(|contact| contact.tenant == tenant)
            .map(|contact| (contact.name.as_str(), statuses[&contact.name]))
            .collect();
        eventually(&format!("CRM to hold every {tenant} contact, ended"), SETTLE, || {
            let mut crm = crm.clone();
            let key = key.clone();
            let expected = expected.clone();
            async move {
                let mut seen: HashMap<String, i32> = HashMap::new();
                let mut page_token = String::new();
                loop {
                    let request =
                        ListCustomersRequest { parent: format!("tenants/{tenant}"), page_size: 100, page_token };
                    let page = crm.list_customers(authorized(&key, request)).await.ok()?.into_inner();
                    for customer in page.customers {
                        let request =
                            ListTimelineEntriesRequest { parent: customer.name, page_size: 100, ..Default::default() };
                        let entries = crm.list_timeline_entries(authorized(&key, request)).await.ok()?.into_inner();
                        for entry in entries.entries {
                            seen.insert(entry.contact, entry.status);
                        }
                    }
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    page_token = page.next_page_token;
                }
                let agrees = seen.len() == expected.len()
                    && expected.iter().all(|(contact, status)| seen.get(*contact) == Some(status));
                agrees.then_some(())
            }
        })
        .await;
    }

    // What an operator's Prometheus sees of it, from the restarted processes.
    check_metrics(&http).await;

    for process in processes {
        let label = process.label.clone();
        let status = process.terminate();
        assert!(status.success(), "{label} exits cleanly: {status}");
    }
}

/// Each service's `/metrics` after the run: RED per RPC, consumers'
/// records and lag, the routing gauges (refreshed every 5 s), agents by
/// state, the shared clock and backend probe latency.
async fn check_metrics(http: &HttpPorts) {
    let scrape = |service: &'static str| {
        let address = http[service].clone();
        async move { support::http_get(&address, "/metrics").await }
    };
    let routing = eventually("routing's gauges to show the drained state", SETTLE, || async {
        let text = scrape("routing").await?;
        let depth =
            switchboard_test_support::metric_value(&text, "switchboard_outbox_depth", &[("service", "routing")])?;
        let waiting =
            switchboard_test_support::metric_value(&text, "switchboard_waiting_contacts", &[("tenant", "acme")])?;
        (depth == 0.0 && waiting == 0.0).then_some(text)
    })
    .await;
    let method = ("method", "/switchboard.routing.v1.RoutingService/GetAssignment");
    let answered =
        switchboard_test_support::metric_value(&routing, "switchboard_grpc_requests_total", &[method, ("code", "OK")]);
    assert!(answered.is_some_and(|count| count > 0.0), "RED per RPC: {answered:?}");
    let handled = switchboard_test_support::metric_value(
        &routing,
        "switchboard_consumer_records_total",
        &[("consumer", "routing"), ("outcome", "handled")],
    );
    assert!(handled.is_some_and(|count| count > 0.0), "the consumer's records: {handled:?}");
    // The consumers on a contact's way to an agent took records from their
    // hints (bus/hints), not only from their fetches.
    let hinted = switchboard_test_support::metric_value(
        &routing,
        "switchboard_hints_received_total",
        &[("consumer", "routing"), ("outcome", "used")],
    );
    assert!(hinted.is_some_and(|count| count > 0.0), "routing's intake used hints: {hinted:?}");
    let presence = scrape("presence").await.expect("presence serves /metrics");
    let hinted =
        switchboard_test_support::metric_value(&presence, "switchboard_hints_received_total", &[("outcome", "used")]);
    assert!(hinted.is_some_and(|count| count > 0.0), "presence's pushes used hints: {hinted:?}");
    let ingestion = scrape("ingestion").await.expect("ingestion serves /metrics");
    let sent =
        switchboard_test_support::metric_value(&ingestion, "switchboard_hints_sent_total", &[("outcome", "published")]);
    assert!(sent.is_some_and(|count| count > 0.0), "ingestion hinted its records: {sent:?}");
    assert!(switchboard_test_support::metric_value(&routing, "switchboard_clock_offset_milliseconds", &[]).is_some());
    assert!(
        switchboard_test_support::metric_value(
            &routing,
            "switchboard_dependency_probe_duration_seconds_count",
            &[("dependency", "redis")]
        )
        .is_some_and(|probes| probes > 0.0),
        "redis latency is measured"
    );
    eventually("presence's agents-by-state gauge", SETTLE, || async {
        let text = scrape("presence").await?;
        switchboard_test_support::metric_value(&text, "switchboard_agents", &[("state", "AGENT_STATE_AVAILABLE")])
    })
    .await;
    // A member drops its lag series when its partitions are revoked (a
    // rebalance after a restart) and reports them again with the next
    // statistics, within 5 s.
    eventually("consumer lag per partition", SETTLE, || async {
        let text = scrape("presence").await?;
        switchboard_test_support::metric_value(
            &text,
            "switchboard_consumer_lag",
            &[("topic", "switchboard.routing.v1")],
        )
    })
    .await;
    for service in ["crm", "kpi"] {
        let text = scrape(service).await.unwrap_or_else(|| panic!("{service} serves /metrics"));
        let handled = switchboard_test_support::metric_value(
            &text,
            "switchboard_consumer_records_total",
            &[("outcome", "handled")],
        );
        assert!(handled.is_some_and(|count| count > 0.0), "{service} consumed: {handled:?}");
    }
}
