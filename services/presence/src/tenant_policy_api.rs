//! A tenant's weight and limits between the access API's messages and the
//! credential store's [`TenantLimits`]: the operator's settings, checked on
//! the way in and named by field when refused.

use switchboard_core::Error;
use switchboard_core::time::{checked_duration_millis, duration_from_millis};
use switchboard_platform::credentials::{MAX_ROUTING_WEIGHT, TenantLimits};
use switchboard_proto::access::v1 as api;

pub(crate) fn weight_to_api(weight: u32) -> i32 {
    i32::try_from(weight).unwrap_or(i32::MAX)
}

pub(crate) fn weight_from_api(weight: i32) -> Result<u32, Error> {
    u32::try_from(weight)
        .ok()
        .filter(|weight| (1..=MAX_ROUTING_WEIGHT).contains(weight))
        .ok_or_else(|| Error::invalid_field("tenant.routing_weight", format!("must be 1-{MAX_ROUTING_WEIGHT}")))
}

pub(crate) fn limits_to_api(limits: &TenantLimits) -> api::TenantLimits {
    let count = |limit: Option<u32>| limit.map(|limit| i32::try_from(limit).unwrap_or(i32::MAX));
    api::TenantLimits {
        max_queues: count(limits.max_queues),
        max_agents: count(limits.max_agents),
        max_channels: count(limits.max_channels),
        max_waiting_contacts: count(limits.max_waiting_contacts),
        max_offer_timeout: limits.max_offer_timeout_ms.map(duration_from_millis),
        max_wrap_up: limits.max_wrap_up_ms.map(duration_from_millis),
    }
}

pub(crate) fn limits_from_api(limits: Option<&api::TenantLimits>) -> Result<TenantLimits, Error> {
    let Some(limits) = limits else { return Ok(TenantLimits::default()) };
    let count = |limit: Option<i32>, name: &str| {
        limit
            .map(|limit| {
                u32::try_from(limit).map_err(|_| {
                    Error::invalid_field(format!("tenant.limits.{name}"), "must not be negative (unset: no limit)")
                })
            })
            .transpose()
    };
    let time = |limit: Option<&prost_types::Duration>, name: &str| {
        limit
            .map(|limit| {
                checked_duration_millis(limit)
                    .map_err(|reason| Error::invalid_field(format!("tenant.limits.{name}"), reason))
            })
            .transpose()
    };
    Ok(TenantLimits {
        max_queues: count(limits.max_queues, "max_queues")?,
        max_agents: count(limits.max_agents, "max_agents")?,
        max_channels: count(limits.max_channels, "max_channels")?,
        max_waiting_contacts: count(limits.max_waiting_contacts, "max_waiting_contacts")?,
        max_offer_timeout_ms: time(limits.max_offer_timeout.as_ref(), "max_offer_timeout")?,
        max_wrap_up_ms: time(limits.max_wrap_up.as_ref(), "max_wrap_up")?,
    })
}

/// Sets the one limit `field` of `limits` (`limits.{field}` of an update
/// mask) to its value in `requested`.
pub(crate) fn set_limit(limits: &mut TenantLimits, requested: &TenantLimits, field: &str) -> Result<(), Error> {
    match field {
        "max_queues" => limits.max_queues = requested.max_queues,
        "max_agents" => limits.max_agents = requested.max_agents,
        "max_channels" => limits.max_channels = requested.max_channels,
        "max_waiting_contacts" => limits.max_waiting_contacts = requested.max_waiting_contacts,
        "max_offer_timeout" => limits.max_offer_timeout_ms = requested.max_offer_timeout_ms,
        "max_wrap_up" => limits.max_wrap_up_ms = requested.max_wrap_up_ms,
        other => return Err(Error::invalid_field("update_mask", format!("`limits.{other}` is not a limit"))),
    }
    Ok(())
}
