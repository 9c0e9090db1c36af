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

/// `tenant`'s resolved contacts (of `queue`, if given) and those resolved
/// at first contact.
async fn resolved_first_contact(
    store: &dyn KpiStore,
    tenant: &TenantId,
    queue: Option<QueueId>,
) -> Result<(i64, i64), Error> {
    let filter = FactsFilter { queue, ..FactsFilter::default() };
    let (counts, _) = summary_counts(store, tenant, &filter, 1_000, START_MS).await?;
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
    let resolved_first = |tenant: TenantId| async move { resolved_first_contact(store, &tenant, None).await };
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

/// One customer's resolved contacts, delivered out of order (the last
/// first): in support completed as `order-status`, two hours later in
/// sales as `billing-refund`, four hours later in support as
/// `billing-refund` (the stories' dispositions follow the ids). What
/// takes a resolution back depends on the tenant's scope: any contact (1
/// of 3 resolved at first contact), the same queue (2 of 3; support's
/// first taken back), the same disposition (2 of 3; sales' taken back).
/// A contact keeps the scope it was created under.
pub async fn each_contact_takes_its_tenants_first_contact_scope(store: &dyn KpiStore) -> Result<(), Error> {
    let suffix = switchboard_test_support::unique_suffix();
    let support = Some(QueueId::parse("support", "queue")?);
    let mut tenants = Vec::new();
    for (scope, expected, in_support) in [
        (FcrScope::AnyContact, (3, 1), (2, 1)),
        (FcrScope::SameQueue, (3, 2), (2, 1)),
        (FcrScope::SameDisposition, (3, 2), (2, 2)),
    ] {
        let tenant = TenantId::parse(&format!("scope-{}-{suffix}", scope.as_str().replace('_', "-")), "tenant")?;
        let settings = KpiSettings::default().with_fcr_scope(scope, 1_000);
        store.set_settings(&tenant, &settings).await?;
        expect_equal(&store.settings(&tenant).await?, &settings, "the scope as stored")?;
        let rule = store.fcr_rules().await?.get(&tenant).copied();
        expect_equal(&rule, &Some(FcrRule { window_ms: 7 * 86_400_000, scope }), "the tenant's rule")?;
        let later = [("ct_scope2011", "support", START_MS + 14_400_000)];
        apply_resolved_contacts(store, &tenant, &later).await?;
        let earlier = [("ct_scope0001", "support", START_MS), ("ct_scope1011", "sales", START_MS + 7_200_000)];
        apply_resolved_contacts(store, &tenant, &earlier).await?;
        let what = format!("resolved and resolved at first contact, scope {}", scope.as_str());
        expect_equal(&resolved_first_contact(store, &tenant, None).await?, &expected, &what)?;
        let support_only = resolved_first_contact(store, &tenant, support.clone()).await?;
        expect_equal(&support_only, &in_support, &format!("{what}, support only"))?;
        tenants.push((tenant, settings, expected));
    }
    for (tenant, settings, expected) in &tenants {
        store.set_settings(tenant, &settings.with_fcr_scope(FcrScope::AnyContact, 2_000)).await?;
        expect_equal(&resolved_first_contact(store, tenant, None).await?, expected, "contacts keep their scope")?;
        store.erase_tenant(tenant).await?;
    }
    Ok(())
}
