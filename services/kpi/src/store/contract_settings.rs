//! The settings cases of the KPI store contract (see [`super::contract`]).

use switchboard_core::{ContactId, Error, QueueId, TenantId};
use switchboard_proto::common::v1::{Channel, Direction};

use super::contract::expect_equal;
use super::stories::{ContactStory, StoryOutcome};
use super::{KpiStore, apply_events_except, summary_counts};
use crate::domain::FactsFilter;
use crate::domain::settings::{FcrRule, FcrScope, KpiSettings};

/// 2025-12-01T00:00:00Z.
const START_MS: i64 = 1_764_547_200_000;

/// Applies, in the order given, the events of contacts answered and
/// completed as resolved: `(id, queue, created_ms)`; ids ending alike share
/// a customer.
async fn apply_resolved_contacts(
    store: &dyn KpiStore,
    tenant: &TenantId,
    contacts: &[(&str, &str, i64)],
) -> Result<(), Error> {
    let mut envelopes = Vec::new();
    for (contact, queue, created_ms) in contacts {
        let story = ContactStory {
            tenant: tenant.clone(),
            contact: ContactId::parse(contact, "contact")?,
            queue: QueueId::parse(queue, "queue")?,
            overflow_to: None,
            channel: Channel::Chat,
            direction: Direction::Inbound,
            created_ms: *created_ms,
            queue_delay_ms: Some(0),
            outcome: StoryOutcome::Answered { wait_ms: 1_000, completion: Some((30_000, true)) },
            short_abandon_threshold_ms: None,
            service_level_threshold_ms: None,
        };
        envelopes.extend(story.events().into_iter().map(|(_, envelope)| envelope));
    }
    let references: Vec<_> = envelopes.iter().collect();
    apply_events_except(store, &references, &|_| false).await
}

/// `tenant`'s resolved contacts and those resolved at first contact.
async fn resolved_first_contact(store: &dyn KpiStore, tenant: TenantId) -> Result<(i64, i64), Error> {
    let (counts, _) = summary_counts(store, &tenant, &FactsFilter::default(), 1_000, START_MS).await?;
    Ok((counts.resolved, counts.resolved_first_contact))
}

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
    let rules = store.fcr_rules().await?;
    let hourly_rule = rules.get(&hourly).map(|rule| rule.window_ms);
    expect_equal(&hourly_rule, &Some(3_600_000), "the hourly tenant's window")?;
    expect_equal(&rules.get(&weekly), &None, "no settings stored: the default")?;

    for tenant in [&hourly, &weekly] {
        let contacts = [("ct_window0001", "support", START_MS), ("ct_window1001", "support", START_MS + 7_200_000)];
        apply_resolved_contacts(store, tenant, &contacts).await?;
    }
    let resolved_first = |tenant: TenantId| resolved_first_contact(store, tenant);
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

/// One customer's resolved contacts in support, then sales two hours
/// later, then support again four hours later, delivered out of order (the
/// last first): with the scope "same queue" only the first support contact
/// is taken back (2 of 3 resolved at first contact); with the default any
/// later contact takes a resolution back (1 of 3). A contact keeps the
/// scope it was created under.
pub async fn each_contact_takes_its_tenants_first_contact_scope(store: &dyn KpiStore) -> Result<(), Error> {
    let suffix = switchboard_test_support::unique_suffix();
    let by_queue = TenantId::parse(&format!("scope-queue-{suffix}"), "tenant")?;
    let by_customer = TenantId::parse(&format!("scope-any-{suffix}"), "tenant")?;
    let same_queue = KpiSettings::default().with_fcr_scope(FcrScope::SameQueue, 1_000);
    store.set_settings(&by_queue, &same_queue).await?;
    expect_equal(&store.settings(&by_queue).await?, &same_queue, "the scope as stored")?;
    let rules = store.fcr_rules().await?;
    let expected_rule = FcrRule { window_ms: 7 * 86_400_000, scope: FcrScope::SameQueue };
    expect_equal(&rules.get(&by_queue), &Some(&expected_rule), "the scoped tenant's rule")?;
    for tenant in [&by_queue, &by_customer] {
        let later = [("ct_scope2001", "support", START_MS + 14_400_000)];
        apply_resolved_contacts(store, tenant, &later).await?;
        let earlier = [("ct_scope0001", "support", START_MS), ("ct_scope1001", "sales", START_MS + 7_200_000)];
        apply_resolved_contacts(store, tenant, &earlier).await?;
    }
    expect_equal(&resolved_first_contact(store, by_queue.clone()).await?, &(3, 2), "taken back in support only")?;
    expect_equal(&resolved_first_contact(store, by_customer.clone()).await?, &(3, 1), "taken back by any contact")?;
    store.set_settings(&by_queue, &same_queue.with_fcr_scope(FcrScope::AnyContact, 2_000)).await?;
    expect_equal(&resolved_first_contact(store, by_queue.clone()).await?, &(3, 2), "contacts keep their scope")?;
    for tenant in [&by_queue, &by_customer] {
        store.erase_tenant(tenant).await?;
    }
    Ok(())
}
