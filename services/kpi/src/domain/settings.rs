//! A tenant's KPI settings (`KpiService.GetKpiSettings` and
//! `UpdateKpiSettings`): its first-contact resolution window and scope.
//!
//! A contact takes the window and scope in force when its creation is
//! applied (kept in its facts), so changing them never rewrites history;
//! `switchboard kpi recompute` applies the current ones to all.
//! Whether a figure is still provisional is judged by the longest window
//! the tenant ever had in force, so no figure is called final while a
//! contact under a longer window may still take it back.

use switchboard_core::names::tenant_name;
use switchboard_core::time::{duration_from_millis, timestamp_from_millis};
use switchboard_core::{Error, TenantId};
use switchboard_proto::kpi::v1 as proto;

use super::fcr::FCR_WINDOW_MS;

/// The shortest first-contact window: an hour.
pub const MIN_FCR_WINDOW_MS: i64 = 3_600_000;
/// The longest first-contact window: 90 days.
pub const MAX_FCR_WINDOW_MS: i64 = 90 * 86_400_000;

/// Which of a customer's later contacts take a resolution at first
/// contact back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FcrScope {
    /// Any contact, on any channel and queue (the default).
    #[default]
    AnyContact,
    /// Only a contact that entered the same queue: the same topic.
    SameQueue,
    /// Only a contact an agent completed with the same disposition: the
    /// same outcome code, whatever the queue (a repeat that was never
    /// completed has none, and takes nothing back).
    SameDisposition,
}

impl FcrScope {
    /// Every scope; a contact is linked to its customer's others in each.
    pub const ALL: [FcrScope; 3] = [FcrScope::AnyContact, FcrScope::SameQueue, FcrScope::SameDisposition];

    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            FcrScope::AnyContact => "any_contact",
            FcrScope::SameQueue => "same_queue",
            FcrScope::SameDisposition => "same_disposition",
        }
    }

    pub fn parse(stored: &str) -> Option<FcrScope> {
        FcrScope::ALL.into_iter().find(|scope| scope.as_str() == stored)
    }

    pub fn to_proto(self) -> proto::FcrScope {
        match self {
            FcrScope::AnyContact => proto::FcrScope::AnyContact,
            FcrScope::SameQueue => proto::FcrScope::SameQueue,
            FcrScope::SameDisposition => proto::FcrScope::SameDisposition,
        }
    }

    /// The scope a request names; UNSPECIFIED is the default.
    pub fn from_proto(value: i32, field: &str) -> Result<FcrScope, Error> {
        match proto::FcrScope::try_from(value) {
            Ok(proto::FcrScope::Unspecified | proto::FcrScope::AnyContact) => Ok(FcrScope::AnyContact),
            Ok(proto::FcrScope::SameQueue) => Ok(FcrScope::SameQueue),
            Ok(proto::FcrScope::SameDisposition) => Ok(FcrScope::SameDisposition),
            Err(_) => Err(Error::invalid_field(field, format!("{value} is not an FcrScope"))),
        }
    }
}

/// What a new contact takes from its tenant's settings: its
/// first-contact window and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcrRule {
    pub window_ms: i64,
    pub scope: FcrScope,
}

impl Default for FcrRule {
    fn default() -> FcrRule {
        KpiSettings::default().fcr_rule()
    }
}

/// One tenant's settings as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KpiSettings {
    /// `None`: the default, [`FCR_WINDOW_MS`].
    pub fcr_window_ms: Option<i64>,
    pub fcr_scope: FcrScope,
    /// The longest window ever in force, the default included.
    pub longest_fcr_window_ms: i64,
    /// `None` until first updated.
    pub update_time_ms: Option<i64>,
}

impl Default for KpiSettings {
    fn default() -> KpiSettings {
        KpiSettings {
            fcr_window_ms: None,
            fcr_scope: FcrScope::AnyContact,
            longest_fcr_window_ms: FCR_WINDOW_MS,
            update_time_ms: None,
        }
    }
}

impl KpiSettings {
    /// The window new contacts take.
    pub fn fcr_window_ms(&self) -> i64 {
        self.fcr_window_ms.unwrap_or(FCR_WINDOW_MS)
    }

    /// What a contact arriving now takes.
    pub fn fcr_rule(&self) -> FcrRule {
        FcrRule { window_ms: self.fcr_window_ms(), scope: self.fcr_scope }
    }

    /// These settings with the window set to `fcr_window_ms` (`None`: the
    /// default) at `now_ms`; the longest window grows with it.
    pub fn with_fcr_window(self, fcr_window_ms: Option<i64>, now_ms: i64) -> KpiSettings {
        let window = fcr_window_ms.unwrap_or(FCR_WINDOW_MS);
        KpiSettings {
            fcr_window_ms,
            longest_fcr_window_ms: self.longest_fcr_window_ms.max(window),
            update_time_ms: Some(now_ms),
            ..self
        }
    }

    /// These settings with the scope set to `fcr_scope` at `now_ms`.
    pub fn with_fcr_scope(self, fcr_scope: FcrScope, now_ms: i64) -> KpiSettings {
        KpiSettings { fcr_scope, update_time_ms: Some(now_ms), ..self }
    }

    pub fn to_proto(&self, tenant: &TenantId) -> proto::KpiSettings {
        proto::KpiSettings {
            name: settings_name(tenant),
            fcr_window: self.fcr_window_ms.map(duration_from_millis),
            fcr_scope: self.fcr_scope.to_proto() as i32,
            update_time: self.update_time_ms.map(timestamp_from_millis),
        }
    }
}

/// `tenants/{tenant}/kpiSettings`.
pub fn settings_name(tenant: &TenantId) -> String {
    format!("{}/kpiSettings", tenant_name(tenant))
}

/// The tenant of a `tenants/{tenant}/kpiSettings` name.
pub fn parse_settings_name(name: &str, field: &str) -> Result<TenantId, Error> {
    let Some(parent) = name.strip_suffix("/kpiSettings") else {
        return Err(Error::invalid_field(field, "must look like `tenants/{tenant}/kpiSettings`"));
    };
    switchboard_core::names::parse_tenant(parent, field)
}

/// A window the API accepts: whole minutes, an hour to 90 days.
pub fn valid_fcr_window(window_ms: i64, field: &str) -> Result<i64, Error> {
    if window_ms % 60_000 != 0 || !(MIN_FCR_WINDOW_MS..=MAX_FCR_WINDOW_MS).contains(&window_ms) {
        return Err(Error::invalid_field(field, "must be whole minutes, from 1 hour to 90 days"));
    }
    Ok(window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_window_only_grows() {
        let settings = KpiSettings::default().with_fcr_window(Some(30 * 86_400_000), 1);
        assert_eq!(settings.longest_fcr_window_ms, 30 * 86_400_000);
        let shorter = settings.with_fcr_window(Some(MIN_FCR_WINDOW_MS), 2);
        assert_eq!((shorter.fcr_window_ms(), shorter.longest_fcr_window_ms), (MIN_FCR_WINDOW_MS, 30 * 86_400_000));
        let default = KpiSettings::default().with_fcr_window(Some(MIN_FCR_WINDOW_MS), 3);
        assert_eq!(default.longest_fcr_window_ms, FCR_WINDOW_MS, "contacts before it had the default");
    }

    #[test]
    fn scopes_round_trip_and_unknown_ones_are_refused() {
        for scope in FcrScope::ALL {
            assert_eq!(FcrScope::parse(scope.as_str()), Some(scope));
            assert_eq!(FcrScope::from_proto(scope.to_proto() as i32, "s").expect("known"), scope);
        }
        assert_eq!(FcrScope::from_proto(0, "s").expect("unspecified"), FcrScope::AnyContact);
        assert!(FcrScope::from_proto(99, "s").is_err());
        let scoped =
            KpiSettings::default().with_fcr_window(Some(MIN_FCR_WINDOW_MS), 1).with_fcr_scope(FcrScope::SameQueue, 2);
        assert_eq!(scoped.fcr_rule(), FcrRule { window_ms: MIN_FCR_WINDOW_MS, scope: FcrScope::SameQueue });
        assert_eq!(scoped.with_fcr_window(None, 3).fcr_scope, FcrScope::SameQueue, "a window change keeps the scope");
    }

    #[test]
    fn windows_are_whole_minutes_from_an_hour_to_ninety_days() {
        assert!(valid_fcr_window(MIN_FCR_WINDOW_MS, "w").is_ok());
        assert!(valid_fcr_window(MAX_FCR_WINDOW_MS, "w").is_ok());
        assert!(valid_fcr_window(MIN_FCR_WINDOW_MS - 60_000, "w").is_err());
        assert!(valid_fcr_window(MAX_FCR_WINDOW_MS + 60_000, "w").is_err());
        assert!(valid_fcr_window(MIN_FCR_WINDOW_MS + 1, "w").is_err());
        let tenant = parse_settings_name("tenants/acme/kpiSettings", "name").expect("name");
        assert_eq!(settings_name(&tenant), "tenants/acme/kpiSettings");
        assert!(parse_settings_name("tenants/acme", "name").is_err());
    }
}
