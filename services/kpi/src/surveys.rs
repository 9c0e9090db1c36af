//! `KpiService.RecordSurveyAnswer`: the customer's answer to the
//! post-contact survey, checked against the contact's facts and published
//! as a `SurveyAnswered` contact event, which the KPI consumer merges into
//! the facts like every other (so CSAT is rebuilt from the log).

use switchboard_core::event::{CONTACTS_TOPIC, envelope};
use switchboard_core::names::{contact_name, parse_contact};
use switchboard_core::time::{now_millis, timestamp_from_millis};
use switchboard_core::{Error, ErrorCode, Principal};
use switchboard_platform::auth::AccessControl;
use switchboard_platform::bus::{EventBus, publish_traced};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{self as ingestion, ContactEvent, contact_event};
use switchboard_proto::kpi::v1 as proto;

use crate::domain::Survey;
use crate::store::KpiStore;

/// Records `request`'s answer once: the same answer again returns the
/// recorded one; another score is ALREADY_EXISTS.
pub async fn record_survey_answer(
    store: &dyn KpiStore,
    bus: &dyn EventBus,
    access: &AccessControl,
    principal: &Principal,
    request: &proto::RecordSurveyAnswerRequest,
) -> Result<proto::SurveyAnswer, Error> {
    let (tenant, contact) = parse_contact(&request.contact, "contact")?;
    access.authorize_intake(principal, &tenant)?;
    if !Survey::SCORES.contains(&request.score) {
        return Err(Error::invalid_field("score", "must be 1 (very dissatisfied) to 5 (very satisfied)"));
    }
    let name = contact_name(&tenant, &contact);
    let Some(facts) = store.get(&tenant, &contact).await?.filter(|facts| !facts.is_blank()) else {
        return Err(Error::not_found(name));
    };
    if facts.answered_ms.is_none() {
        return Err(Error::failed_precondition("no agent answered the contact: there is nothing to survey")
            .with_reason("CONTACT_NOT_ANSWERED"));
    }
    let answer = |survey: Survey| proto::SurveyAnswer {
        contact: name.clone(),
        score: survey.score,
        answer_time: Some(timestamp_from_millis(survey.at_ms)),
    };
    if let Some(recorded) = facts.survey {
        if recorded.score == request.score {
            return Ok(answer(recorded));
        }
        let message = format!("`{name}` was already answered, with a score of {}", recorded.score);
        return Err(Error::new(ErrorCode::AlreadyExists, message)
            .with_resource(name.clone())
            .with_reason("SURVEY_ALREADY_ANSWERED"));
    }
    let survey = Survey { at_ms: now_millis(), score: request.score };
    let answered = ingestion::SurveyAnswered {
        contact: name.clone(),
        score: survey.score,
        answer_time: Some(timestamp_from_millis(survey.at_ms)),
    };
    let event = ContactEvent { kind: Some(contact_event::Kind::SurveyAnswered(answered)) };
    publish_traced(bus, CONTACTS_TOPIC, &envelope(Some(&tenant), contact.as_str(), Payload::Contact(event))).await?;
    tracing::info!(tenant = %tenant, contact = %contact, score = survey.score, "survey answer recorded");
    Ok(answer(survey))
}
