//! Where channels live: the [`ChannelStore`] port, in memory (`dev` mode,
//! tests) and in PostgreSQL (table `ingestion.channels`), both held to
//! [`super::channels_contract`]. A stored channel keeps its secrets; the
//! API never returns them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use prost::Message;
use switchboard_core::names::channel_name;
use switchboard_core::sync::lock_unpoisoned;
use switchboard_core::{ChannelId, Error, ErrorCode, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_platform::postgres::{CachedStatements, Migration, erase_tenant_rows, pg_error};
use switchboard_proto::ingestion::v1::Channel;
use switchboard_proto::ingestion::v1::channel::Provider;

/// A channel as stored, with the revision an update must name.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChannel {
    pub channel: Channel,
    /// Starts at 1; every update adds one.
    pub revision: i64,
}

/// Channels by tenant and id. Every lookup takes the tenant.
#[async_trait]
pub trait ChannelStore: Send + Sync + 'static {
    /// ALREADY_EXISTS when the tenant has a channel with this id.
    async fn create(&self, tenant: &TenantId, channel_id: &ChannelId, channel: &Channel) -> Result<(), Error>;
    async fn get(&self, tenant: &TenantId, channel_id: &ChannelId) -> Result<Option<StoredChannel>, Error>;
    /// Up to `page.size + 1` channels ordered by id, after `page.after`.
    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<StoredChannel>, Error>;
    /// Replaces the channel if it is still at `revision`: NOT_FOUND when it
    /// does not exist, ABORTED when another update came first.
    async fn update(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        revision: i64,
        channel: &Channel,
    ) -> Result<(), Error>;
    /// False when it did not exist.
    async fn delete(&self, tenant: &TenantId, channel_id: &ChannelId) -> Result<bool, Error>;
    /// Every tenant's channels with a mailbox to poll ([`polls_mailbox`]).
    async fn mailboxes(&self) -> Result<Vec<(TenantId, ChannelId, Channel)>, Error>;
    /// Takes, or renews, the lease on the channel's mailbox for `holder`
    /// until `now_ms + ttl_ms`: true when `holder` has it (it was free,
    /// ran out, or was `holder`'s already). One replica reads a mailbox at
    /// a time; another takes over once the lease runs out.
    async fn lease_mailbox(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, Error>;

    /// Removes every channel and mailbox lease of `tenant` (a deleted tenant); idempotent.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error>;
}

/// True for an enabled e-mail channel with an IMAP mailbox.
pub fn polls_mailbox(channel: &Channel) -> bool {
    !channel.disabled && matches!(&channel.provider, Some(Provider::Email(email)) if email.imap.is_some())
}

fn changed_meanwhile(tenant: &TenantId, channel_id: &ChannelId) -> Error {
    Error::new(ErrorCode::Aborted, "the channel changed meanwhile; read it again and retry")
        .with_resource(channel_name(tenant, channel_id))
}

/// [`ChannelStore`] in memory.
#[derive(Default)]
pub struct MemoryChannelStore {
    channels: Mutex<HashMap<TenantId, BTreeMap<String, StoredChannel>>>,
    /// Mailbox leases: (holder, until).
    leases: Mutex<HashMap<(TenantId, ChannelId), (String, i64)>>,
}

#[async_trait]
impl ChannelStore for MemoryChannelStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        lock_unpoisoned(&self.channels).remove(tenant);
        lock_unpoisoned(&self.leases).retain(|(owner, _), _| owner != tenant);
        Ok(())
    }

    async fn create(&self, tenant: &TenantId, channel_id: &ChannelId, channel: &Channel) -> Result<(), Error> {
        let mut tenants = lock_unpoisoned(&self.channels);
        let channels = tenants.entry(tenant.clone()).or_default();
        if channels.contains_key(channel_id.as_str()) {
            return Err(Error::already_exists(channel_name(tenant, channel_id)));
        }
        channels.insert(channel_id.as_str().to_owned(), StoredChannel { channel: channel.clone(), revision: 1 });
        Ok(())
    }

    async fn get(&self, tenant: &TenantId, channel_id: &ChannelId) -> Result<Option<StoredChannel>, Error> {
        let tenants = lock_unpoisoned(&self.channels);
        Ok(tenants.get(tenant).and_then(|channels| channels.get(channel_id.as_str())).cloned())
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<StoredChannel>, Error> {
        let tenants = lock_unpoisoned(&self.channels);
        let Some(channels) = tenants.get(tenant) else { return Ok(Vec::new()) };
        let after = page.after.clone().unwrap_or_default();
        Ok(channels
            .range::<String, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .take(page.size + 1)
            .map(|(_, stored)| stored.clone())
            .collect())
    }

    async fn update(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        revision: i64,
        channel: &Channel,
    ) -> Result<(), Error> {
        let mut tenants = lock_unpoisoned(&self.channels);
        let Some(stored) = tenants.get_mut(tenant).and_then(|channels| channels.get_mut(channel_id.as_str())) else {
            return Err(Error::not_found(channel_name(tenant, channel_id)));
        };
        if stored.revision != revision {
            return Err(changed_meanwhile(tenant, channel_id));
        }
        *stored = StoredChannel { channel: channel.clone(), revision: revision + 1 };
        Ok(())
    }

    async fn delete(&self, tenant: &TenantId, channel_id: &ChannelId) -> Result<bool, Error> {
        let mut tenants = lock_unpoisoned(&self.channels);
        Ok(tenants.get_mut(tenant).and_then(|channels| channels.remove(channel_id.as_str())).is_some())
    }

    async fn mailboxes(&self) -> Result<Vec<(TenantId, ChannelId, Channel)>, Error> {
        let tenants = lock_unpoisoned(&self.channels);
        let mut mailboxes = Vec::new();
        for (tenant, channels) in tenants.iter() {
            for (channel_id, stored) in channels.iter().filter(|(_, stored)| polls_mailbox(&stored.channel)) {
                let channel_id = ChannelId::parse(channel_id, "channel_id")?;
                mailboxes.push((tenant.clone(), channel_id, stored.channel.clone()));
            }
        }
        Ok(mailboxes)
    }

    async fn lease_mailbox(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, Error> {
        let mut leases = lock_unpoisoned(&self.leases);
        let lease = leases.entry((tenant.clone(), channel_id.clone())).or_insert_with(|| (holder.to_owned(), 0));
        if lease.0 != holder && lease.1 >= now_ms {
            return Ok(false);
        }
        *lease = (holder.to_owned(), now_ms + ttl_ms);
        Ok(true)
    }
}

/// The `ingestion.channels` table (migration `0003_channels`).
pub const CHANNELS_MIGRATION: Migration = Migration {
    version: "0003_channels",
    sql: "
        CREATE TABLE ingestion.channels (
            tenant text NOT NULL,
            channel_id text COLLATE \"C\" NOT NULL,
            -- The encoded switchboard.ingestion.v1.Channel, secrets included.
            body bytea NOT NULL,
            revision bigint NOT NULL,
            PRIMARY KEY (tenant, channel_id)
        );
    ",
};

/// Who reads each mailbox (migration `0008_mailbox_leases`).
pub const MAILBOX_LEASES_MIGRATION: Migration = Migration {
    version: "0008_mailbox_leases",
    sql: "
        CREATE TABLE ingestion.mailbox_leases (
            tenant text NOT NULL,
            channel_id text NOT NULL,
            holder text NOT NULL,
            until_ms bigint NOT NULL,
            PRIMARY KEY (tenant, channel_id)
        );
    ",
};

/// Which channels poll a mailbox (migration `0006_channel_mailboxes`).
pub const MAILBOXES_MIGRATION: Migration = Migration {
    version: "0006_channel_mailboxes",
    sql: "
        ALTER TABLE ingestion.channels ADD COLUMN polls_mailbox boolean NOT NULL DEFAULT false;
        CREATE INDEX channels_mailboxes ON ingestion.channels (tenant, channel_id) WHERE polls_mailbox;
    ",
};

/// [`ChannelStore`] in PostgreSQL.
pub struct PostgresChannelStore {
    pool: Pool,
}

impl PostgresChannelStore {
    pub fn new(pool: Pool) -> PostgresChannelStore {
        PostgresChannelStore { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(pg_error)
    }
}

fn stored_from_row(row: &tokio_postgres::Row) -> Result<StoredChannel, Error> {
    let body: &[u8] = row.try_get(0).map_err(pg_error)?;
    let channel =
        Channel::decode(body).map_err(|error| Error::internal(format!("a stored channel does not decode: {error}")))?;
    Ok(StoredChannel { channel, revision: row.try_get(1).map_err(pg_error)? })
}

#[async_trait]
impl ChannelStore for PostgresChannelStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        erase_tenant_rows(&self.pool, &["ingestion.mailbox_leases", "ingestion.channels"], tenant).await.map(drop)
    }

    async fn create(&self, tenant: &TenantId, channel_id: &ChannelId, channel: &Channel) -> Result<(), Error> {
        let inserted = self
            .client()
            .await?
            .execute_cached(
                "INSERT INTO ingestion.channels (tenant, channel_id, body, revision, polls_mailbox)
                 VALUES ($1, $2, $3, 1, $4)
                 ON CONFLICT (tenant, channel_id) DO NOTHING",
                &[&tenant.as_str(), &channel_id.as_str(), &channel.encode_to_vec(), &polls_mailbox(channel)],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Err(Error::already_exists(channel_name(tenant, channel_id)));
        }
        Ok(())
    }

    async fn get(&self, tenant: &TenantId, channel_id: &ChannelId) -> Result<Option<StoredChannel>, Error> {
        let row = self
            .client()
            .await?
            .query_opt_cached(
                "SELECT body, revision FROM ingestion.channels WHERE tenant = $1 AND channel_id = $2",
                &[&tenant.as_str(), &channel_id.as_str()],
            )
            .await
            .map_err(pg_error)?;
        row.as_ref().map(stored_from_row).transpose()
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<StoredChannel>, Error> {
        let after = page.after.clone().unwrap_or_default();
        let limit = i64::try_from(page.size + 1).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query_cached(
                "SELECT body, revision FROM ingestion.channels WHERE tenant = $1 AND channel_id > $2
                 ORDER BY channel_id LIMIT $3",
                &[&tenant.as_str(), &after, &limit],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(stored_from_row).collect()
    }

    async fn update(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        revision: i64,
        channel: &Channel,
    ) -> Result<(), Error> {
        let client = self.client().await?;
        let updated = client
            .execute_cached(
                "UPDATE ingestion.channels SET body = $4, revision = revision + 1, polls_mailbox = $5
                 WHERE tenant = $1 AND channel_id = $2 AND revision = $3",
                &[&tenant.as_str(), &channel_id.as_str(), &revision, &channel.encode_to_vec(), &polls_mailbox(channel)],
            )
            .await
            .map_err(pg_error)?;
        if updated == 1 {
            return Ok(());
        }
        match self.get(tenant, channel_id).await? {
            Some(_) => Err(changed_meanwhile(tenant, channel_id)),
            None => Err(Error::not_found(channel_name(tenant, channel_id))),
        }
    }

    async fn delete(&self, tenant: &TenantId, channel_id: &ChannelId) -> Result<bool, Error> {
        let deleted = self
            .client()
            .await?
            .execute_cached(
                "DELETE FROM ingestion.channels WHERE tenant = $1 AND channel_id = $2",
                &[&tenant.as_str(), &channel_id.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(deleted == 1)
    }

    async fn mailboxes(&self) -> Result<Vec<(TenantId, ChannelId, Channel)>, Error> {
        let rows = self
            .client()
            .await?
            .query_cached(
                "SELECT body, revision, tenant, channel_id FROM ingestion.channels WHERE polls_mailbox
                 ORDER BY tenant, channel_id",
                &[],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                let stored = stored_from_row(row)?;
                let tenant = TenantId::parse(row.try_get(2).map_err(pg_error)?, "tenant")?;
                let channel_id = ChannelId::parse(row.try_get(3).map_err(pg_error)?, "channel_id")?;
                Ok((tenant, channel_id, stored.channel))
            })
            .collect()
    }

    async fn lease_mailbox(
        &self,
        tenant: &TenantId,
        channel_id: &ChannelId,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, Error> {
        let taken = self
            .client()
            .await?
            .query_opt_cached(
                "INSERT INTO ingestion.mailbox_leases (tenant, channel_id, holder, until_ms) VALUES ($1, $2, $3, $4::bigint + $5::bigint)
                 ON CONFLICT (tenant, channel_id) DO UPDATE SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms
                 WHERE ingestion.mailbox_leases.holder = EXCLUDED.holder OR ingestion.mailbox_leases.until_ms < $4::bigint
                 RETURNING holder",
                &[&tenant.as_str(), &channel_id.as_str(), &holder, &now_ms, &ttl_ms],
            )
            .await
            .map_err(pg_error)?;
        Ok(taken.is_some())
    }
}
