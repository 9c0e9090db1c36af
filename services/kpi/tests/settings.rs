//! `GetKpiSettings` and `UpdateKpiSettings` over a real gRPC connection:
//! defaults, a window changed and read back, the fields and masks refused
//! by name, and who may read and change them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{ACME_READER_KEY, GLOBEX_READER_KEY, OPERATOR_KEY, authorized, start_in_memory};
use prost_types::{Duration, FieldMask};
use switchboard_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use switchboard_proto::kpi::v1::{FcrScope, GetKpiSettingsRequest, KpiSettings, UpdateKpiSettingsRequest};
use tonic::Code;
use tonic_types::StatusExt;

const ACME_SETTINGS: &str = "tenants/acme/kpiSettings";

fn update(window_seconds: Option<i64>, paths: &[&str]) -> UpdateKpiSettingsRequest {
    scoped_update(window_seconds, FcrScope::Unspecified as i32, paths)
}

fn scoped_update(window_seconds: Option<i64>, fcr_scope: i32, paths: &[&str]) -> UpdateKpiSettingsRequest {
    UpdateKpiSettingsRequest {
        settings: Some(KpiSettings {
            name: ACME_SETTINGS.to_owned(),
            fcr_window: window_seconds.map(|seconds| Duration { seconds, nanos: 0 }),
            update_time: None,
            fcr_scope,
        }),
        update_mask: Some(FieldMask { paths: paths.iter().map(|path| (*path).to_owned()).collect() }),
    }
}

async fn get(
    client: &mut KpiServiceClient<tonic::transport::Channel>,
    key: &str,
) -> Result<KpiSettings, tonic::Status> {
    let request = GetKpiSettingsRequest { name: ACME_SETTINGS.to_owned() };
    client.get_kpi_settings(authorized(key, request)).await.map(tonic::Response::into_inner)
}

fn field(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.get_details_bad_request().expect("bad request details").field_violations[0].field.clone()
}

#[tokio::test]
async fn a_tenants_first_contact_window_is_changed_and_read_back() {
    let (mut service, _bus) = start_in_memory().await;
    let client = &mut service.client;
    let defaults = get(client, ACME_READER_KEY).await.expect("defaults");
    assert_eq!((defaults.name.as_str(), defaults.fcr_window, defaults.update_time), (ACME_SETTINGS, None, None));

    let changed = client
        .update_kpi_settings(authorized(OPERATOR_KEY, update(Some(3 * 86_400), &["fcr_window"])))
        .await
        .expect("three days")
        .into_inner();
    assert_eq!(changed.fcr_window, Some(Duration { seconds: 3 * 86_400, nanos: 0 }));
    assert!(changed.update_time.is_some());
    assert_eq!(get(client, ACME_READER_KEY).await.expect("read back"), changed);

    let reset = client
        .update_kpi_settings(authorized(OPERATOR_KEY, update(None, &["fcr_window"])))
        .await
        .expect("back to the default")
        .into_inner();
    assert_eq!(reset.fcr_window, None);
    assert_eq!(reset.fcr_scope, FcrScope::AnyContact as i32, "read back as the default, not UNSPECIFIED");
    service.stop().await;
}

#[tokio::test]
async fn a_tenants_first_contact_scope_is_changed_alone_and_read_back() {
    let (mut service, _bus) = start_in_memory().await;
    let client = &mut service.client;
    client.update_kpi_settings(authorized(OPERATOR_KEY, update(Some(86_400), &["fcr_window"]))).await.expect("a day");
    let scoped = client
        .update_kpi_settings(authorized(
            OPERATOR_KEY,
            scoped_update(Some(3_600), FcrScope::SameQueue as i32, &["fcr_scope"]),
        ))
        .await
        .expect("same queue")
        .into_inner();
    assert_eq!(scoped.fcr_scope, FcrScope::SameQueue as i32);
    assert_eq!(scoped.fcr_window, Some(Duration { seconds: 86_400, nanos: 0 }), "a field outside the mask is kept");
    assert_eq!(get(client, ACME_READER_KEY).await.expect("read back"), scoped);
    let both = client
        .update_kpi_settings(authorized(
            OPERATOR_KEY,
            scoped_update(None, FcrScope::Unspecified as i32, &["fcr_scope", "fcr_window"]),
        ))
        .await
        .expect("both back to the defaults")
        .into_inner();
    assert_eq!((both.fcr_scope, both.fcr_window), (FcrScope::AnyContact as i32, None));
    service.stop().await;
}

#[tokio::test]
async fn bad_updates_name_their_field_and_change_nothing() {
    let (mut service, _bus) = start_in_memory().await;
    let client = &mut service.client;
    let mut refused = Vec::new();
    for request in [
        update(Some(1_800), &["fcr_window"]),
        update(Some(3_601), &["fcr_window"]),
        update(Some(91 * 86_400), &["fcr_window"]),
        update(Some(86_400), &[]),
        update(Some(86_400), &["display_name"]),
        scoped_update(None, 99, &["fcr_scope"]),
        UpdateKpiSettingsRequest { settings: None, ..update(None, &["fcr_window"]) },
        UpdateKpiSettingsRequest {
            settings: Some(KpiSettings { name: "tenants/acme".to_owned(), ..KpiSettings::default() }),
            ..update(None, &["fcr_window"])
        },
    ] {
        let status = client.update_kpi_settings(authorized(OPERATOR_KEY, request)).await.expect_err("refused");
        refused.push(field(&status));
    }
    let expected = [
        "settings.fcr_window",
        "settings.fcr_window",
        "settings.fcr_window",
        "update_mask",
        "update_mask",
        "settings.fcr_scope",
        "settings",
        "settings.name",
    ];
    assert_eq!(refused, expected);
    assert_eq!(get(client, ACME_READER_KEY).await.expect("unchanged").update_time, None, "nothing was stored");

    let reader = client
        .update_kpi_settings(authorized(ACME_READER_KEY, update(Some(86_400), &["fcr_window"])))
        .await
        .expect_err("a reader");
    assert_eq!(reader.code(), Code::PermissionDenied);
    let foreign = get(client, GLOBEX_READER_KEY).await.expect_err("another tenant");
    assert_eq!(foreign.code(), Code::PermissionDenied);
    service.stop().await;
}
