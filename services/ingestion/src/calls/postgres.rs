//! [`CallStore`] in PostgreSQL: tables `ingestion.calls` (a call's record
//! as JSON, with its revision) and `ingestion.agent_endpoints` (migration
//! `0007_calls`).

use async_trait::async_trait;
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use switchboard_core::identity::{Identity, IdentityKind};
use switchboard_core::{AgentId, ChannelId, ContactId, Error, TenantId};
use switchboard_platform::postgres::{CachedStatements, Migration, erase_tenant_rows, pg_error};

use super::{CallRecord, CallStore, Stage, StoredCall};
use crate::channels::cti::HangupCause;

/// The calls' tables.
pub const CALLS_MIGRATION: Migration = Migration {
    version: "0007_calls",
    sql: "
        CREATE TABLE ingestion.calls (
            tenant text NOT NULL,
            channel_id text NOT NULL,
            call_id text NOT NULL,
            -- The call's record (calls::postgres::StoredJson).
            record text NOT NULL,
            revision bigint NOT NULL,
            PRIMARY KEY (tenant, channel_id, call_id)
        );
        CREATE TABLE ingestion.agent_endpoints (
            agent text PRIMARY KEY,
            endpoint text NOT NULL
        );
    ",
};

/// A call record in JSON: plain strings and numbers.
#[derive(Serialize, Deserialize)]
struct StoredJson {
    from: String,
    to: String,
    /// `ivr`, `queued`, `answered`, `on_hold`, `ended`.
    stage: String,
    stage_at_ms: i64,
    cause: i32,
    contact: Option<String>,
    agent: Option<String>,
    created_ms: i64,
    answered_ms: Option<i64>,
    held_ms: i64,
    ended_in_ivr: bool,
    transfers: Vec<(String, i64)>,
}

fn corrupt(problem: impl std::fmt::Display) -> Error {
    Error::internal(format!("a stored call is corrupt: {problem}"))
}

fn to_json(call: &CallRecord) -> String {
    let (stage, stage_at_ms, cause) = match call.stage {
        Stage::Ivr => ("ivr", 0, HangupCause::Unspecified),
        Stage::Queued => ("queued", 0, HangupCause::Unspecified),
        Stage::Answered => ("answered", 0, HangupCause::Unspecified),
        Stage::OnHold { since_ms } => ("on_hold", since_ms, HangupCause::Unspecified),
        Stage::Ended { at_ms, cause } => ("ended", at_ms, cause),
    };
    let stored = StoredJson {
        from: call.from.value.clone(),
        to: call.to.clone(),
        stage: stage.to_owned(),
        stage_at_ms,
        cause: cause.to_proto() as i32,
        contact: call.contact.as_ref().map(ToString::to_string),
        agent: call.agent.as_ref().map(ToString::to_string),
        created_ms: call.created_ms,
        answered_ms: call.answered_ms,
        held_ms: call.held_ms,
        ended_in_ivr: call.ended_in_ivr,
        transfers: call.transfers.clone(),
    };
    // Strings and numbers only: it always serialises.
    serde_json::to_string(&stored).unwrap_or_default()
}

fn from_row(row: &tokio_postgres::Row) -> Result<StoredCall, Error> {
    let tenant: String = row.try_get(0).map_err(pg_error)?;
    let channel_id: String = row.try_get(1).map_err(pg_error)?;
    let call_id: String = row.try_get(2).map_err(pg_error)?;
    let record: String = row.try_get(3).map_err(pg_error)?;
    let revision: i64 = row.try_get(4).map_err(pg_error)?;
    let stored: StoredJson = serde_json::from_str(&record).map_err(corrupt)?;
    let cause = switchboard_proto::ingestion::v1::HangupCause::try_from(stored.cause).map_err(corrupt)?;
    let stage = match stored.stage.as_str() {
        "ivr" => Stage::Ivr,
        "queued" => Stage::Queued,
        "answered" => Stage::Answered,
        "on_hold" => Stage::OnHold { since_ms: stored.stage_at_ms },
        "ended" => Stage::Ended { at_ms: stored.stage_at_ms, cause: HangupCause::from_proto(cause) },
        other => return Err(corrupt(format!("stage `{other}`"))),
    };
    let call = CallRecord {
        tenant: TenantId::parse(&tenant, "tenant").map_err(corrupt)?,
        channel_id: ChannelId::parse(&channel_id, "channel_id").map_err(corrupt)?,
        call_id,
        from: Identity { kind: IdentityKind::Phone, value: stored.from },
        to: stored.to,
        stage,
        contact: stored.contact.map(|contact| ContactId::parse(&contact, "contact")).transpose().map_err(corrupt)?,
        agent: stored.agent.map(|agent| AgentId::parse(&agent, "agent")).transpose().map_err(corrupt)?,
        created_ms: stored.created_ms,
        answered_ms: stored.answered_ms,
        held_ms: stored.held_ms,
        ended_in_ivr: stored.ended_in_ivr,
        transfers: stored.transfers,
    };
    Ok(StoredCall { call, revision })
}

pub struct PostgresCallStore {
    pool: Pool,
}

impl PostgresCallStore {
    pub fn new(pool: Pool) -> PostgresCallStore {
        PostgresCallStore { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(pg_error)
    }
}

#[async_trait]
impl CallStore for PostgresCallStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        erase_tenant_rows(&self.pool, &["ingestion.calls"], tenant).await.map(drop)
    }

    async fn insert(&self, call: &CallRecord) -> Result<bool, Error> {
        let inserted = self
            .client()
            .await?
            .execute_cached(
                "INSERT INTO ingestion.calls (tenant, channel_id, call_id, record, revision) VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT DO NOTHING",
                &[&call.tenant.as_str(), &call.channel_id.as_str(), &call.call_id, &to_json(call)],
            )
            .await
            .map_err(pg_error)?;
        Ok(inserted == 1)
    }

    async fn get(&self, tenant: &TenantId, channel_id: &ChannelId, call_id: &str) -> Result<Option<StoredCall>, Error> {
        let row = self
            .client()
            .await?
            .query_opt_cached(
                "SELECT tenant, channel_id, call_id, record, revision FROM ingestion.calls
                 WHERE tenant = $1 AND channel_id = $2 AND call_id = $3",
                &[&tenant.as_str(), &channel_id.as_str(), &call_id],
            )
            .await
            .map_err(pg_error)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn update(&self, call: &CallRecord, revision: i64) -> Result<bool, Error> {
        let updated = self
            .client()
            .await?
            .execute_cached(
                "UPDATE ingestion.calls SET record = $4, revision = revision + 1
                 WHERE tenant = $1 AND channel_id = $2 AND call_id = $3 AND revision = $5",
                &[&call.tenant.as_str(), &call.channel_id.as_str(), &call.call_id, &to_json(call), &revision],
            )
            .await
            .map_err(pg_error)?;
        Ok(updated == 1)
    }

    async fn set_endpoint(&self, agent: &AgentId, endpoint: &str) -> Result<(), Error> {
        let client = self.client().await?;
        if endpoint.is_empty() {
            client
                .execute_cached("DELETE FROM ingestion.agent_endpoints WHERE agent = $1", &[&agent.as_str()])
                .await
                .map_err(pg_error)?;
            return Ok(());
        }
        client
            .execute_cached(
                "INSERT INTO ingestion.agent_endpoints (agent, endpoint) VALUES ($1, $2)
                 ON CONFLICT (agent) DO UPDATE SET endpoint = EXCLUDED.endpoint",
                &[&agent.as_str(), &endpoint],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn endpoint(&self, agent: &AgentId) -> Result<String, Error> {
        let row = self
            .client()
            .await?
            .query_opt_cached("SELECT endpoint FROM ingestion.agent_endpoints WHERE agent = $1", &[&agent.as_str()])
            .await
            .map_err(pg_error)?;
        row.map(|row| row.try_get(0).map_err(pg_error)).transpose().map(Option::unwrap_or_default)
    }
}
