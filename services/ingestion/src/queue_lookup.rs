//! The channels of the queues contacts are created in, as routing answered
//! for them, kept for [`QUEUE_LOOKUP_TTL`]: every contact names its queue,
//! and asking routing each time costs a call per contact. Only found queues
//! are kept (a queue created a moment ago is found at once); a queue
//! changed or deleted in routing is seen here within the TTL, and routing
//! checks the queue again when it takes the contact.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a queue routing described is taken as it was.
pub const QUEUE_LOOKUP_TTL: Duration = Duration::from_secs(1);
/// More queues than this and the memory starts over.
const MAX_REMEMBERED_QUEUES: usize = 10_000;

/// Queue name to (when routing answered, the queue's channels).
#[derive(Debug, Default)]
pub struct QueueLookups(Mutex<HashMap<String, (Instant, Vec<i32>)>>);

impl QueueLookups {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, (Instant, Vec<i32>)>> {
        // Plain inserts: a poisoned map is still sound.
        switchboard_core::sync::lock_unpoisoned(&self.0)
    }

    /// The channels of `queue` if routing described it within the TTL.
    pub fn channels(&self, queue: &str) -> Option<Vec<i32>> {
        let entries = self.entries();
        let (answered_at, channels) = entries.get(queue)?;
        (answered_at.elapsed() < QUEUE_LOOKUP_TTL).then(|| channels.clone())
    }

    pub fn remember(&self, queue: &str, channels: Vec<i32>) {
        let mut entries = self.entries();
        if entries.len() >= MAX_REMEMBERED_QUEUES {
            entries.clear();
        }
        entries.insert(queue.to_owned(), (Instant::now(), channels));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_remembered_for_the_ttl_only() {
        let lookups = QueueLookups::default();
        assert_eq!(lookups.channels("tenants/acme/queues/q"), None, "nothing before an answer");
        lookups.remember("tenants/acme/queues/q", vec![3]);
        assert_eq!(lookups.channels("tenants/acme/queues/q"), Some(vec![3]));
        assert_eq!(lookups.channels("tenants/globex/queues/q"), None, "by full name: per tenant");
        lookups.entries().values_mut().for_each(|(answered_at, _)| *answered_at -= QUEUE_LOOKUP_TTL);
        assert_eq!(lookups.channels("tenants/acme/queues/q"), None, "then asked again");
    }
}
