//! The outbound-message cases of the KPI store contract (see
//! [`super::contract`]).

use std::collections::BTreeMap;

use switchboard_core::{Error, MessageId, TenantId};
use switchboard_proto::common::v1::Channel;

use super::KpiStore;
use super::contract::expect_equal;
use crate::domain::messages::{OutboundMessage, count_by_channel};

/// 2025-12-01T00:00:00Z and 2026-01-01T00:00:00Z.
const DECEMBER_MS: i64 = 1_764_547_200_000;
const JANUARY_MS: i64 = 1_767_225_600_000;

/// Messages of two tenants, reported in two batches with a message again
/// in each (a replay, an edit's republication), one on the last
/// millisecond of the month and one on the first of the next: each counts
/// once, in its own month and tenant, as the reference count says; a
/// tenant's erasure leaves the other's.
pub async fn outbound_messages_count_once_per_month_and_tenant(store: &dyn KpiStore) -> Result<(), Error> {
    let suffix = switchboard_test_support::unique_suffix();
    let acme = TenantId::parse(&format!("messages-a-{suffix}"), "tenant")?;
    let globex = TenantId::parse(&format!("messages-g-{suffix}"), "tenant")?;
    let message = |tenant: &TenantId, channel: Option<Channel>, created_ms: i64| OutboundMessage {
        tenant: tenant.clone(),
        message: MessageId::generate(),
        channel,
        created_ms,
    };
    let first_sms = message(&acme, Some(Channel::Sms), DECEMBER_MS);
    let first = vec![
        first_sms.clone(),
        first_sms.clone(),
        message(&acme, Some(Channel::Email), JANUARY_MS - 1),
        message(&acme, None, DECEMBER_MS + 5),
        message(&globex, Some(Channel::Sms), DECEMBER_MS + 7),
    ];
    let again = OutboundMessage { created_ms: DECEMBER_MS + 60_000, ..first_sms.clone() };
    let second = vec![
        again,
        message(&acme, Some(Channel::Sms), JANUARY_MS),
        message(&acme, Some(Channel::Sms), DECEMBER_MS - 1),
    ];
    store.record_outbound_messages(&first).await?;
    store.record_outbound_messages(&second).await?;
    store.record_outbound_messages(&first).await?;
    let all: Vec<&OutboundMessage> = first.iter().chain(&second).collect();
    for (tenant, start_ms, end_ms, what) in [
        (&acme, DECEMBER_MS, JANUARY_MS, "acme's December"),
        (&acme, JANUARY_MS, JANUARY_MS + 86_400_000, "acme's January"),
        (&globex, DECEMBER_MS, JANUARY_MS, "globex's December"),
    ] {
        let expected = count_by_channel(all.iter().copied(), tenant, start_ms, end_ms);
        expect_equal(&store.outbound_messages(tenant, start_ms, end_ms).await?, &expected, what)?;
    }
    let december = BTreeMap::from([(None, 1), (Some(Channel::Sms), 1), (Some(Channel::Email), 1)]);
    expect_equal(&store.outbound_messages(&acme, DECEMBER_MS, JANUARY_MS).await?, &december, "the reference")?;
    store.erase_tenant(&acme).await?;
    expect_equal(&store.outbound_messages(&acme, 0, i64::MAX).await?, &BTreeMap::new(), "erased")?;
    let kept = BTreeMap::from([(Some(Channel::Sms), 1)]);
    expect_equal(&store.outbound_messages(&globex, 0, i64::MAX).await?, &kept, "the other tenant's kept")?;
    store.erase_tenant(&globex).await
}
