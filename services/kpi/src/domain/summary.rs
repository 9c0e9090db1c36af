//! KPI math over a set of contact facts: counts, rates, ASA and service
//! level for a whole range and for 15-minute intervals. The definitions
//! are in the [`crate::domain`] module documentation.

use std::collections::BTreeMap;

use switchboard_core::time::timestamp_from_millis;
use switchboard_proto::kpi::v1 as proto;

use super::facts::{ContactFacts, UnansweredEnd};

/// Length of one interval bucket: 15 minutes.
pub const INTERVAL_MS: i64 = 15 * 60 * 1_000;

/// Which contacts service level divides by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ServiceLevelVariant {
    /// answered within T ÷ (answered + abandoned after the short-abandon
    /// threshold + ended by routing). The default.
    #[default]
    AbandonsPenalise,
    /// answered within T ÷ answered.
    AnsweredOnly,
}

impl ServiceLevelVariant {
    /// UNSPECIFIED is the default; `None` for values this build does not know.
    pub fn from_proto(value: i32) -> Option<ServiceLevelVariant> {
        match proto::ServiceLevelVariant::try_from(value).ok()? {
            proto::ServiceLevelVariant::Unspecified | proto::ServiceLevelVariant::AbandonsPenalise => {
                Some(ServiceLevelVariant::AbandonsPenalise)
            }
            proto::ServiceLevelVariant::AnsweredOnly => Some(ServiceLevelVariant::AnsweredOnly),
        }
    }
}

/// How many counters [`KpiCounts`] has.
pub const COUNTERS: usize = 25;

/// Additive per-contact counts: the counts of a set of contacts are the
/// sums of each contact's, so intervals add up to their range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KpiCounts {
    /// Contacts counted, whatever became of them (an interval without any
    /// is left out).
    pub contacts: i64,
    pub inbound: i64,
    pub offered: i64,
    pub answered: i64,
    /// Non-short customer abandons at any stage.
    pub abandoned: i64,
    pub short_abandoned: i64,
    /// Ended unanswered by routing (max wait with no overflow, or the
    /// queue closed): lost, never an abandon.
    pub timed_out: i64,
    /// Queued, never answered: abandoned after the short threshold or
    /// ended by routing.
    pub lost: i64,
    pub completed: i64,
    pub resolved: i64,
    pub waiting: i64,
    pub answered_within_threshold: i64,
    /// Σ wait of answered contacts, in milliseconds.
    pub total_answer_wait_ms: i64,
    /// Non-short abandons of inbound contacts (CAR's numerator, with
    /// `inbound_timed_out`).
    pub inbound_abandoned: i64,
    /// Inbound contacts ended unanswered by routing (CAR's numerator).
    pub inbound_timed_out: i64,
    /// Short abandons of inbound contacts (taken off CAR's denominator).
    pub inbound_short_abandoned: i64,
    /// Short abandons of queued contacts (taken off LCR's denominator).
    pub offered_short_abandoned: i64,
    /// Contacts completed after an answer: AHT's denominator.
    pub handled: i64,
    /// Σ handle time of handled contacts, in milliseconds: from the answer
    /// to the completion (talk and hold) plus the queue's wrap-up.
    pub total_handle_ms: i64,
    /// Resolved contacts whose customer did not come back within the
    /// first-contact window ([`ContactFacts::resolved_at_first_contact`]).
    pub resolved_first_contact: i64,
    /// Contacts with a survey answer, those scored 4 or 5, and the sum of
    /// their scores.
    pub surveyed: i64,
    pub satisfied: i64,
    pub total_survey_score: i64,
    /// Callbacks made: contacts offered as a callback that an agent
    /// answered (called the customer back).
    pub callbacks: i64,
    /// Contacts the tenant started (direction OUTBOUND).
    pub outbound: i64,
}

impl KpiCounts {
    /// Adds one contact's contribution.
    pub fn add_contact(&mut self, facts: &ContactFacts) {
        // Nothing known yet (a row made before its first fact is merged in):
        // not a contact any KPI counts.
        if facts.is_blank() {
            return;
        }
        let inbound = facts.inbound == Some(true);
        let offered = facts.queued_ms.is_some();
        // The wait starts when the contact entered a queue; a contact that
        // never did (left in self-service) waited since it was created.
        let wait_start_ms = facts.queued_ms.or(facts.created_ms);
        let waited_until = |end_ms: i64| wait_start_ms.map(|start_ms| end_ms.saturating_sub(start_ms).max(0));
        self.contacts += 1;
        self.inbound += i64::from(inbound);
        self.offered += i64::from(offered);
        if let Some(answered_ms) = facts.answered_ms {
            // Answered wins over a racing abandon: the customer was served.
            let wait_ms = waited_until(answered_ms).unwrap_or(0);
            self.answered += 1;
            self.total_answer_wait_ms = self.total_answer_wait_ms.saturating_add(wait_ms);
            self.answered_within_threshold += i64::from(wait_ms <= facts.service_level_threshold_ms());
        } else {
            match facts.unanswered_end() {
                Some(UnansweredEnd::CustomerLeft { at_ms }) => {
                    // An abandon whose wait cannot be measured is never
                    // short: an unknown wait must not hide a lost contact.
                    let short = waited_until(at_ms).is_some_and(|wait_ms| wait_ms < facts.short_abandon_threshold_ms());
                    if short {
                        self.short_abandoned += 1;
                        self.inbound_short_abandoned += i64::from(inbound);
                        self.offered_short_abandoned += i64::from(offered);
                    } else {
                        self.abandoned += 1;
                        self.inbound_abandoned += i64::from(inbound);
                        self.lost += i64::from(offered);
                    }
                }
                // The customer did not choose to leave, so it is never a
                // short abandon; it was not answered within T either.
                Some(UnansweredEnd::EndedByRouting) => {
                    self.timed_out += 1;
                    self.inbound_timed_out += i64::from(inbound);
                    self.lost += i64::from(offered);
                }
                None => self.waiting += i64::from(offered && facts.completed_ms.is_none()),
            }
        }
        if facts.completed_ms.is_some() {
            self.completed += 1;
            self.resolved += i64::from(facts.resolved == Some(true));
            self.resolved_first_contact += i64::from(facts.resolved_at_first_contact());
        }
        if let (Some(answered_ms), Some(completed_ms)) = (facts.answered_ms, facts.completed_ms) {
            let handle_ms =
                completed_ms.saturating_sub(answered_ms).max(0).saturating_add(facts.wrap_up_ms.unwrap_or(0));
            self.handled += 1;
            self.total_handle_ms = self.total_handle_ms.saturating_add(handle_ms);
        }
        if let Some(survey) = facts.survey {
            self.surveyed += 1;
            self.satisfied += i64::from(survey.satisfied());
            self.total_survey_score += i64::from(survey.score);
        }
        self.callbacks += i64::from(facts.callback_offered_ms.is_some() && facts.answered_ms.is_some());
        self.outbound += i64::from(facts.inbound == Some(false));
    }

    /// Takes another set's counts out (a contact's old contribution).
    pub fn subtract(&mut self, other: &KpiCounts) {
        for (field, value) in self.fields_mut().into_iter().zip(other.fields()) {
            *field = field.saturating_sub(value);
        }
    }

    /// Every counter, in a fixed order (the stores' column order).
    pub fn fields(&self) -> [i64; COUNTERS] {
        [
            self.contacts,
            self.inbound,
            self.offered,
            self.answered,
            self.abandoned,
            self.short_abandoned,
            self.timed_out,
            self.lost,
            self.completed,
            self.resolved,
            self.waiting,
            self.answered_within_threshold,
            self.total_answer_wait_ms,
            self.inbound_abandoned,
            self.inbound_timed_out,
            self.inbound_short_abandoned,
            self.offered_short_abandoned,
            self.handled,
            self.total_handle_ms,
            self.resolved_first_contact,
            self.surveyed,
            self.satisfied,
            self.total_survey_score,
            self.callbacks,
            self.outbound,
        ]
    }

    /// The counts of [`KpiCounts::fields`].
    pub fn from_fields(fields: [i64; COUNTERS]) -> KpiCounts {
        let mut counts = KpiCounts::default();
        for (field, value) in counts.fields_mut().into_iter().zip(fields) {
            *field = value;
        }
        counts
    }

    fn fields_mut(&mut self) -> [&mut i64; COUNTERS] {
        [
            &mut self.contacts,
            &mut self.inbound,
            &mut self.offered,
            &mut self.answered,
            &mut self.abandoned,
            &mut self.short_abandoned,
            &mut self.timed_out,
            &mut self.lost,
            &mut self.completed,
            &mut self.resolved,
            &mut self.waiting,
            &mut self.answered_within_threshold,
            &mut self.total_answer_wait_ms,
            &mut self.inbound_abandoned,
            &mut self.inbound_timed_out,
            &mut self.inbound_short_abandoned,
            &mut self.offered_short_abandoned,
            &mut self.handled,
            &mut self.total_handle_ms,
            &mut self.resolved_first_contact,
            &mut self.surveyed,
            &mut self.satisfied,
            &mut self.total_survey_score,
            &mut self.callbacks,
            &mut self.outbound,
        ]
    }

    /// Adds another set's counts (intervals into a range).
    pub fn add(&mut self, other: &KpiCounts) {
        for (field, value) in self.fields_mut().into_iter().zip(other.fields()) {
            *field = field.saturating_add(value);
        }
    }
}

/// `numerator / denominator`, 0 when the denominator is not positive.
fn rate(numerator: i64, denominator: i64) -> f64 {
    if denominator <= 0 {
        return 0.0;
    }
    numerator as f64 / denominator as f64
}

/// The KPIs of one set of contacts under one service-level variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KpiSummary {
    pub counts: KpiCounts,
    pub variant: ServiceLevelVariant,
}

impl KpiSummary {
    /// Call Abandon Rate.
    pub fn car(&self) -> f64 {
        let counts = &self.counts;
        rate(counts.inbound_abandoned + counts.inbound_timed_out, counts.inbound - counts.inbound_short_abandoned)
    }

    /// Lost Call Rate.
    pub fn lcr(&self) -> f64 {
        let counts = &self.counts;
        rate(counts.lost, counts.offered - counts.offered_short_abandoned)
    }

    /// Average Speed of Answer in nanoseconds, rounded down; exact integer
    /// arithmetic, 0 when nothing was answered.
    pub fn asa_nanos(&self) -> i64 {
        if self.counts.answered <= 0 {
            return 0;
        }
        let total_nanos = i128::from(self.counts.total_answer_wait_ms) * 1_000_000;
        i64::try_from(total_nanos / i128::from(self.counts.answered)).unwrap_or(i64::MAX)
    }

    /// First-contact resolution: resolved at first contact ÷ resolved.
    pub fn fcr(&self) -> f64 {
        rate(self.counts.resolved_first_contact, self.counts.resolved)
    }

    /// Customer satisfaction: satisfied ÷ surveyed.
    pub fn csat(&self) -> f64 {
        rate(self.counts.satisfied, self.counts.surveyed)
    }

    /// The mean survey score; 0 when nobody answered.
    pub fn average_survey_score(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let average = self.counts.total_survey_score as f64 / self.counts.surveyed as f64;
        if self.counts.surveyed > 0 { average } else { 0.0 }
    }

    /// Average handle time in milliseconds, rounded down; 0 when nothing
    /// was handled.
    pub fn aht_ms(&self) -> i64 {
        if self.counts.handled <= 0 {
            return 0;
        }
        self.counts.total_handle_ms / self.counts.handled
    }

    pub fn service_level(&self) -> f64 {
        let counts = &self.counts;
        let denominator = match self.variant {
            ServiceLevelVariant::AbandonsPenalise => counts.answered + counts.abandoned + counts.timed_out,
            ServiceLevelVariant::AnsweredOnly => counts.answered,
        };
        rate(counts.answered_within_threshold, denominator)
    }

    pub fn to_proto(&self) -> proto::KpiSummary {
        let counts = &self.counts;
        let asa_nanos = self.asa_nanos();
        proto::KpiSummary {
            inbound: counts.inbound,
            offered: counts.offered,
            answered: counts.answered,
            abandoned: counts.abandoned,
            short_abandoned: counts.short_abandoned,
            timed_out: counts.timed_out,
            lost: counts.lost,
            completed: counts.completed,
            resolved: counts.resolved,
            car: self.car(),
            lcr: self.lcr(),
            asa: Some(prost_types::Duration {
                seconds: asa_nanos / 1_000_000_000,
                nanos: i32::try_from(asa_nanos % 1_000_000_000).unwrap_or(0),
            }),
            service_level: self.service_level(),
            answered_within_threshold: counts.answered_within_threshold,
            waiting: counts.waiting,
            handled: counts.handled,
            fcr: self.fcr(),
            resolved_first_contact: counts.resolved_first_contact,
            // Depends on the range and the time: set by whoever knows them.
            fcr_provisional: false,
            aht: Some(prost_types::Duration {
                seconds: self.aht_ms() / 1_000,
                nanos: i32::try_from(self.aht_ms() % 1_000 * 1_000_000).unwrap_or(0),
            }),
            surveyed: counts.surveyed,
            satisfied: counts.satisfied,
            csat: self.csat(),
            average_survey_score: self.average_survey_score(),
        }
    }
}

/// Whether first-contact resolution of the contacts of one interval
/// (`None`: arrival unknown) may still fall at `now_ms`: some were
/// resolved, and the interval ended less than `window_ms` ago (the
/// tenant's longest window, [`super::settings::KpiSettings`]).
pub fn fcr_provisional(counts: &KpiCounts, interval_start_ms: Option<i64>, now_ms: i64, window_ms: i64) -> bool {
    counts.resolved > 0 && interval_start_ms.is_none_or(|start_ms| start_ms + INTERVAL_MS > now_ms - window_ms)
}

/// The KPIs of `facts`.
pub fn summarize<'a>(facts: impl IntoIterator<Item = &'a ContactFacts>, variant: ServiceLevelVariant) -> KpiSummary {
    let mut counts = KpiCounts::default();
    for contact_facts in facts {
        counts.add_contact(contact_facts);
    }
    KpiSummary { counts, variant }
}

/// The KPIs of the contacts that arrived in one 15-minute bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KpiInterval {
    /// Start of the bucket: a multiple of [`INTERVAL_MS`] since the epoch.
    pub start_ms: i64,
    pub summary: KpiSummary,
}

impl KpiInterval {
    pub fn to_proto(&self) -> proto::KpiInterval {
        proto::KpiInterval {
            start_time: Some(timestamp_from_millis(self.start_ms)),
            summary: Some(self.summary.to_proto()),
        }
    }
}

/// The start of the bucket `arrival_ms` falls in.
pub fn interval_start_ms(arrival_ms: i64) -> i64 {
    arrival_ms.div_euclid(INTERVAL_MS) * INTERVAL_MS
}

/// `facts` in 15-minute buckets by arrival, each summarised like a range.
/// Buckets without contacts are omitted; contacts whose arrival is not
/// known yet belong to no bucket. Sorted by start.
pub fn intervals<'a>(
    facts: impl IntoIterator<Item = &'a ContactFacts>,
    variant: ServiceLevelVariant,
) -> Vec<KpiInterval> {
    let mut counts_by_start: BTreeMap<i64, KpiCounts> = BTreeMap::new();
    for contact_facts in facts {
        let Some(arrival_ms) = contact_facts.arrival_ms() else {
            continue;
        };
        counts_by_start.entry(interval_start_ms(arrival_ms)).or_default().add_contact(contact_facts);
    }
    counts_by_start
        .into_iter()
        .map(|(start_ms, counts)| KpiInterval { start_ms, summary: KpiSummary { counts, variant } })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::facts::AbandonStage;
    use switchboard_core::{ContactId, TenantId};

    fn facts(number: u32) -> ContactFacts {
        let tenant = TenantId::parse("acme", "tenant").expect("tenant");
        let contact = ContactId::parse(&format!("ct_{number:04}"), "contact").expect("contact");
        let mut facts = ContactFacts::empty(tenant, contact);
        facts.inbound = Some(true);
        facts.created_ms = Some(1_000);
        facts.queued_ms = Some(1_000);
        facts
    }

    fn answered_after(number: u32, wait_ms: i64) -> ContactFacts {
        let mut answered = facts(number);
        answered.answered_ms = Some(1_000 + wait_ms);
        answered
    }

    fn abandoned_after(number: u32, wait_ms: i64) -> ContactFacts {
        let mut abandoned = facts(number);
        abandoned.abandoned_ms = Some(1_000 + wait_ms);
        abandoned.abandon_stage = Some(AbandonStage::Queue);
        abandoned
    }

    #[test]
    fn empty_sets_have_zero_rates() {
        let summary = summarize(std::iter::empty(), ServiceLevelVariant::default());
        assert_eq!(summary.counts, KpiCounts::default());
        let proto = summary.to_proto();
        assert_eq!((proto.car, proto.lcr, proto.service_level), (0.0, 0.0, 0.0));
        assert_eq!(proto.asa, Some(prost_types::Duration::default()));
    }

    #[test]
    fn rates_follow_the_definitions() {
        let all = [
            answered_after(1, 10_000),
            answered_after(2, 30_000),
            abandoned_after(3, 2_000),
            abandoned_after(4, 8_000),
            facts(5),
        ];
        let summary = summarize(&all, ServiceLevelVariant::AbandonsPenalise);
        let counts = summary.counts;
        assert_eq!((counts.inbound, counts.offered, counts.answered), (5, 5, 2));
        assert_eq!((counts.abandoned, counts.short_abandoned, counts.lost, counts.waiting), (1, 1, 1, 1));
        assert_eq!(counts.answered_within_threshold, 1);
        // One lost of five offered minus one short abandon.
        assert_eq!(summary.lcr(), 0.25);
        assert_eq!(summary.car(), 0.25);
        assert_eq!(summary.asa_nanos(), 20_000_000_000);
        // One within 20 s of two answered plus one non-short abandon.
        assert_eq!(summary.service_level(), 1.0 / 3.0);
        let answered_only = KpiSummary { variant: ServiceLevelVariant::AnsweredOnly, ..summary };
        assert_eq!(answered_only.service_level(), 0.5);
    }

    #[test]
    fn answered_wins_over_a_racing_abandon() {
        let mut raced = answered_after(1, 4_000);
        raced.abandoned_ms = Some(30_000);
        let counts = summarize(&[raced], ServiceLevelVariant::default()).counts;
        assert_eq!((counts.answered, counts.abandoned, counts.short_abandoned, counts.lost), (1, 0, 0, 0));
    }

    #[test]
    fn thresholds_are_per_contact_and_inclusive_for_service_level() {
        let mut at_threshold = answered_after(1, 15_000);
        at_threshold.service_level_threshold_ms = Some(15_000);
        let mut zero_short_threshold = abandoned_after(2, 0);
        zero_short_threshold.short_abandon_threshold_ms = Some(0);
        let counts = summarize(&[at_threshold, zero_short_threshold], ServiceLevelVariant::default()).counts;
        assert_eq!(counts.answered_within_threshold, 1);
        assert_eq!((counts.abandoned, counts.short_abandoned), (1, 0));
    }

    #[test]
    fn abandons_before_queueing_count_for_car_not_lcr() {
        let mut self_service = facts(1);
        self_service.queued_ms = None;
        self_service.abandoned_ms = Some(60_000);
        let mut unknown_wait = facts(2);
        unknown_wait.queued_ms = None;
        unknown_wait.created_ms = None;
        unknown_wait.abandoned_ms = Some(60_000);
        let summary = summarize(&[self_service, unknown_wait], ServiceLevelVariant::default());
        assert_eq!((summary.counts.abandoned, summary.counts.lost, summary.counts.offered), (2, 0, 0));
        assert_eq!(summary.car(), 1.0);
        assert_eq!(summary.lcr(), 0.0);
    }

    #[test]
    fn outbound_contacts_stay_out_of_car() {
        let mut outbound = abandoned_after(1, 60_000);
        outbound.inbound = Some(false);
        let summary = summarize(&[outbound, answered_after(2, 1_000)], ServiceLevelVariant::default());
        assert_eq!((summary.counts.inbound, summary.counts.abandoned), (1, 1));
        assert_eq!(summary.car(), 0.0);
        assert_eq!(summary.lcr(), 0.5);
    }

    fn ended_by_routing_after(number: u32, wait_ms: i64) -> ContactFacts {
        let mut ended = facts(number);
        ended.routing_ended_ms = Some(1_000 + wait_ms);
        ended.abandon_stage = Some(AbandonStage::Queue);
        ended
    }

    #[test]
    fn contacts_routing_ended_are_lost_but_not_abandoned() {
        // Closed on arrival (no wait at all) and timed out after a minute.
        let closed = ended_by_routing_after(1, 0);
        let timed_out = ended_by_routing_after(2, 60_000);
        let all = [closed, timed_out, answered_after(3, 10_000), abandoned_after(4, 8_000)];
        let summary = summarize(&all, ServiceLevelVariant::AbandonsPenalise);
        let counts = summary.counts;
        assert_eq!((counts.timed_out, counts.abandoned, counts.short_abandoned), (2, 1, 0), "never a short abandon");
        assert_eq!((counts.lost, counts.waiting, counts.answered), (3, 0, 1));
        assert_eq!(summary.car(), 0.75);
        assert_eq!(summary.lcr(), 0.75);
        // Not answered within T: in the denominator like a late abandon.
        assert_eq!(summary.service_level(), 0.25);
        let answered_only = KpiSummary { variant: ServiceLevelVariant::AnsweredOnly, ..summary };
        assert_eq!(answered_only.service_level(), 1.0);
        assert_eq!(summary.to_proto().timed_out, 2);
    }

    #[test]
    fn a_customer_who_left_before_routing_ended_the_contact_abandoned() {
        let mut left_first = ended_by_routing_after(1, 60_000);
        left_first.abandoned_ms = Some(1_000 + 2_000);
        let mut hung_up_after = ended_by_routing_after(2, 60_000);
        hung_up_after.abandoned_ms = Some(1_000 + 61_000);
        let mut ended_unqueued = ended_by_routing_after(3, 0);
        ended_unqueued.queued_ms = None;
        ended_unqueued.inbound = Some(false);
        let counts = summarize(&[left_first, hung_up_after, ended_unqueued], ServiceLevelVariant::default()).counts;
        assert_eq!((counts.short_abandoned, counts.abandoned, counts.timed_out), (1, 0, 2));
        assert_eq!((counts.lost, counts.inbound_timed_out, counts.offered), (1, 1, 2));
    }

    #[test]
    fn asa_is_exact_to_the_nanosecond() {
        let all = [answered_after(1, 1), answered_after(2, 1), answered_after(3, 0)];
        let asa = summarize(&all, ServiceLevelVariant::default()).to_proto().asa.expect("asa");
        assert_eq!((asa.seconds, asa.nanos), (0, 666_666));
    }

    #[test]
    fn intervals_bucket_by_arrival_and_skip_empty_ones() {
        let mut late = answered_after(2, 1_000);
        late.created_ms = Some(INTERVAL_MS * 3 + 5);
        late.queued_ms = Some(INTERVAL_MS * 3 + 5);
        late.answered_ms = Some(INTERVAL_MS * 3 + 1_005);
        let mut no_arrival = facts(3);
        no_arrival.created_ms = None;
        no_arrival.queued_ms = None;
        let buckets = intervals(&[late, answered_after(1, 1_000), no_arrival], ServiceLevelVariant::default());
        let starts: Vec<i64> = buckets.iter().map(|bucket| bucket.start_ms).collect();
        assert_eq!(starts, vec![0, INTERVAL_MS * 3]);
        assert!(buckets.iter().all(|bucket| bucket.summary.counts.answered == 1));
        assert_eq!(interval_start_ms(-1), -INTERVAL_MS);
    }
}
