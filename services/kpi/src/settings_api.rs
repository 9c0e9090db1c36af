//! `KpiService.GetKpiSettings` and `UpdateKpiSettings`: a tenant's KPI
//! settings (see [`crate::domain::settings`]).

use switchboard_core::time::{checked_duration_millis, now_millis};
use switchboard_core::{Error, Principal};
use switchboard_platform::auth::AccessControl;
use switchboard_proto::kpi::v1 as proto;

use crate::domain::settings::{FcrScope, parse_settings_name, valid_fcr_window};
use crate::store::KpiStore;

pub async fn get_settings(
    store: &dyn KpiStore,
    access: &AccessControl,
    principal: &Principal,
    request: &proto::GetKpiSettingsRequest,
) -> Result<proto::KpiSettings, Error> {
    let tenant = parse_settings_name(&request.name, "name")?;
    access.authorize_read(principal, &tenant)?;
    Ok(store.settings(&tenant).await?.to_proto(&tenant))
}

/// Changes the fields `update_mask` names, nothing else.
pub async fn update_settings(
    store: &dyn KpiStore,
    access: &AccessControl,
    principal: &Principal,
    request: &proto::UpdateKpiSettingsRequest,
) -> Result<proto::KpiSettings, Error> {
    let Some(requested) = &request.settings else {
        return Err(Error::missing_field("settings"));
    };
    let tenant = parse_settings_name(&requested.name, "settings.name")?;
    access.authorize_write(principal, &tenant)?;
    let paths = request.update_mask.as_ref().map(|mask| mask.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid_field("update_mask", "must name the fields to change: `fcr_window`, `fcr_scope`"));
    }
    let mut updated = store.settings(&tenant).await?;
    let now_ms = now_millis();
    for path in paths {
        updated = match path.as_str() {
            "fcr_window" => updated.with_fcr_window(requested_window(requested)?, now_ms),
            "fcr_scope" => {
                updated.with_fcr_scope(FcrScope::from_proto(requested.fcr_scope, "settings.fcr_scope")?, now_ms)
            }
            other => {
                return Err(Error::invalid_field(
                    "update_mask",
                    format!("`{other}` is not a field that can be changed"),
                ));
            }
        };
    }
    store.set_settings(&tenant, &updated).await?;
    tracing::info!(
        tenant = %tenant,
        fcr_window_ms = ?updated.fcr_window_ms,
        fcr_scope = updated.fcr_scope.as_str(),
        "kpi settings updated"
    );
    Ok(updated.to_proto(&tenant))
}

/// The window an update asks for (`None`: back to the default).
fn requested_window(requested: &proto::KpiSettings) -> Result<Option<i64>, Error> {
    let Some(window) = &requested.fcr_window else {
        return Ok(None);
    };
    let window_ms =
        checked_duration_millis(window).map_err(|problem| Error::invalid_field("settings.fcr_window", problem))?;
    valid_fcr_window(window_ms, "settings.fcr_window").map(Some)
}
