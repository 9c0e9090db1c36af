//! The settings cases of the KPI store contract (see [`super::contract`]).

use switchboard_core::{ContactId, Error, QueueId, TenantId};
use switchboard_proto::common::v1::{Channel, Direction};

use super::contract::expect_equal;
use super::stories::{ContactStory, StoryOutcome};
use super::{KpiStore, apply_events_except, summary_counts};
use crate::domain::FactsFilter;
use crate::domain::settings::KpiSettings;

/// A resolved contact and its customer's next one two hours later, of a
/// tenant whose window is an hour and of one on the default 7 days: only
/// the first is resolved at first contact. Settings read back as stored,
/// the longest window kept, and erasing a tenant forgets them.
pub async fn each_contact_takes_its_tenants_first_contact_window(store: &dyn KpiStore) -> Result<(), Error> {
    let suffix = switchboard_test_support::unique_suffix();
    let hourly = TenantId::parse(&format!("window-hour-{suffix}"), "tenant")?;
    let weekly = TenantId::parse(&format!("window-week-{suffix}"), "tenant")?;
    expect_equal(&store.settings(&hourly).await?, &KpiSettings::default(), "defaults before any change")?;
    let hour = KpiSettings::default().with_fcr_window(Some(3_600_000), 1_000);
    store.set_settings(&hourly, &hour).await?;
    expect_equal(&store.settings(&hourly).await?, &hour, "the settings as stored")?;
    let windows = store.fcr_windows().await?;
    expect_equal(&windows.get(&hourly), &Some(&3_600_000), "the hourly tenant's window")?;
    expect_equal(&windows.get(&weekly), &None, "no window set: the default")?;

    let start_ms = 1_764_547_200_000; // 2025-12-01T00:00:00Z
    for tenant in [&hourly, &weekly] {
        let mut envelopes = Vec::new();
        for (contact, created_ms) in [("ct_window0001", start_ms), ("ct_window1001", start_ms + 7_200_000)] {
            let story = ContactStory {
                tenant: tenant.clone(),
                contact: ContactId::parse(contact, "contact")?,
                queue: QueueId::parse("support", "queue")?,
                overflow_to: None,
                channel: Channel::Chat,
                direction: Direction::Inbound,
                created_ms,
                queue_delay_ms: Some(0),
                outcome: StoryOutcome::Answered { wait_ms: 1_000, completion: Some((30_000, true)) },
                short_abandon_threshold_ms: None,
                service_level_threshold_ms: None,
            };
            envelopes.extend(story.events().into_iter().map(|(_, envelope)| envelope));
        }
        let references: Vec<_> = envelopes.iter().collect();
        apply_events_except(store, &references, &|_| false).await?;
    }
    let resolved_first = |tenant: TenantId| async move {
        let (counts, _) = summary_counts(store, &tenant, &FactsFilter::default(), 1_000, start_ms).await?;
        Ok::<_, Error>((counts.resolved, counts.resolved_first_contact))
    };
    expect_equal(&resolved_first(hourly.clone()).await?, &(2, 2), "back after the hour: resolved at first contact")?;
    expect_equal(&resolved_first(weekly.clone()).await?, &(2, 1), "back within the week: not resolved at first")?;

    let shorter = store.settings(&hourly).await?.with_fcr_window(None, 2_000);
    store.set_settings(&hourly, &shorter).await?;
    let stored = store.settings(&hourly).await?;
    expect_equal(&(stored.fcr_window_ms, stored.longest_fcr_window_ms), &(None, 7 * 86_400_000), "back to default")?;
    expect_equal(&resolved_first(hourly.clone()).await?, &(2, 2), "contacts keep the window they took")?;
    store.erase_tenant(&hourly).await?;
    expect_equal(&store.settings(&hourly).await?, &KpiSettings::default(), "an erased tenant's settings are gone")
}
