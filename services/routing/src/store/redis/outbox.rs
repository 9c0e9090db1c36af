//! The routing outbox in Redis: a stream of entries each change appends in
//! its own atomic step (`e`: an encoded event, `s`: the contact's snapshot),
//! read by the relay that holds the pool's lease, removed once relayed.

use switchboard_core::Error;
use switchboard_core::event::decode;
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use crate::store::codec::{self, corrupt};
use crate::store::{OutboxBatch, OutboxItem, PendingEntry};

impl RedisRoutingState {
    pub(super) async fn read_outbox(
        &self,
        relay: &str,
        lease_ms: i64,
        limit: usize,
        relayed: &[String],
    ) -> Result<Option<OutboxBatch>, Error> {
        let mut connection = self.connection.clone();
        // The generation, then each entry: [id, [field, value]] with field
        // `e` or `s`; none while another relay leads.
        let batch: Option<(Option<String>, Vec<StreamEntry>)> = self
            .relay_lease
            .key(format!("{}:relay", self.outbox_key()))
            .key(self.outbox_key())
            .key(self.marker_key())
            .arg(relay)
            .arg(lease_ms)
            .arg(limit)
            .arg(relayed)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let Some((generation, entries)) = batch else {
            return Ok(None);
        };
        let mut pending = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let (Some(field), Some(value)) = (fields.first(), fields.get(1)) else {
                return Err(corrupt("outbox entry without field"));
            };
            let item = match field.as_slice() {
                b"e" => OutboxItem::Event(Box::new(decode(value).map_err(|_| corrupt("outbox event"))?)),
                b"s" => {
                    let json = std::str::from_utf8(value).map_err(|_| corrupt("outbox snapshot"))?;
                    OutboxItem::Snapshot(Box::new(codec::decode_snapshot(json)?))
                }
                _ => return Err(corrupt("outbox entry field")),
            };
            pending.push(PendingEntry { id, item });
        }
        Ok(Some(OutboxBatch { generation, entries: pending }))
    }

    pub(super) async fn delete_outbox_entries(&self, ids: &[String]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("XDEL")
            .arg(self.outbox_key())
            .arg(ids)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn last_outbox_id(&self, generation: &str) -> Result<Option<String>, Error> {
        let mut newest = redis::cmd("XREVRANGE");
        newest.arg(self.outbox_key()).arg("+").arg("-").arg("COUNT").arg(1);
        let newest: Vec<StreamEntry> = self.read_in_generation(newest, generation).await?;
        Ok(newest.into_iter().next().map(|(id, _)| id))
    }

    /// No entry at or before `id` is left: the relay removes entries in
    /// order, so everything up to `id` was relayed.
    pub(super) async fn outbox_empty_through(&self, id: &str, generation: &str) -> Result<bool, Error> {
        let mut oldest = redis::cmd("XRANGE");
        oldest.arg(self.outbox_key()).arg("-").arg(id).arg("COUNT").arg(1);
        let oldest: Vec<StreamEntry> = self.read_in_generation(oldest, generation).await?;
        Ok(oldest.is_empty())
    }

    /// Runs `read` atomically with a look at the marker: its answer, if the
    /// pool's state is still of `generation`.
    async fn read_in_generation<T: redis::FromRedisValue>(
        &self,
        read: redis::Cmd,
        generation: &str,
    ) -> Result<T, Error> {
        let mut connection = self.connection.clone();
        let (marker, answer): (Option<String>, T) = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(self.marker_key())
            .add_command(read)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        same_generation(marker, generation)?;
        Ok(answer)
    }
}

/// A stream entry as read: its id and its field-value list.
type StreamEntry = (String, Vec<Vec<u8>>);

/// The pool's state is still the incarnation a caller saw before its
/// change: a Redis that lost its data (and maybe was rebuilt since) cannot
/// say whether that change was relayed.
fn same_generation(marker: Option<String>, generation: &str) -> Result<(), Error> {
    match marker {
        Some(current) if current == generation => Ok(()),
        _ => Err(super::state_lost()),
    }
}
