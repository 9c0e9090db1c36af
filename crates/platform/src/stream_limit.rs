//! Server streams a key may hold open at once in one process
//! (`auth.rate_limit.streams_per_key`): a stream costs a task and a buffer
//! for as long as it lasts, so no key can open them without end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchboard_core::{Error, Principal};

pub struct StreamLimit {
    max_per_key: usize,
    open_by_key: Mutex<HashMap<String, usize>>,
}

/// One open stream of a key; dropping it (the stream ended) frees the slot.
pub struct StreamSlot {
    limit: Arc<StreamLimit>,
    key: String,
}

impl StreamLimit {
    /// At most `max_per_key` streams per key; 0 is no limit.
    pub fn new(max_per_key: usize) -> Arc<StreamLimit> {
        Arc::new(StreamLimit { max_per_key, open_by_key: Mutex::new(HashMap::new()) })
    }

    /// A slot for one more stream of `principal`'s key, or
    /// RESOURCE_EXHAUSTED `TOO_MANY_STREAMS` when it holds the most.
    pub fn open(self: &Arc<Self>, principal: &Principal) -> Result<StreamSlot, Error> {
        let mut open_by_key = switchboard_core::sync::lock_unpoisoned(&self.open_by_key);
        let open = open_by_key.entry(principal.key_name.clone()).or_insert(0);
        if self.max_per_key > 0 && *open >= self.max_per_key {
            return Err(Error::resource_exhausted(format!(
                "this key holds {} streams open here, the most it may: close one first",
                self.max_per_key
            ))
            .with_reason("TOO_MANY_STREAMS"));
        }
        *open += 1;
        Ok(StreamSlot { limit: Arc::clone(self), key: principal.key_name.clone() })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open_by_key = switchboard_core::sync::lock_unpoisoned(&self.limit.open_by_key);
        if let Some(open) = open_by_key.get_mut(&self.key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                open_by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(key: &str) -> Principal {
        Principal {
            key_name: key.to_owned(),
            role: switchboard_core::Role::OperatorAdmin,
            tenant: None,
            agent: None,
            expires_at_ms: None,
        }
    }

    #[test]
    fn a_key_holds_at_most_its_streams_and_a_closed_one_frees_its_slot() {
        let limit = StreamLimit::new(2);
        let first = limit.open(&principal("a")).expect("one");
        let _second = limit.open(&principal("a")).expect("two");
        let refused = limit.open(&principal("a")).err().expect("three");
        assert_eq!(refused.explicit_reason, Some("TOO_MANY_STREAMS"));
        let _other = limit.open(&principal("b")).expect("another key is not held back");
        drop(first);
        assert!(limit.open(&principal("a")).is_ok(), "a closed stream frees its slot");
        let unlimited = StreamLimit::new(0);
        let held: Vec<StreamSlot> = (0..100).map(|_| unlimited.open(&principal("a")).expect("no limit")).collect();
        assert_eq!(held.len(), 100);
    }
}
