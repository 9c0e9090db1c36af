//! [`ConversationStore`] in PostgreSQL: tables `ingestion.conversations`
//! and `ingestion.messages` (migration `0004_conversations`). A partial
//! unique index keeps one open conversation per (tenant, channel, sender);
//! another keeps a provider message id once per (tenant, channel).

use async_trait::async_trait;
use deadpool_postgres::Pool;
use prost::Message as _;
use switchboard_core::identity::{Identity, IdentityKind};
use switchboard_core::names::conversation_name;
use switchboard_core::{ChannelId, ContactId, ConversationId, Error, ErrorCode, MessageId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_platform::postgres::{CachedStatements, Migration, erase_tenant_rows, pg_error};
use switchboard_proto::ingestion::v1::Message;
use tokio_postgres::Row;

use super::{
    Added, CloseReason, Closed, ConversationRecord, ConversationStore, Joined, MessageRecord, OutboundUpdate, edited,
    updated,
};

pub const CONVERSATIONS_MIGRATION: Migration = Migration {
    version: "0004_conversations",
    sql: r#"
        CREATE TABLE ingestion.conversations (
            tenant text NOT NULL,
            conversation_id text COLLATE "C" NOT NULL,
            channel_id text NOT NULL,
            channel_kind integer NOT NULL,
            identity_kind text NOT NULL,
            identity_value text NOT NULL,
            contact_id text,
            created_ms bigint NOT NULL,
            last_message_ms bigint NOT NULL,
            closed_ms bigint,
            close_reason text,
            PRIMARY KEY (tenant, conversation_id)
        );
        CREATE UNIQUE INDEX conversations_open
            ON ingestion.conversations (tenant, channel_id, identity_kind, identity_value)
            WHERE closed_ms IS NULL;
        CREATE INDEX conversations_by_contact ON ingestion.conversations (tenant, contact_id)
            WHERE closed_ms IS NULL;
        CREATE TABLE ingestion.messages (
            tenant text NOT NULL,
            message_id text COLLATE "C" NOT NULL,
            conversation_id text COLLATE "C" NOT NULL,
            channel_id text NOT NULL,
            provider_message_id text NOT NULL,
            -- The encoded switchboard.ingestion.v1.Message.
            body bytea NOT NULL,
            created_ms bigint NOT NULL,
            event_id text NOT NULL,
            published boolean NOT NULL DEFAULT false,
            PRIMARY KEY (tenant, message_id)
        );
        CREATE UNIQUE INDEX messages_provider_message_id
            ON ingestion.messages (tenant, channel_id, provider_message_id) WHERE provider_message_id <> '';
        CREATE INDEX messages_by_conversation ON ingestion.messages (tenant, conversation_id, message_id);
        CREATE INDEX messages_unpublished ON ingestion.messages (created_ms) WHERE NOT published;
    "#,
};

/// Outbound messages: the sender's request id (unique per conversation),
/// the delivery state and the connector's schedule.
pub const OUTBOUND_MIGRATION: Migration = Migration {
    version: "0005_outbound_messages",
    sql: "
        ALTER TABLE ingestion.messages
            ADD COLUMN request_id text NOT NULL DEFAULT '',
            ADD COLUMN delivery_state integer NOT NULL DEFAULT 0,
            ADD COLUMN attempts integer NOT NULL DEFAULT 0,
            ADD COLUMN next_attempt_ms bigint NOT NULL DEFAULT 0;
        CREATE UNIQUE INDEX messages_request_id
            ON ingestion.messages (tenant, conversation_id, request_id) WHERE request_id <> '';
        -- 1 is DELIVERY_STATE_QUEUED.
        CREATE INDEX messages_due ON ingestion.messages (next_attempt_ms) WHERE delivery_state = 1;
    ",
};

const CONVERSATION_COLUMNS: &str = "tenant, conversation_id, channel_id, channel_kind, identity_kind, \
     identity_value, contact_id, created_ms, last_message_ms, closed_ms, close_reason";
const MESSAGE_COLUMNS: &str = "tenant, message_id, conversation_id, channel_id, provider_message_id, body, \
     created_ms, event_id, published, request_id, delivery_state, attempts, next_attempt_ms";
/// How often a racing open is retried before giving up with ABORTED.
const MAX_RACE_ATTEMPTS: usize = 3;

pub struct PostgresConversationStore {
    pool: Pool,
}

impl PostgresConversationStore {
    pub fn new(pool: Pool) -> PostgresConversationStore {
        PostgresConversationStore { pool }
    }

    /// The conversation `condition` selects (at most one by the schema).
    async fn one_conversation(
        &self,
        condition: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<ConversationRecord>, Error> {
        let row = self
            .client()
            .await?
            .query_opt_cached(
                &format!("SELECT {CONVERSATION_COLUMNS} FROM ingestion.conversations WHERE {condition}"),
                params,
            )
            .await
            .map_err(pg_error)?;
        row.as_ref().map(conversation_from_row).transpose()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(pg_error)
    }

    /// The messages matching `condition`, which may end with an order and a
    /// limit.
    async fn messages_where(
        &self,
        condition: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<MessageRecord>, Error> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM ingestion.messages WHERE {condition}");
        let rows = self.client().await?.query_cached(&sql, parameters).await.map_err(pg_error)?;
        rows.iter().map(message_from_row).collect()
    }

    /// Reads the message matching `condition` locked, lets `change` decide
    /// what it becomes, and writes that back, in one transaction; `Ok(None)`
    /// when no message matches (`found` says so) or `change` changes
    /// nothing.
    async fn change_message(
        &self,
        condition: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        change: impl FnOnce(&MessageRecord) -> Option<MessageRecord>,
    ) -> Result<Found<MessageRecord>, Error> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(pg_error)?;
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM ingestion.messages WHERE {condition} FOR UPDATE");
        let Some(row) = transaction.query_opt_cached(&sql, parameters).await.map_err(pg_error)? else {
            return Ok(Found::Missing);
        };
        let Some(next) = change(&message_from_row(&row)?) else { return Ok(Found::Unchanged) };
        let attempts = i32::try_from(next.attempts).unwrap_or(i32::MAX);
        transaction
            .execute_cached(
                "UPDATE ingestion.messages SET body = $3, provider_message_id = $4, delivery_state = $5,
                     attempts = $6, next_attempt_ms = $7
                 WHERE tenant = $1 AND message_id = $2",
                &[
                    &next.tenant.as_str(),
                    &next.message_id.as_str(),
                    &next.message.encode_to_vec(),
                    &next.provider_message_id,
                    &next.message.delivery_state,
                    &attempts,
                    &next.next_attempt_ms,
                ],
            )
            .await
            .map_err(pg_error)?;
        transaction.commit().await.map_err(pg_error)?;
        Ok(Found::Changed(next))
    }
}

/// What [`PostgresConversationStore::change_message`] found.
enum Found<T> {
    Missing,
    Unchanged,
    Changed(T),
}

fn corrupt(problem: impl std::fmt::Display) -> Error {
    Error::internal(format!("a stored conversation or message is corrupt: {problem}"))
}

fn conversation_from_row(row: &Row) -> Result<ConversationRecord, Error> {
    let text = |index: usize| row.try_get::<_, String>(index).map_err(corrupt);
    let kind = text(4)?;
    let closed = match (
        row.try_get::<_, Option<i64>>(9).map_err(corrupt)?,
        row.try_get::<_, Option<String>>(10).map_err(corrupt)?,
    ) {
        (Some(at_ms), Some(reason)) => Some(Closed {
            at_ms,
            reason: CloseReason::parse(&reason).ok_or_else(|| corrupt(format!("close reason `{reason}`")))?,
        }),
        _ => None,
    };
    Ok(ConversationRecord {
        tenant: TenantId::parse(&text(0)?, "tenant").map_err(corrupt)?,
        conversation_id: ConversationId::parse(&text(1)?, "conversation_id").map_err(corrupt)?,
        channel_id: ChannelId::parse(&text(2)?, "channel_id").map_err(corrupt)?,
        channel_kind: row.try_get(3).map_err(corrupt)?,
        customer: Identity {
            kind: IdentityKind::parse(&kind).ok_or_else(|| corrupt(format!("identity kind `{kind}`")))?,
            value: text(5)?,
        },
        contact: row
            .try_get::<_, Option<String>>(6)
            .map_err(corrupt)?
            .map(|contact| ContactId::parse(&contact, "contact_id").map_err(corrupt))
            .transpose()?,
        created_ms: row.try_get(7).map_err(corrupt)?,
        last_message_ms: row.try_get(8).map_err(corrupt)?,
        closed,
    })
}

fn message_from_row(row: &Row) -> Result<MessageRecord, Error> {
    let text = |index: usize| row.try_get::<_, String>(index).map_err(corrupt);
    let body: &[u8] = row.try_get(5).map_err(corrupt)?;
    Ok(MessageRecord {
        tenant: TenantId::parse(&text(0)?, "tenant").map_err(corrupt)?,
        message_id: MessageId::parse(&text(1)?, "message_id").map_err(corrupt)?,
        conversation_id: ConversationId::parse(&text(2)?, "conversation_id").map_err(corrupt)?,
        channel_id: ChannelId::parse(&text(3)?, "channel_id").map_err(corrupt)?,
        provider_message_id: text(4)?,
        message: Message::decode(body).map_err(corrupt)?,
        created_ms: row.try_get(6).map_err(corrupt)?,
        event_id: text(7)?,
        published: row.try_get(8).map_err(corrupt)?,
        attempts: u32::try_from(row.try_get::<_, i32>(11).map_err(corrupt)?).map_err(corrupt)?,
        next_attempt_ms: row.try_get(12).map_err(corrupt)?,
    })
}

#[async_trait]
impl ConversationStore for PostgresConversationStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        erase_tenant_rows(&self.pool, &["ingestion.messages", "ingestion.conversations"], tenant).await.map(drop)
    }

    async fn open_or_join(&self, candidate: &ConversationRecord, window_ms: i64) -> Result<Joined, Error> {
        let mut client = self.client().await?;
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
            &candidate.tenant.as_str(),
            &candidate.channel_id.as_str(),
            &candidate.customer.kind.as_str(),
            &candidate.customer.value,
        ];
        for _ in 0..MAX_RACE_ATTEMPTS {
            let transaction = client.transaction().await.map_err(pg_error)?;
            let open = transaction
                .query_opt_cached(
                    &format!(
                        "SELECT {CONVERSATION_COLUMNS} FROM ingestion.conversations
                         WHERE tenant = $1 AND channel_id = $2 AND identity_kind = $3 AND identity_value = $4
                           AND closed_ms IS NULL
                         FOR UPDATE"
                    ),
                    &key,
                )
                .await
                .map_err(pg_error)?;
            if let Some(open) = open.as_ref().map(conversation_from_row).transpose()? {
                if open.last_message_ms >= candidate.created_ms - window_ms {
                    transaction.commit().await.map_err(pg_error)?;
                    return Ok(Joined { conversation: open, opened: false });
                }
                transaction
                    .execute_cached(
                        "UPDATE ingestion.conversations SET closed_ms = $3, close_reason = $4
                         WHERE tenant = $1 AND conversation_id = $2",
                        &[
                            &open.tenant.as_str(),
                            &open.conversation_id.as_str(),
                            &candidate.created_ms,
                            &CloseReason::Inactive.as_str(),
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
            }
            // Waits for a concurrent open of the same sender to settle; if
            // that one commits, ours inserts nothing and joins it next time.
            let inserted = transaction
                .execute_cached(
                    "INSERT INTO ingestion.conversations (tenant, channel_id, identity_kind, identity_value,
                         conversation_id, channel_kind, created_ms, last_message_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                     ON CONFLICT (tenant, channel_id, identity_kind, identity_value) WHERE closed_ms IS NULL
                     DO NOTHING",
                    &[
                        key[0],
                        key[1],
                        key[2],
                        key[3],
                        &candidate.conversation_id.as_str(),
                        &candidate.channel_kind,
                        &candidate.created_ms,
                    ],
                )
                .await
                .map_err(pg_error)?;
            if inserted == 0 {
                transaction.rollback().await.map_err(pg_error)?;
                continue;
            }
            transaction.commit().await.map_err(pg_error)?;
            let conversation = ConversationRecord {
                contact: None,
                closed: None,
                last_message_ms: candidate.created_ms,
                ..candidate.clone()
            };
            return Ok(Joined { conversation, opened: true });
        }
        Err(Error::new(ErrorCode::Aborted, "the conversation kept changing under concurrent writers, retry"))
    }

    async fn attach_contact(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        contact: &ContactId,
    ) -> Result<ContactId, Error> {
        let row = self
            .client()
            .await?
            .query_opt_cached(
                "UPDATE ingestion.conversations SET contact_id = COALESCE(contact_id, $3)
                 WHERE tenant = $1 AND conversation_id = $2 RETURNING contact_id",
                &[&tenant.as_str(), &conversation_id.as_str(), &contact.as_str()],
            )
            .await
            .map_err(pg_error)?;
        let Some(row) = row else { return Err(Error::not_found(conversation_name(tenant, conversation_id))) };
        ContactId::parse(&row.try_get::<_, String>(0).map_err(corrupt)?, "contact_id").map_err(corrupt)
    }

    /// One statement: the message is stored only into an existing
    /// conversation and only if new, and only then moves the
    /// conversation's last message time.
    async fn add_message(&self, record: &MessageRecord) -> Result<Added, Error> {
        let attempts = i32::try_from(record.attempts).unwrap_or(i32::MAX);
        let stored = self
            .client()
            .await?
            .execute_cached(
                &format!(
                    "WITH inserted AS (
                         INSERT INTO ingestion.messages ({MESSAGE_COLUMNS})
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
                         WHERE EXISTS (SELECT 1 FROM ingestion.conversations
                                       WHERE tenant = $1 AND conversation_id = $3)
                         ON CONFLICT DO NOTHING
                         RETURNING conversation_id)
                     UPDATE ingestion.conversations AS conversations
                     SET last_message_ms = GREATEST(conversations.last_message_ms, $7)
                     FROM inserted
                     WHERE conversations.tenant = $1 AND conversations.conversation_id = inserted.conversation_id"
                ),
                &[
                    &record.tenant.as_str(),
                    &record.message_id.as_str(),
                    &record.conversation_id.as_str(),
                    &record.channel_id.as_str(),
                    &record.provider_message_id,
                    &record.message.encode_to_vec(),
                    &record.created_ms,
                    &record.event_id,
                    &record.published,
                    &record.message.request_id,
                    &record.message.delivery_state,
                    &attempts,
                    &record.next_attempt_ms,
                ],
            )
            .await
            .map_err(pg_error)?;
        if stored == 1 {
            return Ok(Added::New);
        }
        let existing = if record.provider_message_id.is_empty() {
            self.find_by_request_id(&record.tenant, &record.conversation_id, &record.message.request_id).await?
        } else {
            self.find_message(&record.tenant, &record.channel_id, &record.provider_message_id).await?
        };
        match existing {
            Some(existing) => Ok(Added::Duplicate(Box::new(existing))),
            None => Err(Error::not_found(conversation_name(&record.tenant, &record.conversation_id))),
        }
    }

    async fn find_message(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        provider_message_id: &str,
    ) -> Result<Option<MessageRecord>, Error> {
        let mut found = self
            .messages_where(
                "tenant = $1 AND channel_id = $2 AND provider_message_id = $3 AND provider_message_id <> ''",
                &[&tenant.as_str(), &channel_id.as_str(), &provider_message_id],
            )
            .await?;
        Ok(found.pop())
    }

    async fn close_for_contact(&self, tenant: &TenantId, contact: &ContactId, at_ms: i64) -> Result<bool, Error> {
        let closed = self
            .client()
            .await?
            .execute_cached(
                "UPDATE ingestion.conversations SET closed_ms = $3, close_reason = $4
                 WHERE tenant = $1 AND contact_id = $2 AND closed_ms IS NULL",
                &[&tenant.as_str(), &contact.as_str(), &at_ms, &CloseReason::ContactEnded.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(closed > 0)
    }

    async fn close_for_contacts(&self, ended: &[(TenantId, ContactId, i64)]) -> Result<usize, Error> {
        let tenants: Vec<&str> = ended.iter().map(|(tenant, _, _)| tenant.as_str()).collect();
        let contacts: Vec<&str> = ended.iter().map(|(_, contact, _)| contact.as_str()).collect();
        let times: Vec<i64> = ended.iter().map(|(_, _, at_ms)| *at_ms).collect();
        let closed = self
            .client()
            .await?
            .execute_cached(
                "UPDATE ingestion.conversations AS conversations SET closed_ms = ended.at_ms, close_reason = $4
                 FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS ended (tenant, contact_id, at_ms)
                 WHERE conversations.tenant = ended.tenant AND conversations.contact_id = ended.contact_id
                   AND conversations.closed_ms IS NULL",
                &[&tenants, &contacts, &times, &CloseReason::ContactEnded.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(usize::try_from(closed).unwrap_or(usize::MAX))
    }

    async fn open_conversation(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        customer: &Identity,
    ) -> Result<Option<ConversationRecord>, Error> {
        self.one_conversation(
            "tenant = $1 AND channel_id = $2 AND identity_kind = $3 AND identity_value = $4 AND closed_ms IS NULL",
            &[&tenant.as_str(), &channel_id.as_str(), &customer.kind.as_str(), &customer.value],
        )
        .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, Error> {
        self.one_conversation("tenant = $1 AND conversation_id = $2", &[&tenant.as_str(), &conversation_id.as_str()])
            .await
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<ConversationRecord>, Error> {
        let limit = i64::try_from(page.size + 1).unwrap_or(i64::MAX);
        // Ids are `cv_` and hex: `~` sorts after every one of them.
        let before = page.after.clone().unwrap_or_else(|| "~".to_owned());
        let rows = self
            .client()
            .await?
            .query_cached(
                &format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM ingestion.conversations
                     WHERE tenant = $1 AND conversation_id < $2 ORDER BY conversation_id DESC LIMIT $3"
                ),
                &[&tenant.as_str(), &before, &limit],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(conversation_from_row).collect()
    }

    async fn messages(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        page: &PageRequest,
    ) -> Result<Vec<MessageRecord>, Error> {
        let limit = i64::try_from(page.size + 1).unwrap_or(i64::MAX);
        let after = page.after.clone().unwrap_or_default();
        self.messages_where(
            "tenant = $1 AND conversation_id = $2 AND message_id > $3 ORDER BY message_id LIMIT $4",
            &[&tenant.as_str(), &conversation_id.as_str(), &after, &limit],
        )
        .await
    }

    async fn unpublished_messages(&self, cutoff_ms: i64, limit: usize) -> Result<Vec<MessageRecord>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.messages_where(
            "NOT published AND created_ms < $1 ORDER BY created_ms, message_id LIMIT $2",
            &[&cutoff_ms, &limit],
        )
        .await
    }

    async fn edit_message(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        provider_message_id: &str,
        text: &str,
        edited_ms: i64,
    ) -> Result<Option<MessageRecord>, Error> {
        let found = self
            .change_message(
                "tenant = $1 AND channel_id = $2 AND provider_message_id = $3 AND provider_message_id <> ''",
                &[&tenant.as_str(), &channel_id.as_str(), &provider_message_id],
                |message| edited(message, text, edited_ms),
            )
            .await?;
        Ok(match found {
            Found::Changed(next) => Some(next),
            Found::Missing | Found::Unchanged => None,
        })
    }

    async fn find_by_request_id(
        &self,
        tenant: &TenantId,
        conversation_id: &ConversationId,
        request_id: &str,
    ) -> Result<Option<MessageRecord>, Error> {
        let mut found = self
            .messages_where(
                "tenant = $1 AND conversation_id = $2 AND request_id = $3 AND request_id <> ''",
                &[&tenant.as_str(), &conversation_id.as_str(), &request_id],
            )
            .await?;
        Ok(found.pop())
    }

    async fn due_outbound(&self, now_ms: i64, limit: usize) -> Result<Vec<MessageRecord>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.messages_where(
            "delivery_state = 1 AND next_attempt_ms <= $1 ORDER BY created_ms, message_id LIMIT $2",
            &[&now_ms, &limit],
        )
        .await
    }

    async fn update_outbound(
        &self,
        tenant: &TenantId,
        message_id: &MessageId,
        update: &OutboundUpdate,
    ) -> Result<Option<MessageRecord>, Error> {
        let found = self
            .change_message("tenant = $1 AND message_id = $2", &[&tenant.as_str(), &message_id.as_str()], |message| {
                updated(message, update)
            })
            .await?;
        match found {
            Found::Changed(next) => Ok(Some(next)),
            Found::Unchanged => Ok(None),
            Found::Missing => Err(Error::not_found(format!("tenants/{tenant}/messages/{message_id}"))),
        }
    }

    async fn mark_messages_published(&self, messages: &[(TenantId, MessageId)]) -> Result<(), Error> {
        let tenants: Vec<&str> = messages.iter().map(|(tenant, _)| tenant.as_str()).collect();
        let ids: Vec<&str> = messages.iter().map(|(_, message_id)| message_id.as_str()).collect();
        let updated = self
            .client()
            .await?
            .execute_cached(
                "UPDATE ingestion.messages AS messages SET published = true
                 FROM UNNEST($1::text[], $2::text[]) AS marks (tenant, message_id)
                 WHERE messages.tenant = marks.tenant AND messages.message_id = marks.message_id",
                &[&tenants, &ids],
            )
            .await
            .map_err(pg_error)?;
        let marked = messages.len() as u64;
        if updated < marked {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("{} of the {marked} messages marked published do not exist", marked - updated),
            ));
        }
        Ok(())
    }
}
