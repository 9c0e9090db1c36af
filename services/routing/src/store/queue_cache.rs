//! Queue definitions cached per replica for the contact path: every
//! contact reads its queue's rules (when it is created, and when routing
//! enqueues it), while queues change rarely. A queue read here is at most
//! [`QUEUE_CACHE_TTL`] old (a change made through this replica is
//! forgotten at once, but a read racing it may cache the old definition
//! again, for that long). An absent queue is never cached, so a queue
//! created on another replica is found at once. The API reads through
//! [`QueueStore::get_queue_fresh`], never from here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchboard_core::{Error, QueueId, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::routing::v1::Queue;

use super::QueueStore;

/// How long another replica's change to a queue may go unseen here.
pub const QUEUE_CACHE_TTL: Duration = Duration::from_secs(1);
/// More cached queues than this and the cache starts over.
const MAX_CACHED_QUEUES: usize = 10_000;

type Entries = HashMap<(TenantId, QueueId), (Instant, Queue)>;

/// A [`QueueStore`] in front of another, caching reads of existing queues.
pub struct CachedQueueStore {
    inner: Arc<dyn QueueStore>,
    entries: Mutex<Entries>,
}

impl CachedQueueStore {
    pub fn new(inner: Arc<dyn QueueStore>) -> CachedQueueStore {
        CachedQueueStore { inner, entries: Mutex::new(HashMap::new()) }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // Plain inserts and removes: a poisoned map is still sound.
        switchboard_core::sync::lock_unpoisoned(&self.entries)
    }

    fn forget(&self, tenant: &TenantId, queue_id: &QueueId) {
        self.entries().remove(&(tenant.clone(), queue_id.clone()));
    }
}

#[async_trait]
impl QueueStore for CachedQueueStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        self.entries().retain(|(owner, _), _| owner != tenant);
        self.inner.erase_tenant(tenant).await
    }

    async fn create_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<(), Error> {
        self.forget(tenant, queue_id);
        self.inner.create_queue(tenant, queue_id, queue).await
    }

    async fn get_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<Option<Queue>, Error> {
        let key = (tenant.clone(), queue_id.clone());
        if let Some((read_at, queue)) = self.entries().get(&key)
            && read_at.elapsed() < QUEUE_CACHE_TTL
        {
            return Ok(Some(queue.clone()));
        }
        let queue = self.inner.get_queue(tenant, queue_id).await?;
        let mut entries = self.entries();
        match &queue {
            Some(queue) => {
                if entries.len() >= MAX_CACHED_QUEUES {
                    entries.clear();
                }
                entries.insert(key, (Instant::now(), queue.clone()));
            }
            None => {
                entries.remove(&key);
            }
        }
        Ok(queue)
    }

    async fn get_queue_fresh(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<Option<Queue>, Error> {
        self.inner.get_queue(tenant, queue_id).await
    }

    async fn list_queues(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<Queue>, Error> {
        self.inner.list_queues(tenant, page).await
    }

    async fn update_queue(&self, tenant: &TenantId, queue_id: &QueueId, queue: &Queue) -> Result<bool, Error> {
        // Forgotten after the write too: a read racing the write may have
        // cached the old definition meanwhile.
        self.forget(tenant, queue_id);
        let updated = self.inner.update_queue(tenant, queue_id, queue).await;
        self.forget(tenant, queue_id);
        updated
    }

    async fn delete_queue(&self, tenant: &TenantId, queue_id: &QueueId) -> Result<bool, Error> {
        self.forget(tenant, queue_id);
        let deleted = self.inner.delete_queue(tenant, queue_id).await;
        self.forget(tenant, queue_id);
        deleted
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::memory::MemoryQueueStore;

    fn ids() -> (TenantId, QueueId) {
        (TenantId::parse("acme", "t").unwrap(), QueueId::parse("sales", "q").unwrap())
    }

    #[tokio::test]
    async fn the_cache_passes_the_queue_store_contract() {
        let store = CachedQueueStore::new(Arc::new(MemoryQueueStore::default()));
        crate::store::contract::queue_store_contract(&store).await.unwrap();
    }

    #[tokio::test]
    async fn another_replicas_change_is_seen_after_the_ttl_and_this_ones_at_once() {
        let shared: Arc<dyn QueueStore> = Arc::new(MemoryQueueStore::default());
        let (here, elsewhere) = (CachedQueueStore::new(shared.clone()), CachedQueueStore::new(shared));
        let (tenant, queue_id) = ids();
        assert!(here.get_queue(&tenant, &queue_id).await.unwrap().is_none());
        elsewhere
            .create_queue(&tenant, &queue_id, &Queue { display_name: "v1".into(), ..Queue::default() })
            .await
            .unwrap();
        assert_eq!(
            here.get_queue(&tenant, &queue_id).await.unwrap().unwrap().display_name,
            "v1",
            "absence is not cached"
        );
        elsewhere
            .update_queue(&tenant, &queue_id, &Queue { display_name: "v2".into(), ..Queue::default() })
            .await
            .unwrap();
        assert_eq!(here.get_queue(&tenant, &queue_id).await.unwrap().unwrap().display_name, "v1", "cached for the ttl");
        assert_eq!(
            here.get_queue_fresh(&tenant, &queue_id).await.unwrap().unwrap().display_name,
            "v2",
            "the API's read sees the change at once"
        );
        here.entries().values_mut().for_each(|(read_at, _)| *read_at -= QUEUE_CACHE_TTL);
        assert_eq!(here.get_queue(&tenant, &queue_id).await.unwrap().unwrap().display_name, "v2", "then read again");
        here.update_queue(&tenant, &queue_id, &Queue { display_name: "v3".into(), ..Queue::default() }).await.unwrap();
        assert_eq!(
            here.get_queue(&tenant, &queue_id).await.unwrap().unwrap().display_name,
            "v3",
            "its own change at once"
        );
        here.delete_queue(&tenant, &queue_id).await.unwrap();
        assert!(here.get_queue(&tenant, &queue_id).await.unwrap().is_none(), "its own delete at once");
    }
}
