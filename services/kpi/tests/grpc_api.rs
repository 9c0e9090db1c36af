//! The KPI API over a real gRPC connection: events published on the
//! in-process bus, consumed by the running service, read back through
//! tonic with bearer keys.

// Helpers outside `#[test]` functions are not covered by clippy.toml's
// allow-*-in-tests.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{
    ACME_READER_KEY, GLOBEX_READER_KEY, OPERATOR_KEY, authorized, publish, start_in_memory, summary, tenant_filter,
    wait_for_summary,
};
use switchboard_core::time::timestamp_from_millis;
use switchboard_core::{ContactId, QueueId, TenantId};
use switchboard_kpi::domain::{AbandonStage, INTERVAL_MS, ServiceLevelVariant, intervals, recompute, summarize};
use switchboard_kpi::store::contract::{ContactStory, StoryOutcome, random_stories, shuffled_with_duplicates};
use switchboard_proto::common::v1::{Channel, Direction};
use switchboard_proto::events::v1::EventEnvelope;
use switchboard_proto::kpi::v1::{self as kpi_api, KpiFilter, KpiSummary, ListKpiIntervalsRequest};
use switchboard_proto::routing::v1 as routing;
use tonic::Code;
use tonic_types::StatusExt;

/// A quarter-hour boundary, so both contacts land in one interval.
const ARRIVAL_MS: i64 = 1_763_900_100_000 - 1_763_900_100_000 % INTERVAL_MS;
const ANSWER_WAIT_MS: i64 = 7_250;

fn story(contact: &str, outcome: StoryOutcome, short_abandon_threshold_ms: Option<i64>) -> ContactStory {
    ContactStory {
        tenant: TenantId::parse("acme", "tenant").unwrap(),
        contact: ContactId::parse(contact, "contact").unwrap(),
        queue: QueueId::parse("support", "queue").unwrap(),
        overflow_to: None,
        channel: Channel::Voice,
        direction: Direction::Inbound,
        created_ms: ARRIVAL_MS,
        queue_delay_ms: Some(0),
        outcome,
        short_abandon_threshold_ms,
        service_level_threshold_ms: None,
    }
}

fn settled(expected_contacts: i64) -> impl Fn(&KpiSummary) -> bool {
    move |summary| summary.inbound == expected_contacts && summary.offered == expected_contacts && summary.waiting == 0
}

#[tokio::test]
async fn summary_counts_an_answered_and_an_abandoned_contact() {
    let (mut service, bus) = start_in_memory().await;
    let answered = story("ct_answered1", StoryOutcome::Answered { wait_ms: ANSWER_WAIT_MS, completion: None }, None);
    // Three seconds would be a short abandon under the default 5 s; the
    // queue's threshold of 0 makes it a real one.
    let abandon = StoryOutcome::Abandoned { wait_ms: 3_000, stage: AbandonStage::Queue, routing_lag_ms: 0 };
    let abandoned = story("ct_abandoned1", abandon, Some(0));
    publish(&bus, &answered.events()).await;
    publish(&bus, &abandoned.events()).await;

    // Settled: both contacts created and queued, neither still waiting.
    let summary = wait_for_summary(&mut service.client, ACME_READER_KEY, tenant_filter("acme"), settled(2)).await;
    assert_eq!(summary.offered, 2);
    assert_eq!(summary.answered, 1);
    assert_eq!(summary.abandoned, 1);
    assert_eq!(summary.short_abandoned, 0);
    assert_eq!(summary.lost, 1);
    assert_eq!(summary.lcr, 0.5);
    assert_eq!(summary.car, 0.5);
    assert_eq!(summary.asa, Some(prost_types::Duration { seconds: 7, nanos: 250_000_000 }));
    assert_eq!(summary.answered_within_threshold, 1);
    assert_eq!(summary.service_level, 0.5);

    let request = ListKpiIntervalsRequest { filter: Some(tenant_filter("acme")) };
    let listed = service.client.list_kpi_intervals(authorized(ACME_READER_KEY, request)).await.unwrap().into_inner();
    assert_eq!(listed.intervals.len(), 1);
    assert_eq!(listed.intervals[0].start_time, Some(timestamp_from_millis(ARRIVAL_MS)));
    assert_eq!(listed.intervals[0].summary, Some(summary));

    let other_queue = KpiFilter { queue: "tenants/acme/queues/sales".to_owned(), ..tenant_filter("acme") };
    assert_eq!(summary_of(&mut service, other_queue).await.offered, 0);
    let before_arrival = KpiFilter { end_time: Some(timestamp_from_millis(ARRIVAL_MS)), ..tenant_filter("acme") };
    assert_eq!(summary_of(&mut service, before_arrival).await.offered, 0);
    service.stop().await;
}

#[tokio::test]
async fn contacts_routing_ended_are_lost_and_transfers_stay_in_the_entered_queue() {
    let (mut service, bus) = start_in_memory().await;
    let ended = |contact: &str, reason: routing::EndReason, wait_ms: i64| {
        story(contact, StoryOutcome::EndedByRouting { wait_ms, reason, customer_left_offset_ms: None }, None)
    };
    let timed_out = ended("ct_maxwait1", routing::EndReason::MaxWait, 120_000);
    // A caller told the queue is closed hangs up a moment later: still
    // routing's end, not an abandon, and never a short one.
    let mut closed = ended("ct_closed1", routing::EndReason::Closed, 0);
    closed.outcome = StoryOutcome::EndedByRouting {
        wait_ms: 0,
        reason: routing::EndReason::Closed,
        customer_left_offset_ms: Some(800),
    };
    let again = StoryOutcome::AnsweredAgainAfterTransfer { wait_ms: 4_000, second_wait_ms: 30_000, handle_ms: 60_000 };
    let mut transferred = story("ct_transferred1", again, None);
    transferred.overflow_to = Some(QueueId::parse("billing", "queue").unwrap());
    for contact in [&timed_out, &closed, &transferred] {
        publish(&bus, &contact.events()).await;
    }

    let all_ended = |summary: &KpiSummary| settled(3)(summary) && summary.timed_out == 2 && summary.completed == 1;
    let summary = wait_for_summary(&mut service.client, ACME_READER_KEY, tenant_filter("acme"), all_ended).await;
    assert_eq!((summary.answered, summary.abandoned, summary.short_abandoned), (1, 0, 0));
    assert_eq!((summary.lost, summary.timed_out), (2, 2));
    assert_eq!((summary.car, summary.lcr), (2.0 / 3.0, 2.0 / 3.0));
    assert_eq!(summary.asa, Some(prost_types::Duration { seconds: 4, nanos: 0 }), "the first answer's wait");
    assert_eq!(summary.service_level, 1.0 / 3.0, "routing's ends were not answered within T");
    let entered = KpiFilter { queue: "tenants/acme/queues/support".to_owned(), ..tenant_filter("acme") };
    assert_eq!(summary_of(&mut service, entered).await, summary, "every contact stays in the queue it entered");
    for moved_to in ["billing", "escalations"] {
        let filter = KpiFilter { queue: format!("tenants/acme/queues/{moved_to}"), ..tenant_filter("acme") };
        assert_eq!(summary_of(&mut service, filter).await.offered, 0, "{moved_to}");
    }
    service.stop().await;
}

async fn summary_of(service: &mut common::RunningService, filter: KpiFilter) -> KpiSummary {
    summary(&mut service.client, ACME_READER_KEY, filter).await.unwrap()
}

#[tokio::test]
async fn callers_see_only_tenants_they_may_read() {
    let (mut service, _bus) = start_in_memory().await;
    let denied = summary(&mut service.client, GLOBEX_READER_KEY, tenant_filter("acme")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unknown = summary(&mut service.client, OPERATOR_KEY, tenant_filter("initech")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let hidden = summary(&mut service.client, ACME_READER_KEY, tenant_filter("initech")).await.unwrap_err();
    assert_eq!(hidden.code(), Code::PermissionDenied, "a tenant key learns nothing about other tenants");
    let unauthenticated = summary(&mut service.client, "not-a-key", tenant_filter("acme")).await.unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    assert!(summary(&mut service.client, OPERATOR_KEY, tenant_filter("globex")).await.is_ok());
    service.stop().await;
}

#[tokio::test]
async fn invalid_filters_name_the_field_in_bad_request_details() {
    let (mut service, _bus) = start_in_memory().await;
    let cases = [
        (KpiFilter { queue: "tenants/globex/queues/sales".to_owned(), ..tenant_filter("acme") }, "filter.queue"),
        (
            KpiFilter {
                start_time: Some(timestamp_from_millis(ARRIVAL_MS)),
                end_time: Some(timestamp_from_millis(ARRIVAL_MS - 1)),
                ..tenant_filter("acme")
            },
            "filter.end_time",
        ),
        (KpiFilter { parent: "acme".to_owned(), ..KpiFilter::default() }, "filter.parent"),
        (
            KpiFilter {
                start_time: Some(prost_types::Timestamp { seconds: 253_402_300_800, nanos: 0 }),
                ..tenant_filter("acme")
            },
            "filter.start_time",
        ),
        (
            KpiFilter {
                end_time: Some(prost_types::Timestamp { seconds: i64::MIN, nanos: 0 }),
                ..tenant_filter("acme")
            },
            "filter.end_time",
        ),
        (
            KpiFilter { start_time: Some(prost_types::Timestamp { seconds: 1, nanos: -5 }), ..tenant_filter("acme") },
            "filter.start_time",
        ),
    ];
    for (filter, field) in cases {
        let status = summary(&mut service.client, ACME_READER_KEY, filter).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let bad_request = status.get_details_bad_request().expect("BadRequest details");
        assert_eq!(bad_request.field_violations[0].field, field);
    }
    service.stop().await;
}

fn events_of(stories: &[ContactStory]) -> Vec<(&'static str, EventEnvelope)> {
    stories.iter().flat_map(ContactStory::events).collect()
}

/// Invariant 4 over the wire: the live aggregate served by the API, fed
/// shuffled events with duplicates, equals the batch recompute of the log.
#[tokio::test]
async fn live_kpis_equal_the_batch_recompute_of_the_log() {
    let (mut service, bus) = start_in_memory().await;
    let acme = TenantId::parse("acme", "tenant").unwrap();
    let globex = TenantId::parse("globex", "tenant").unwrap();
    let acme_events = events_of(&random_stories(&acme, 120, 42));
    let globex_events = events_of(&random_stories(&globex, 40, 43));
    let log: Vec<EventEnvelope> = acme_events.iter().map(|(_, envelope)| envelope.clone()).collect();
    let topic_of = |envelope: &EventEnvelope| {
        let (topic, _) = acme_events.iter().find(|(_, event)| event.event_id == envelope.event_id).unwrap();
        *topic
    };
    let delivery: Vec<(&'static str, EventEnvelope)> =
        shuffled_with_duplicates(&log, 42).into_iter().map(|envelope| (topic_of(&envelope), envelope)).collect();
    publish(&bus, &globex_events).await;
    publish(&bus, &delivery).await;

    let facts = recompute(&log);
    let expected = summarize(facts.values(), ServiceLevelVariant::default()).to_proto();
    let live =
        wait_for_summary(&mut service.client, ACME_READER_KEY, tenant_filter("acme"), |live| *live == expected).await;
    assert_eq!(live, expected);

    let request = ListKpiIntervalsRequest { filter: Some(tenant_filter("acme")) };
    let listed = service.client.list_kpi_intervals(authorized(ACME_READER_KEY, request)).await.unwrap().into_inner();
    let expected_intervals: Vec<_> =
        intervals(facts.values(), ServiceLevelVariant::default()).iter().map(|interval| interval.to_proto()).collect();
    assert_eq!(listed.intervals, expected_intervals);
    assert!(listed.intervals.len() >= 4, "an hour of arrivals spans four intervals");

    let sales_voice = KpiFilter {
        queue: "tenants/acme/queues/sales".to_owned(),
        channel: Channel::Voice as i32,
        service_level_variant: kpi_api::ServiceLevelVariant::AnsweredOnly as i32,
        ..tenant_filter("acme")
    };
    let sales_voice_facts = facts.values().filter(|facts| {
        facts.queue.as_ref().map(QueueId::as_str) == Some("sales") && facts.channel == Some(Channel::Voice)
    });
    let expected_sales_voice = summarize(sales_voice_facts, ServiceLevelVariant::AnsweredOnly).to_proto();
    assert_eq!(summary_of(&mut service, sales_voice).await, expected_sales_voice);
    service.stop().await;
}
