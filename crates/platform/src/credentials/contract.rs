//! The contract every [`CredentialStore`] meets: the in-memory store runs
//! it in unit tests, the PostgreSQL one in `tests/credentials.rs`. Each
//! check uses tenants and keys of its own, so all may share one store.

use anyhow::{Context, ensure};
use switchboard_core::{AgentId, ErrorCode, TenantId};

use super::{
    ApiKeyId, CredentialStore, DeletionProgress, ERASING_SERVICES, KeyHolder, KeyRecord, TenantChange, TenantLimits,
    TenantPolicy, TenantRecord, new_secret, secret_prefix,
};
use crate::auth::hash_api_key;

/// Runs every check of the contract.
pub async fn run_all(store: &dyn CredentialStore) -> anyhow::Result<()> {
    tenants_are_created_once_changed_and_listed(store).await.context("tenants_are_created_once_changed_and_listed")?;
    keys_are_stored_by_digest_revoked_for_good_and_rotated(store)
        .await
        .context("keys_are_stored_by_digest_revoked_for_good_and_rotated")?;
    every_change_moves_the_revision_and_shows_in_the_snapshot(store)
        .await
        .context("every_change_moves_the_revision_and_shows_in_the_snapshot")?;
    the_audit_keeps_every_change_newest_first(store).await.context("the_audit_keeps_every_change_newest_first")?;
    a_tenant_policy_is_kept_whole_and_replaced_whole(store)
        .await
        .context("a_tenant_policy_is_kept_whole_and_replaced_whole")?;
    a_deleted_tenant_loses_its_keys_and_is_deleted_once_every_service_erased(store)
        .await
        .context("a_deleted_tenant_loses_its_keys_and_is_deleted_once_every_service_erased")?;
    Ok(())
}

/// Beginning a deletion revokes the tenant's keys (not other tenants') in
/// the same step; the tenant is deleted when the last of
/// [`ERASING_SERVICES`] records its erasure, whatever the order and however
/// often each records; the record stays, so the id is not taken again; the
/// audit loses the tenant's records but the deletion's own.
pub async fn a_deleted_tenant_loses_its_keys_and_is_deleted_once_every_service_erased(
    store: &dyn CredentialStore,
) -> anyhow::Result<()> {
    let tenant = fresh_tenant("deleted")?;
    let bystander = fresh_tenant("bystander")?;
    store.create_tenant(&tenant_record(&tenant, 1_000)).await?;
    store.create_tenant(&tenant_record(&bystander, 1_000)).await?;
    let own_key = key_record(KeyHolder::Integration(tenant.clone()), &new_secret(), 1_000);
    let other_key = key_record(KeyHolder::TenantAdmin(bystander.clone()), &new_secret(), 1_000);
    store.create_key(&own_key).await?;
    store.create_key(&other_key).await?;
    let premature = store.record_erasure(&tenant, "kpi", 1_500).await;
    ensure!(
        premature.as_ref().is_err_and(|error| error.code == ErrorCode::FailedPrecondition),
        "no erasure is recorded for a tenant nobody deletes: {premature:?}"
    );
    let audit = |action: &str, resource: String| super::AuditEntry {
        sequence: 0,
        tenant: Some(tenant.clone()),
        actor: "operator".to_owned(),
        action: action.to_owned(),
        resource,
        before: None,
        after: None,
        time_ms: 1_000,
    };
    let queue = format!("tenants/{tenant}/queues/support");
    store.append_audit(&audit("switchboard.routing.v1.RoutingService/CreateQueue", queue)).await?;
    let deletion_record = store
        .append_audit(&audit("switchboard.access.v1.AccessService/DeleteTenant", format!("tenants/{tenant}")))
        .await?;

    let revision = store.revision().await?;
    let deleting = store.begin_deletion(&tenant, 2_000).await?;
    ensure!(store.revision().await? > revision, "beginning moves the revision");
    let deletion = deleting.deletion.clone().context("being deleted")?;
    ensure!(deletion.request_time_ms == 2_000 && deletion.pending() == ERASING_SERVICES, "{deletion:?}");
    let again = store.begin_deletion(&tenant, 3_000).await?;
    ensure!(again == deleting, "beginning again changes nothing: {again:?}");
    ensure!(store.get_key(&own_key.id).await?.context("kept")?.revoke_time_ms == Some(2_000), "its key revoked");
    ensure!(store.get_key(&other_key.id).await?.context("kept")?.revoke_time_ms.is_none(), "others' keys work");

    let (last, others) = ERASING_SERVICES.split_last().context("services")?;
    for (index, service) in others.iter().rev().enumerate() {
        let at = 4_000 + i64::try_from(index)?;
        let recorded = store.record_erasure(&tenant, service, at).await?;
        let twice = store.record_erasure(&tenant, service, at + 100).await?;
        ensure!(twice == recorded, "recording again changes nothing");
        let pending = recorded.deletion.context("still being deleted")?.pending();
        ensure!(!pending.contains(service) && pending.contains(last), "{service}: {pending:?}");
    }
    let deleted = store.record_erasure(&tenant, last, 9_000).await?;
    let progress = deleted.deletion.clone().context("deleted")?.progress;
    ensure!(progress == DeletionProgress::Deleted { delete_time_ms: 9_000 }, "{progress:?}");
    ensure!(store.record_erasure(&tenant, last, 9_500).await? == deleted, "after completion nothing changes");
    let snapshot = store.snapshot().await?;
    ensure!(snapshot.tenants.contains(&deleted), "the snapshot carries the tombstone");
    for with_deleted in [false, true] {
        let listed = store.list_tenants(None, 100_000, with_deleted).await?.iter().any(|listed| listed.id == tenant);
        ensure!(listed == with_deleted, "listed only when deleted tenants are asked for ({with_deleted})");
    }
    let reused = store.create_tenant(&tenant_record(&tenant, 10_000)).await;
    ensure!(reused.is_err_and(|error| error.code == ErrorCode::AlreadyExists), "the id is never taken again");

    store.erase_audit(&tenant).await?;
    let kept: Vec<String> =
        store.list_audit(Some(&tenant), None, 100).await?.into_iter().map(|entry| entry.action).collect();
    ensure!(kept == ["switchboard.access.v1.AccessService/DeleteTenant"], "only the tenant's own: {kept:?}");
    let next = store.append_audit(&audit("switchboard.access.v1.AccessService/GetTenant", String::new())).await?;
    ensure!(next > deletion_record, "sequences are never reused after an erasure: {next} after {deletion_record}");
    let missing = store.begin_deletion(&fresh_tenant("absent")?, 1).await;
    ensure!(missing.is_err_and(|error| error.code == ErrorCode::NotFound), "an unknown tenant is NOT_FOUND");
    Ok(())
}

/// The operator's weight and limits come back as created; a change with a
/// policy replaces all of it (a limit it leaves unset is lifted), one
/// without leaves it alone.
pub async fn a_tenant_policy_is_kept_whole_and_replaced_whole(store: &dyn CredentialStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("policy")?;
    let policy = TenantPolicy {
        routing_weight: 7,
        limits: TenantLimits {
            max_queues: Some(3),
            max_agents: Some(40),
            max_channels: Some(0),
            max_waiting_contacts: Some(250),
            max_offer_timeout_ms: Some(20_000),
            max_wrap_up_ms: Some(60_000),
        },
    };
    store.create_tenant(&TenantRecord { policy: policy.clone(), ..tenant_record(&tenant, 1_000) }).await?;
    ensure!(store.get_tenant(&tenant).await?.is_some_and(|record| record.policy == policy), "as created");
    let renamed = TenantChange { display_name: Some("Renamed".to_owned()), ..TenantChange::default() };
    let renamed = store.update_tenant(&tenant, &renamed, 2_000).await?;
    ensure!(renamed.policy == policy, "a change without a policy keeps it: {renamed:?}");
    let replacement = TenantPolicy {
        routing_weight: 2,
        limits: TenantLimits { max_waiting_contacts: Some(10), ..TenantLimits::default() },
    };
    let replaced = TenantChange { policy: Some(replacement.clone()), ..TenantChange::default() };
    let replaced = store.update_tenant(&tenant, &replaced, 3_000).await?;
    ensure!(replaced.policy == replacement && replaced.display_name == "Renamed", "replaced whole: {replaced:?}");
    let snapshot = store.snapshot().await?;
    ensure!(
        snapshot.tenants.iter().any(|record| record.id == tenant && record.policy == replacement),
        "the snapshot carries it"
    );
    Ok(())
}

/// Audit entries come back as stored (before and after intact), newest
/// first, per tenant when asked, paged by sequence.
pub async fn the_audit_keeps_every_change_newest_first(store: &dyn CredentialStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("audit")?;
    let other = fresh_tenant("audit-other")?;
    let entry = |tenant: &TenantId, resource: &str, after: &[u8]| super::AuditEntry {
        sequence: 0,
        tenant: Some(tenant.clone()),
        actor: "tenant-admin".to_owned(),
        action: "switchboard.routing.v1.RoutingService/CreateQueue".to_owned(),
        resource: resource.to_owned(),
        before: None,
        after: Some(prost_types::Any { type_url: "type.googleapis.com/x.Y".to_owned(), value: after.to_vec() }),
        time_ms: 1_000,
    };
    let first = store.append_audit(&entry(&tenant, "q1", b"one")).await?;
    let elsewhere = store.append_audit(&entry(&other, "q2", b"two")).await?;
    let last = store.append_audit(&entry(&tenant, "q3", b"three")).await?;
    ensure!(first < elsewhere && elsewhere < last, "sequences increase: {first} {elsewhere} {last}");
    let listed = store.list_audit(Some(&tenant), None, 10).await?;
    let resources: Vec<&str> = listed.iter().map(|entry| entry.resource.as_str()).collect();
    ensure!(resources == ["q3", "q1"], "the tenant's, newest first: {resources:?}");
    ensure!(listed[0] == super::AuditEntry { sequence: last, ..entry(&tenant, "q3", b"three") }, "as stored");
    let page = store.list_audit(Some(&tenant), Some(last), 10).await?;
    ensure!(page.iter().map(|entry| entry.sequence).eq([first]), "before a sequence: {page:?}");
    let everything = store.list_audit(None, None, 1_000).await?;
    ensure!(everything.iter().any(|entry| entry.sequence == elsewhere), "all tenants' without a filter");
    Ok(())
}

fn fresh_tenant(label: &str) -> anyhow::Result<TenantId> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    Ok(TenantId::parse(&format!("{label}-{}", &suffix[..12]), "tenant")?)
}

fn tenant_record(id: &TenantId, at_ms: i64) -> TenantRecord {
    TenantRecord {
        id: id.clone(),
        display_name: format!("{id} Ltd"),
        suspended: false,
        policy: TenantPolicy::default(),
        create_time_ms: at_ms,
        update_time_ms: at_ms,
        deletion: None,
    }
}

fn key_record(holder: KeyHolder, secret: &str, at_ms: i64) -> KeyRecord {
    KeyRecord {
        id: ApiKeyId::generate(),
        display_name: "integration".to_owned(),
        holder,
        expire_time_ms: None,
        create_time_ms: at_ms,
        revoke_time_ms: None,
        secret_sha256: hash_api_key(secret),
        secret_prefix: secret_prefix(secret),
        previous_secret: None,
    }
}

/// A tenant id is taken once; a change applies only what it names; a
/// listing pages by id.
pub async fn tenants_are_created_once_changed_and_listed(store: &dyn CredentialStore) -> anyhow::Result<()> {
    let first = fresh_tenant("a")?;
    let second = fresh_tenant("b")?;
    store.create_tenant(&tenant_record(&first, 1_000)).await?;
    store.create_tenant(&tenant_record(&second, 1_000)).await?;
    let again = store.create_tenant(&tenant_record(&first, 2_000)).await;
    ensure!(again.is_err_and(|error| error.code == ErrorCode::AlreadyExists), "an id is taken once");
    let suspended =
        store.update_tenant(&first, &TenantChange { suspended: Some(true), ..TenantChange::default() }, 3_000).await?;
    ensure!(
        suspended.suspended && suspended.display_name == format!("{first} Ltd"),
        "only what it names: {suspended:?}"
    );
    ensure!((suspended.create_time_ms, suspended.update_time_ms) == (1_000, 3_000), "{suspended:?}");
    let renamed = TenantChange { display_name: Some("First".to_owned()), ..TenantChange::default() };
    let renamed = store.update_tenant(&first, &renamed, 4_000).await?;
    ensure!(renamed.suspended && renamed.display_name == "First", "{renamed:?}");
    ensure!(store.get_tenant(&first).await? == Some(renamed), "read back");
    let unknown = fresh_tenant("c")?;
    let missing = store.update_tenant(&unknown, &TenantChange::default(), 5_000).await;
    ensure!(missing.is_err_and(|error| error.code == ErrorCode::NotFound), "an unknown tenant is NOT_FOUND");
    ensure!(store.get_tenant(&unknown).await?.is_none(), "and is not made");
    let listed = store.list_tenants(None, 1_000, false).await?;
    let ours: Vec<&TenantId> =
        listed.iter().map(|tenant| &tenant.id).filter(|id| [&first, &second].contains(id)).collect();
    ensure!(ours == [&first, &second], "by id: {ours:?}");
    let after_first = store.list_tenants(Some(&first), 1, false).await?;
    ensure!(after_first.first().is_some_and(|tenant| tenant.id > first), "after: {after_first:?}");
    Ok(())
}

/// A key is stored with its secret's digest only; revoking is for good and
/// idempotent; rotating keeps the old digest as `previous` and a revoked
/// key cannot be rotated; listings filter by tenant.
pub async fn keys_are_stored_by_digest_revoked_for_good_and_rotated(store: &dyn CredentialStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("keys")?;
    let secret = new_secret();
    let admin = key_record(KeyHolder::TenantAdmin(tenant.clone()), &secret, 1_000);
    let agent = key_record(KeyHolder::Agent(AgentId::parse("kim", "agent")?), &new_secret(), 1_000);
    store.create_key(&admin).await?;
    store.create_key(&agent).await?;
    let read = store.get_key(&admin.id).await?.context("stored")?;
    ensure!(read == admin, "read back: {read:?}");
    ensure!(read.secret_sha256 != secret && read.secret_sha256 == hash_api_key(&secret), "only the digest is kept");
    let of_tenant = store.list_keys(Some(&tenant), None, 100).await?;
    ensure!(of_tenant == [admin.clone()], "the tenant's keys only: {of_tenant:?}");

    let new_secret_value = new_secret();
    let rotated =
        store.rotate_key(&admin.id, &hash_api_key(&new_secret_value), &secret_prefix(&new_secret_value), 9_000).await?;
    ensure!(rotated.secret_sha256 == hash_api_key(&new_secret_value), "{rotated:?}");
    let previous = rotated.previous_secret.as_ref().context("the old secret is kept")?;
    ensure!(previous.sha256 == hash_api_key(&secret) && previous.expire_time_ms == 9_000, "{previous:?}");

    let revoked = store.revoke_key(&admin.id, 5_000).await?;
    ensure!(revoked.revoke_time_ms == Some(5_000), "{revoked:?}");
    let again = store.revoke_key(&admin.id, 6_000).await?;
    ensure!(again.revoke_time_ms == Some(5_000), "revoking again changes nothing: {again:?}");
    let refused = store.rotate_key(&admin.id, &hash_api_key(&new_secret()), "sbk_00000000", 9_000).await;
    ensure!(refused.is_err_and(|error| error.code == ErrorCode::FailedPrecondition), "a revoked key is not rotated");
    let unknown = ApiKeyId::generate();
    ensure!(store.revoke_key(&unknown, 1).await.is_err_and(|error| error.code == ErrorCode::NotFound), "unknown");
    ensure!(store.get_key(&unknown).await?.is_none(), "unknown");
    Ok(())
}

/// Every change moves the revision forward, and a snapshot taken after it
/// holds it.
pub async fn every_change_moves_the_revision_and_shows_in_the_snapshot(
    store: &dyn CredentialStore,
) -> anyhow::Result<()> {
    let tenant = fresh_tenant("rev")?;
    let start = store.revision().await?;
    store.create_tenant(&tenant_record(&tenant, 1_000)).await?;
    let after_tenant = store.revision().await?;
    ensure!(after_tenant > start, "a new tenant: {start} -> {after_tenant}");
    let key = key_record(KeyHolder::TenantReader(tenant.clone()), &new_secret(), 1_000);
    store.create_key(&key).await?;
    let after_key = store.revision().await?;
    ensure!(after_key > after_tenant, "a new key");
    store.revoke_key(&key.id, 2_000).await?;
    let after_revoke = store.revision().await?;
    ensure!(after_revoke > after_key, "a revocation");
    let snapshot = store.snapshot().await?;
    ensure!(snapshot.revision >= after_revoke, "the snapshot is of a revision at least as late");
    ensure!(snapshot.tenants.iter().any(|record| record.id == tenant), "holds the tenant");
    let held = snapshot.keys.iter().find(|record| record.id == key.id).context("holds the key")?;
    ensure!(held.revoke_time_ms == Some(2_000), "as revoked: {held:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        super::run_all(&super::super::MemoryCredentialStore::new()).await.expect("contract");
    }
}
