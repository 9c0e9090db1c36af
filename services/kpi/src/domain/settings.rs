//! A tenant's KPI settings (`KpiService.GetKpiSettings` and
//! `UpdateKpiSettings`): its first-contact resolution window.
//!
//! A contact takes the window in force when its events are applied (kept
//! in its facts, first write wins), so changing the window never rewrites
//! history; `switchboard kpi recompute` applies the current one to all.
//! Whether a figure is still provisional is judged by the longest window
//! the tenant ever had in force, so no figure is called final while a
//! contact under a longer window may still take it back.

use switchboard_core::names::tenant_name;
use switchboard_core::time::{duration_from_millis, timestamp_from_millis};
use switchboard_core::{Error, TenantId};
use switchboard_proto::kpi::v1 as proto;

use super::facts::FCR_WINDOW_MS;

/// The shortest first-contact window: an hour.
pub const MIN_FCR_WINDOW_MS: i64 = 3_600_000;
/// The longest first-contact window: 90 days.
pub const MAX_FCR_WINDOW_MS: i64 = 90 * 86_400_000;

/// One tenant's settings as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KpiSettings {
    /// `None`: the default, [`FCR_WINDOW_MS`].
    pub fcr_window_ms: Option<i64>,
    /// The longest window ever in force, the default included.
    pub longest_fcr_window_ms: i64,
    /// `None` until first updated.
    pub update_time_ms: Option<i64>,
}

impl Default for KpiSettings {
    fn default() -> KpiSettings {
        KpiSettings { fcr_window_ms: None, longest_fcr_window_ms: FCR_WINDOW_MS, update_time_ms: None }
    }
}

impl KpiSettings {
    /// The window new contacts take.
    pub fn fcr_window_ms(&self) -> i64 {
        self.fcr_window_ms.unwrap_or(FCR_WINDOW_MS)
    }

    /// These settings with the window set to `fcr_window_ms` (`None`: the
    /// default) at `now_ms`; the longest window grows with it.
    pub fn with_fcr_window(self, fcr_window_ms: Option<i64>, now_ms: i64) -> KpiSettings {
        let window = fcr_window_ms.unwrap_or(FCR_WINDOW_MS);
        KpiSettings {
            fcr_window_ms,
            longest_fcr_window_ms: self.longest_fcr_window_ms.max(window),
            update_time_ms: Some(now_ms),
        }
    }

    pub fn to_proto(&self, tenant: &TenantId) -> proto::KpiSettings {
        proto::KpiSettings {
            name: settings_name(tenant),
            fcr_window: self.fcr_window_ms.map(duration_from_millis),
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
