//! Tenants' quotas (the operator's [`TenantLimits`](crate::credentials::TenantLimits)),
//! checked where a resource is made. A check reads the count, then the
//! store creates: two creates racing at the limit may pass it by one.

use switchboard_core::names::tenant_name;
use switchboard_core::{Error, TenantId};

/// Ok while `tenant`, holding `existing` of `kind` (e.g. "queues"), may
/// have one more under `limit`; RESOURCE_EXHAUSTED `QUOTA_EXCEEDED`
/// naming the limit otherwise.
pub fn admit_one_more(tenant: &TenantId, kind: &str, existing: usize, limit: Option<u32>) -> Result<(), Error> {
    let Some(limit) = limit else { return Ok(()) };
    if existing < usize::try_from(limit).unwrap_or(usize::MAX) {
        return Ok(());
    }
    Err(Error::resource_exhausted(format!(
        "tenant `{tenant}` has {existing} {kind}, its limit (`limits.max_{kind}`, set by the operator) is {limit}"
    ))
    .with_reason("QUOTA_EXCEEDED")
    .with_resource(tenant_name(tenant)))
}

/// How many items a store must count to decide [`admit_one_more`]: the
/// limit itself (`None`: no need to count).
pub fn count_needed(limit: Option<u32>) -> Option<usize> {
    limit.map(|limit| usize::try_from(limit).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_admits_up_to_itself_and_names_what_is_full() {
        let acme = TenantId::parse("acme", "t").expect("tenant");
        assert!(admit_one_more(&acme, "queues", 1_000, None).is_ok(), "no limit");
        assert!(admit_one_more(&acme, "queues", 2, Some(3)).is_ok());
        let refused = admit_one_more(&acme, "queues", 3, Some(3)).expect_err("full");
        assert_eq!(refused.code, switchboard_core::ErrorCode::ResourceExhausted);
        assert_eq!(refused.explicit_reason, Some("QUOTA_EXCEEDED"));
        assert!(refused.message.contains("max_queues"), "{}", refused.message);
        assert!(admit_one_more(&acme, "channels", 0, Some(0)).is_err(), "a limit of 0 allows none");
    }
}
