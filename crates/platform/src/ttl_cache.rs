//! A small per-process cache whose entries are trusted for a fixed time:
//! for definitions read on every request (a channel per webhook call) that
//! change rarely, where acting on a definition up to `ttl` old is
//! acceptable and documented.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchboard_core::sync::lock_unpoisoned;

/// Entries of `V` by `K`, each trusted for `ttl` after it was stored.
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> TtlCache<K, V> {
        TtlCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The value stored for `key` less than `ttl` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = lock_unpoisoned(&self.entries);
        entries.get(key).filter(|(stored_at, _)| stored_at.elapsed() < self.ttl).map(|(_, value)| value.clone())
    }

    /// Stores `value` for `key`, dropping entries past their time so the
    /// map holds only what was used within the last `ttl`.
    pub fn insert(&self, key: K, value: V) {
        let mut entries = lock_unpoisoned(&self.entries);
        let ttl = self.ttl;
        entries.retain(|_, (stored_at, _)| stored_at.elapsed() < ttl);
        entries.insert(key, (Instant::now(), value));
    }

    pub fn forget(&self, key: &K) {
        lock_unpoisoned(&self.entries).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_trusted_for_their_time_only() {
        let cache = TtlCache::new(Duration::from_millis(50));
        cache.insert("acme", 1);
        assert_eq!(cache.get(&"acme"), Some(1));
        assert_eq!(cache.get(&"globex"), None);
        cache.forget(&"acme");
        assert_eq!(cache.get(&"acme"), None, "forgotten");
        let expired = TtlCache::new(Duration::ZERO);
        expired.insert("acme", 1);
        assert_eq!(expired.get(&"acme"), None, "past its time");
    }
}
