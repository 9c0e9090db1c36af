//! The `switchboard.kpi.v1.KpiService` API: request validation,
//! authorization, and KPIs computed by [`crate::domain`] from the store's
//! buckets (and, for the partial ends of a range, its facts).

use std::collections::BTreeMap;
use std::sync::Arc;

use prost_types::Timestamp;
use switchboard_core::names::{parse_queue, parse_tenant};
use switchboard_core::time::checked_timestamp_millis;
use switchboard_core::time::now_millis;
use switchboard_core::{Error, Principal, TenantId};
use switchboard_platform::auth::{
    AccessControl, LogName, credential_expired, credential_expired_error, credential_withdrawn_error, principal,
};
use switchboard_platform::bus::EventBus;
use switchboard_platform::grpc::answer;
use switchboard_platform::status::{IntoStatus, to_status};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::kpi::v1::kpi_service_server::KpiService;
use switchboard_proto::kpi::v1::{
    GetKpiSettingsRequest, GetKpiSummaryRequest, GetUsageRequest, KpiFilter, KpiSettings, KpiSummary,
    ListAgentKpisRequest, ListAgentKpisResponse, ListKpiIntervalsRequest, ListKpiIntervalsResponse, LiveKpis,
    RecordSurveyAnswerRequest, SurveyAnswer, UpdateKpiSettingsRequest, Usage, WatchLiveKpisRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::agents::{self, AgentKpisQuery};
use crate::domain::summary::fcr_provisional;
use crate::domain::{self, FactsFilter, KpiCounts, ServiceLevelVariant};
use crate::live::{self, LiveBoards};
use crate::store::{KpiStore, counts_by_interval, summary_counts};
use crate::{settings_api, surveys, usage};

/// Serves KPIs of the caller's tenants from a [`KpiStore`].
pub struct KpiGrpc {
    store: Arc<dyn KpiStore>,
    access: Arc<AccessControl>,
    /// Where survey answers are published.
    bus: Arc<dyn EventBus>,
    max_contacts_per_query: usize,
    live: Arc<LiveBoards>,
    shutdown: CancellationToken,
}

/// The most contacts one query reads as facts: only the partial first and
/// last 15 minutes of a range not aligned to them are (whole intervals
/// come from the buckets), a bound on what any key can make a pod hold in
/// memory (about 200 bytes of facts each).
pub const MAX_CONTACTS_PER_QUERY: usize = 200_000;

impl KpiGrpc {
    pub fn new(
        store: Arc<dyn KpiStore>,
        access: Arc<AccessControl>,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> KpiGrpc {
        let live = LiveBoards::new(Arc::clone(&store), shutdown.clone());
        KpiGrpc { store, access, bus, max_contacts_per_query: MAX_CONTACTS_PER_QUERY, live, shutdown }
    }

    /// The boards live watches read (shared with the wallboard).
    pub fn live_boards(&self) -> Arc<LiveBoards> {
        Arc::clone(&self.live)
    }

    /// The service summarizing at most `max` contacts per query.
    pub fn with_max_contacts_per_query(mut self, max: usize) -> KpiGrpc {
        self.max_contacts_per_query = max;
        self
    }

    /// Validates the filter, authorizes the caller on its tenant and
    /// counts the contacts it selects, per arrival interval (`None`:
    /// arrival unknown): whole intervals from the buckets, partial ends of
    /// the range from the facts.
    /// The validated filter, the caller authorized on its tenant.
    fn query(&self, principal: &Principal, filter: Option<&KpiFilter>) -> Result<KpiQuery, Error> {
        let Some(filter) = filter else {
            return Err(Error::missing_field("filter"));
        };
        let tenant = parse_tenant(&filter.parent, "filter.parent")?;
        // Authorize before looking at the rest, so a caller learns nothing
        // about a tenant it may not read.
        self.access.authorize_read(principal, &tenant)?;
        KpiQuery::parse(tenant, filter)
    }

    async fn counts(
        &self,
        principal: &Principal,
        filter: Option<&KpiFilter>,
    ) -> Result<(BTreeMap<Option<i64>, KpiCounts>, ServiceLevelVariant, i64), Error> {
        let query = self.query(principal, filter)?;
        let counts =
            counts_by_interval(self.store.as_ref(), &query.tenant, &query.filter, self.max_contacts_per_query).await?;
        tracing::debug!(tenant = %query.tenant, key = %LogName(principal), intervals = counts.len(), "kpi counts read");
        let window_ms = self.store.settings(&query.tenant).await?.longest_fcr_window_ms;
        Ok((counts, query.variant, window_ms))
    }

    async fn summary(&self, principal: Principal, request: GetKpiSummaryRequest) -> Result<KpiSummary, Error> {
        let query = self.query(&principal, request.filter.as_ref())?;
        let max = self.max_contacts_per_query;
        let (counts, provisional) =
            summary_counts(self.store.as_ref(), &query.tenant, &query.filter, max, now_millis()).await?;
        let mut summary = domain::KpiSummary { counts, variant: query.variant }.to_proto();
        summary.fcr_provisional = provisional;
        Ok(summary)
    }

    async fn intervals(
        &self,
        principal: Principal,
        request: ListKpiIntervalsRequest,
    ) -> Result<ListKpiIntervalsResponse, Error> {
        let (by_interval, variant, window_ms) = self.counts(&principal, request.filter.as_ref()).await?;
        let intervals = by_interval
            .into_iter()
            .filter_map(|(start, counts)| start.map(|start_ms| (start_ms, counts)))
            .map(|(start_ms, counts)| {
                let mut interval =
                    domain::KpiInterval { start_ms, summary: domain::KpiSummary { counts, variant } }.to_proto();
                if let Some(summary) = &mut interval.summary {
                    summary.fcr_provisional = fcr_provisional(&counts, Some(start_ms), now_millis(), window_ms);
                }
                interval
            })
            .collect();
        Ok(ListKpiIntervalsResponse { intervals })
    }
}

/// A validated [`KpiFilter`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct KpiQuery {
    tenant: TenantId,
    filter: FactsFilter,
    variant: ServiceLevelVariant,
}

impl KpiQuery {
    fn parse(tenant: TenantId, filter: &KpiFilter) -> Result<KpiQuery, Error> {
        let queue = if filter.queue.is_empty() {
            None
        } else {
            let (queue_tenant, queue) = parse_queue(&filter.queue, "filter.queue")?;
            if queue_tenant != tenant {
                return Err(Error::invalid_field("filter.queue", "must be a queue of `filter.parent`"));
            }
            Some(queue)
        };
        let channel = match Channel::try_from(filter.channel) {
            Ok(Channel::Unspecified) => None,
            Ok(channel) => Some(channel),
            Err(_) => return Err(Error::invalid_field("filter.channel", "is not a known channel")),
        };
        let arrival_start_ms = instant(filter.start_time.as_ref(), "filter.start_time")?;
        let arrival_end_ms = instant(filter.end_time.as_ref(), "filter.end_time")?;
        if let (Some(start_ms), Some(end_ms)) = (arrival_start_ms, arrival_end_ms)
            && start_ms >= end_ms
        {
            return Err(Error::invalid_field("filter.end_time", "must be after `filter.start_time`"));
        }
        let Some(variant) = ServiceLevelVariant::from_proto(filter.service_level_variant) else {
            return Err(Error::invalid_field("filter.service_level_variant", "is not a known variant"));
        };
        Ok(KpiQuery { tenant, filter: FactsFilter { queue, channel, arrival_start_ms, arrival_end_ms }, variant })
    }
}

fn instant(timestamp: Option<&Timestamp>, field: &str) -> Result<Option<i64>, Error> {
    let Some(timestamp) = timestamp else {
        return Ok(None);
    };
    checked_timestamp_millis(timestamp).map(Some).map_err(|problem| Error::invalid_field(field, problem))
}

#[tonic::async_trait]
impl KpiService for KpiGrpc {
    async fn get_kpi_summary(&self, request: Request<GetKpiSummaryRequest>) -> Result<Response<KpiSummary>, Status> {
        answer(request, |principal, body| self.summary(principal, body)).await
    }

    async fn list_kpi_intervals(
        &self,
        request: Request<ListKpiIntervalsRequest>,
    ) -> Result<Response<ListKpiIntervalsResponse>, Status> {
        answer(request, |principal, body| self.intervals(principal, body)).await
    }

    async fn get_usage(&self, request: Request<GetUsageRequest>) -> Result<Response<Usage>, Status> {
        answer(request, |principal, body| async move {
            let (tenant, month) = usage::usage_request(&self.access, &principal, &body.parent, &body.month)?;
            usage::usage(self.store.as_ref(), &tenant, month).await
        })
        .await
    }

    async fn list_agent_kpis(
        &self,
        request: Request<ListAgentKpisRequest>,
    ) -> Result<Response<ListAgentKpisResponse>, Status> {
        answer(request, |principal, body| async move {
            let query = AgentKpisQuery::parse(&self.access, &principal, &body)?;
            agents::list_agent_kpis(self.store.as_ref(), &query, now_millis()).await
        })
        .await
    }

    async fn record_survey_answer(
        &self,
        request: Request<RecordSurveyAnswerRequest>,
    ) -> Result<Response<SurveyAnswer>, Status> {
        answer(request, |principal, body| async move {
            surveys::record_survey_answer(self.store.as_ref(), self.bus.as_ref(), &self.access, &principal, &body).await
        })
        .await
    }

    async fn get_kpi_settings(&self, request: Request<GetKpiSettingsRequest>) -> Result<Response<KpiSettings>, Status> {
        answer(request, |principal, body| async move {
            settings_api::get_settings(self.store.as_ref(), &self.access, &principal, &body).await
        })
        .await
    }

    async fn update_kpi_settings(
        &self,
        request: Request<UpdateKpiSettingsRequest>,
    ) -> Result<Response<KpiSettings>, Status> {
        answer(request, |principal, body| async move {
            settings_api::update_settings(self.store.as_ref(), &self.access, &principal, &body).await
        })
        .await
    }

    type WatchLiveKpisStream = ReceiverStream<Result<LiveKpis, Status>>;

    async fn watch_live_kpis(
        &self,
        request: Request<WatchLiveKpisRequest>,
    ) -> Result<Response<Self::WatchLiveKpisStream>, Status> {
        let principal = principal(&request)?;
        let body = request.into_inner();
        let (watched, utc_offset_ms) =
            live::watched(&self.access, &principal, &body.parent, body.utc_offset.as_ref()).into_status()?;
        let slot = self.access.open_stream(&principal).into_status()?;
        let (sender, receiver) = mpsc::channel(LIVE_BUFFER);
        let (boards, access, shutdown) = (Arc::clone(&self.live), Arc::clone(&self.access), self.shutdown.clone());
        tracing::info!(key = %LogName(&principal), watched = ?watched, "live kpis watch started");
        tokio::spawn(async move {
            // The key's slot is held while the stream lasts.
            let _slot = slot;
            let deliver = |tenant: TenantId, figures: Arc<domain::live::LiveFigures>| -> live::Delivered {
                let sender = sender.clone();
                Box::pin(async move {
                    let message = figures.to_proto(&tenant, now_millis(), ServiceLevelVariant::default());
                    sender.send(Ok(message)).await.map_err(|_| Error::unavailable("the watcher left"))
                })
            };
            let ended = tokio::select! {
                () = shutdown.cancelled() => None,
                () = sender.closed() => None,
                () = credential_expired(&principal) => Some(credential_expired_error()),
                () = access.credential_withdrawn(&principal) => Some(credential_withdrawn_error()),
                followed = live::follow(&boards, &access, &watched, utc_offset_ms, deliver) => followed.err(),
            };
            if let Some(error) = ended {
                let _ = sender.send(Err(to_status(&error))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// Live messages a slow watcher may have waiting.
const LIVE_BUFFER: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::time::timestamp_from_millis;
    use switchboard_core::{Principal, Role};
    use switchboard_platform::config::AuthConfig;
    use tonic::Code;
    use tonic_types::StatusExt;

    use switchboard_platform::bus::memory::MemoryBus;

    use crate::store::MemoryKpiStore;

    fn service() -> KpiGrpc {
        let auth = AuthConfig { tenants: vec!["acme".to_owned(), "globex".to_owned()], ..AuthConfig::default() };
        let access = AccessControl::from_config(&auth).expect("access");
        KpiGrpc::new(Arc::new(MemoryKpiStore::new()), access, Arc::new(MemoryBus::new()), CancellationToken::new())
    }

    fn request(filter: Option<KpiFilter>, tenant: Option<&str>) -> Request<GetKpiSummaryRequest> {
        let mut request = Request::new(GetKpiSummaryRequest { filter });
        request.extensions_mut().insert(Principal {
            key_name: "test".to_owned(),
            role: if tenant.is_some() { Role::TenantReader } else { Role::OperatorAdmin },
            tenant: tenant.map(|tenant| TenantId::parse(tenant, "tenant").expect("tenant")),
            agent: None,
            expires_at_ms: None,
        });
        request
    }

    fn acme_filter() -> KpiFilter {
        KpiFilter { parent: "tenants/acme".to_owned(), ..KpiFilter::default() }
    }

    async fn rejected_field(filter: Option<KpiFilter>) -> String {
        let status = service().get_kpi_summary(request(filter, Some("acme"))).await.expect_err("rejected");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let violations = status.get_details_bad_request().expect("bad request details").field_violations;
        violations[0].field.clone()
    }

    #[tokio::test]
    async fn invalid_filters_name_their_field() {
        assert_eq!(rejected_field(None).await, "filter");
        assert_eq!(rejected_field(Some(KpiFilter::default())).await, "filter.parent");
        let foreign_queue = KpiFilter { queue: "tenants/globex/queues/sales".to_owned(), ..acme_filter() };
        assert_eq!(rejected_field(Some(foreign_queue)).await, "filter.queue");
        let malformed_queue = KpiFilter { queue: "queues/sales".to_owned(), ..acme_filter() };
        assert_eq!(rejected_field(Some(malformed_queue)).await, "filter.queue");
        let unknown_channel = KpiFilter { channel: 99, ..acme_filter() };
        assert_eq!(rejected_field(Some(unknown_channel)).await, "filter.channel");
        let backwards = KpiFilter {
            start_time: Some(timestamp_from_millis(2_000)),
            end_time: Some(timestamp_from_millis(2_000)),
            ..acme_filter()
        };
        assert_eq!(rejected_field(Some(backwards)).await, "filter.end_time");
        let unknown_variant = KpiFilter { service_level_variant: 7, ..acme_filter() };
        assert_eq!(rejected_field(Some(unknown_variant)).await, "filter.service_level_variant");
    }

    #[tokio::test]
    async fn tenants_are_authorized_before_anything_else_is_read() {
        let service = service();
        let other_tenant = KpiFilter { parent: "tenants/globex".to_owned(), channel: 99, ..KpiFilter::default() };
        let status = service.get_kpi_summary(request(Some(other_tenant), Some("acme"))).await.expect_err("denied");
        assert_eq!(status.code(), Code::PermissionDenied);
        let unknown_tenant = KpiFilter { parent: "tenants/initech".to_owned(), ..KpiFilter::default() };
        let status = service.get_kpi_summary(request(Some(unknown_tenant), None)).await.expect_err("unknown");
        assert_eq!(status.code(), Code::NotFound);
        let summary = service.get_kpi_summary(request(Some(acme_filter()), None)).await.expect("operator reads acme");
        assert_eq!(summary.get_ref().offered, 0);
    }

    #[tokio::test]
    async fn whole_intervals_come_from_buckets_and_only_a_crowded_partial_end_is_refused() {
        let store = Arc::new(MemoryKpiStore::new());
        let acme = TenantId::parse("acme", "tenant").expect("tenant");
        for (index, arrival_ms) in [1_000, 2_000, 3_000].into_iter().enumerate() {
            let contact = switchboard_core::ContactId::parse(&format!("ct_range{index:04}"), "contact").expect("id");
            let update = crate::domain::FactsUpdate { queued_ms: Some(arrival_ms), ..Default::default() };
            store.apply(&acme, &contact, update).await.expect("facts");
        }
        let auth = AuthConfig { tenants: vec!["acme".to_owned()], ..AuthConfig::default() };
        let access = AccessControl::from_config(&auth).expect("access");
        let service = KpiGrpc::new(store, access, Arc::new(MemoryBus::new()), CancellationToken::new())
            .with_max_contacts_per_query(2);
        let everything = service.get_kpi_summary(request(Some(acme_filter()), Some("acme"))).await.expect("buckets");
        assert_eq!(everything.get_ref().offered, 3, "all time is read from the buckets, however many contacts");
        let aligned = KpiFilter {
            start_time: Some(timestamp_from_millis(0)),
            end_time: Some(timestamp_from_millis(crate::domain::INTERVAL_MS)),
            ..acme_filter()
        };
        let summary = service.get_kpi_summary(request(Some(aligned), Some("acme"))).await.expect("whole interval");
        assert_eq!(summary.get_ref().offered, 3);
        let ragged = KpiFilter { start_time: Some(timestamp_from_millis(500)), ..acme_filter() };
        let status = service.get_kpi_summary(request(Some(ragged), Some("acme"))).await.expect_err("too many");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let violations = status.get_details_bad_request().expect("bad request details").field_violations;
        assert_eq!(violations[0].field, "filter.start_time");
        let narrower = KpiFilter { start_time: Some(timestamp_from_millis(2_000)), ..acme_filter() };
        let summary = service.get_kpi_summary(request(Some(narrower), Some("acme"))).await.expect("two fit");
        assert_eq!(summary.get_ref().offered, 2);
    }

    #[tokio::test]
    async fn unauthenticated_requests_are_refused() {
        let status = service()
            .get_kpi_summary(Request::new(GetKpiSummaryRequest { filter: Some(acme_filter()) }))
            .await
            .expect_err("no principal");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}
