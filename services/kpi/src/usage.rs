//! Usage metering: what a tenant used in a calendar month, by channel
//! (`KpiService.GetUsage`, `GET /usage.csv`). Read from the buckets: a UTC
//! month is whole 15-minute intervals, so no contact is read one by one,
//! and the figures are the sums of the month's contacts' counts; outbound
//! messages are counted apart ([`crate::domain::messages`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use switchboard_core::names::{parse_tenant, tenant_name};
use switchboard_core::{Error, Principal, TenantId};
use switchboard_platform::auth::AccessControl;
use switchboard_proto::common::v1::Channel;
use switchboard_proto::kpi::v1 as proto;

use crate::domain::{FactsFilter, KpiCounts};
use crate::store::{KpiStore, counts_by_interval};

/// A calendar month, UTC: its first instant and the next month's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u8,
}

impl Month {
    /// `YYYY-MM`, a month of years 1970-9999.
    pub fn parse(value: &str, field: &str) -> Result<Month, Error> {
        let invalid = || Error::invalid_field(field, "must be `YYYY-MM`, e.g. 2026-12");
        let (year, month) = value.split_once('-').ok_or_else(invalid)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(invalid());
        }
        let (year, month): (i32, u8) = (year.parse().map_err(|_| invalid())?, month.parse().map_err(|_| invalid())?);
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(invalid());
        }
        Ok(Month { year, month })
    }

    /// Milliseconds since the epoch of the month's first instant.
    pub fn start_ms(self) -> i64 {
        days_from_civil(self.year, self.month) * 86_400_000
    }

    /// The first instant of the next month.
    pub fn end_ms(self) -> i64 {
        let next = if self.month == 12 {
            Month { year: self.year + 1, month: 1 }
        } else {
            Month { month: self.month + 1, ..self }
        };
        next.start_ms()
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:04}-{:02}", self.year, self.month)
    }
}

/// Days from 1970-01-01 to the first of `month` of `year` (proleptic
/// Gregorian; Howard Hinnant's civil-from-days, inverted).
fn days_from_civil(year: i32, month: u8) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn channel_usage(channel: Channel, counts: &KpiCounts, outbound_messages: i64) -> proto::ChannelUsage {
    let handle_ms = counts.total_handle_ms;
    proto::ChannelUsage {
        channel: channel as i32,
        contacts: counts.contacts,
        answered: counts.answered,
        handled: counts.handled,
        handle_time: Some(prost_types::Duration {
            seconds: handle_ms / 1_000,
            nanos: i32::try_from(handle_ms % 1_000 * 1_000_000).unwrap_or(0),
        }),
        handle_minutes: (handle_ms + 59_999) / 60_000,
        callbacks: counts.callbacks,
        outbound_contacts: counts.outbound,
        outbound_messages,
    }
}

/// Every channel a contact can be on.
const CHANNELS: [Channel; 8] = [
    Channel::Voice,
    Channel::Email,
    Channel::Chat,
    Channel::Sms,
    Channel::Messenger,
    Channel::Social,
    Channel::WebForm,
    Channel::Video,
];

/// `tenant`'s usage in `month`: a channel is listed when a contact arrived
/// or a message was sent on it.
pub async fn usage(store: &dyn KpiStore, tenant: &TenantId, month: Month) -> Result<proto::Usage, Error> {
    let messages = store.outbound_messages(tenant, month.start_ms(), month.end_ms()).await?;
    let mut channels = Vec::new();
    let mut total = KpiCounts::default();
    for channel in CHANNELS {
        let filter = FactsFilter {
            channel: Some(channel),
            arrival_start_ms: Some(month.start_ms()),
            arrival_end_ms: Some(month.end_ms()),
            ..FactsFilter::default()
        };
        // A month is whole intervals: nothing is read as facts.
        let mut counts = KpiCounts::default();
        counts_by_interval(store, tenant, &filter, 0).await?.values().for_each(|interval| counts.add(interval));
        let sent = messages.get(&Some(channel)).copied().unwrap_or(0);
        if counts.contacts > 0 || sent > 0 {
            total.add(&counts);
            channels.push(channel_usage(channel, &counts, sent));
        }
    }
    // Messages whose event did not say the channel count in the total only.
    let all_sent = messages.values().sum();
    Ok(proto::Usage {
        tenant: tenant_name(tenant),
        month: month.to_string(),
        channels,
        total: Some(channel_usage(Channel::Unspecified, &total, all_sent)),
    })
}

/// The checked tenant and month of a usage request, the caller allowed.
pub fn usage_request(
    access: &AccessControl,
    principal: &Principal,
    parent: &str,
    month: &str,
) -> Result<(TenantId, Month), Error> {
    let tenant = parse_tenant(parent, "parent")?;
    access.authorize_read(principal, &tenant)?;
    Ok((tenant, Month::parse(month, "month")?))
}

/// Usage as CSV: a header and one line per channel, then the total.
pub fn usage_csv(usage: &proto::Usage) -> String {
    let mut csv = String::from(
        "tenant,month,channel,contacts,answered,handled,handle_ms,handle_minutes,callbacks,outbound_contacts,\
         outbound_messages\n",
    );
    let total = usage.total.iter().map(|total| ("all", total));
    let rows = usage
        .channels
        .iter()
        .map(|channel| {
            let name = Channel::try_from(channel.channel).unwrap_or_default().as_str_name();
            (name.trim_start_matches("CHANNEL_"), channel)
        })
        .chain(total);
    for (name, row) in rows {
        let handle_ms =
            row.handle_time.as_ref().map_or(0, |time| time.seconds * 1_000 + i64::from(time.nanos) / 1_000_000);
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            usage.tenant.trim_start_matches("tenants/"),
            usage.month,
            name.to_lowercase(),
            row.contacts,
            row.answered,
            row.handled,
            handle_ms,
            row.handle_minutes,
            row.callbacks,
            row.outbound_contacts,
            row.outbound_messages
        ));
    }
    csv
}

#[derive(Debug, Deserialize)]
struct CsvQuery {
    tenant: String,
    month: String,
}

struct UsageExport {
    store: Arc<dyn KpiStore>,
    access: Arc<AccessControl>,
}

/// `GET /usage.csv?tenant=acme&month=2026-12`, signed in as for the API.
pub fn router(store: Arc<dyn KpiStore>, access: Arc<AccessControl>) -> Router {
    Router::new().route("/usage.csv", get(export)).with_state(Arc::new(UsageExport { store, access }))
}

async fn export(State(export): State<Arc<UsageExport>>, Query(query): Query<CsvQuery>, headers: HeaderMap) -> Response {
    let metadata = tonic::metadata::MetadataMap::from_headers(headers);
    let parent =
        if query.tenant.starts_with("tenants/") { query.tenant.clone() } else { format!("tenants/{}", query.tenant) };
    let answer = async {
        let principal = export.access.authenticate(&metadata)?;
        export.access.admit(&principal)?;
        let (tenant, month) =
            usage_request(&export.access, &principal, &parent, &query.month).map_err(parent_as_tenant)?;
        usage(export.store.as_ref(), &tenant, month).await
    };
    match answer.await {
        Ok(usage) => {
            let filename = format!(
                "attachment; filename=\"usage-{}-{}.csv\"",
                usage.tenant.trim_start_matches("tenants/"),
                usage.month
            );
            let headers =
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, filename)];
            (headers, usage_csv(&usage)).into_response()
        }
        Err(error) => crate::wallboard::refused(&error),
    }
}

/// An error about the API's `parent` as the export's query names it:
/// `tenant`.
fn parent_as_tenant(mut error: Error) -> Error {
    for violation in &mut error.field_violations {
        if violation.field == "parent" {
            violation.field = "tenant".to_owned();
        }
    }
    error.message = error.message.replace("parent", "tenant");
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exports_errors_name_its_query_parameter() {
        let error = parent_as_tenant(Error::invalid_field("parent", "must be `tenants/{tenant}`"));
        assert_eq!(error.field_violations[0].field, "tenant");
        assert!(!error.message.contains("parent"), "{}", error.message);
    }

    #[test]
    fn months_are_parsed_and_bounded_in_utc() {
        let december = Month::parse("2026-12", "month").expect("month");
        assert_eq!(december.start_ms(), 1_796_083_200_000, "2026-12-01T00:00:00Z");
        assert_eq!(december.end_ms(), 1_798_761_600_000, "2027-01-01T00:00:00Z");
        assert_eq!(
            Month::parse("2024-02", "month").expect("leap").end_ms()
                - Month::parse("2024-02", "month").expect("leap").start_ms(),
            29 * 86_400_000
        );
        assert_eq!(Month::parse("1970-01", "month").expect("epoch").start_ms(), 0);
        for bad in ["2026-13", "2026-00", "26-12", "2026-1", "2026/12", "", "1969-12"] {
            assert!(Month::parse(bad, "month").is_err(), "{bad}");
        }
    }
}
