//! `RecordSurveyAnswer` over a real gRPC connection: an answered contact's
//! survey answer is published, merged into its facts and shows as CSAT;
//! the same answer again is idempotent, another score is refused; bad
//! scores, unknown or unanswered contacts and other tenants are refused
//! with the field or reason named.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{ACME_READER_KEY, GLOBEX_READER_KEY, OPERATOR_KEY, authorized, publish, start_in_memory};
use common::{tenant_filter, wait_for_summary};
use switchboard_core::{ContactId, QueueId, TenantId};
use switchboard_kpi::store::contract::{ContactStory, StoryOutcome};
use switchboard_proto::common::v1::{Channel, Direction};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{RecordSurveyAnswerRequest, SurveyAnswer};
use switchboard_test_support::error_reason;
use tonic::Code;
use tonic_types::StatusExt;

fn story(contact: &str, outcome: StoryOutcome) -> ContactStory {
    ContactStory {
        tenant: TenantId::parse("acme", "tenant").unwrap(),
        contact: ContactId::parse(contact, "contact").unwrap(),
        queue: QueueId::parse("support", "queue").unwrap(),
        overflow_to: None,
        channel: Channel::Chat,
        direction: Direction::Inbound,
        created_ms: switchboard_core::time::now_millis() - 600_000,
        queue_delay_ms: Some(0),
        outcome,
        short_abandon_threshold_ms: None,
        service_level_threshold_ms: None,
    }
}

async fn record(
    client: &mut KpiServiceClient<tonic::transport::Channel>,
    key: &str,
    contact: &str,
    score: i32,
) -> Result<SurveyAnswer, tonic::Status> {
    let request = RecordSurveyAnswerRequest { contact: contact.to_owned(), score };
    client.record_survey_answer(authorized(key, request)).await.map(tonic::Response::into_inner)
}

fn field(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.get_details_bad_request().expect("bad request details").field_violations[0].field.clone()
}

#[tokio::test]
async fn a_survey_answer_becomes_csat_once() {
    let (mut service, bus) = start_in_memory().await;
    // Handled in 30 s (a multiple of three: the story sends no survey of
    // its own), and one still waiting.
    let handled = StoryOutcome::Answered { wait_ms: 5_000, completion: Some((30_000, true)) };
    publish(&bus, &story("ct_surveyed1", handled).events()).await;
    publish(&bus, &story("ct_waiting01", StoryOutcome::Waiting).events()).await;
    let client = &mut service.client;
    wait_for_summary(client, ACME_READER_KEY, tenant_filter("acme"), |summary| {
        summary.handled == 1 && summary.waiting == 1
    })
    .await;

    let contact = "tenants/acme/contacts/ct_surveyed1";
    let answer = record(client, OPERATOR_KEY, contact, 5).await.expect("recorded");
    assert_eq!((answer.contact.as_str(), answer.score), (contact, 5));
    let summary =
        wait_for_summary(client, ACME_READER_KEY, tenant_filter("acme"), |summary| summary.surveyed == 1).await;
    assert_eq!((summary.satisfied, summary.csat, summary.average_survey_score), (1, 1.0, 5.0));

    let again = record(client, OPERATOR_KEY, contact, 5).await.expect("the same answer again");
    assert_eq!(again, answer, "the recorded answer, not a second one");
    let other = record(client, OPERATOR_KEY, contact, 2).await.expect_err("another score");
    assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
    assert!(other.message().contains("score of 5"), "{other:?}");
    assert_eq!(error_reason(&other).as_deref(), Some("SURVEY_ALREADY_ANSWERED"), "the survey exists, not the contact");
    let unanswered = record(client, OPERATOR_KEY, "tenants/acme/contacts/ct_waiting01", 4).await.expect_err("waiting");
    assert_eq!(unanswered.code(), Code::FailedPrecondition, "{unanswered:?}");
    assert_eq!(error_reason(&unanswered).as_deref(), Some("CONTACT_NOT_ANSWERED"));
    let unknown = record(client, OPERATOR_KEY, "tenants/acme/contacts/ct_nobody0001", 4).await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let summary = common::summary(client, ACME_READER_KEY, tenant_filter("acme")).await.expect("summary");
    assert_eq!((summary.surveyed, summary.satisfied), (1, 1), "refused answers changed nothing");
    service.stop().await;
}

#[tokio::test]
async fn bad_answers_name_their_field_and_readers_may_not_answer() {
    let (mut service, _bus) = start_in_memory().await;
    let client = &mut service.client;
    let contact = "tenants/acme/contacts/ct_surveyed1";
    assert_eq!(field(&record(client, OPERATOR_KEY, contact, 0).await.expect_err("0")), "score");
    assert_eq!(field(&record(client, OPERATOR_KEY, contact, 6).await.expect_err("6")), "score");
    assert_eq!(field(&record(client, OPERATOR_KEY, "ct_surveyed1", 3).await.expect_err("name")), "contact");
    let reader = record(client, ACME_READER_KEY, contact, 3).await.expect_err("a reader");
    assert_eq!(reader.code(), Code::PermissionDenied, "{reader:?}");
    let foreign = record(client, GLOBEX_READER_KEY, contact, 3).await.expect_err("another tenant");
    assert_eq!(foreign.code(), Code::PermissionDenied, "{foreign:?}");
    service.stop().await;
}
