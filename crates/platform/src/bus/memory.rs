//! The in-process event bus of `dev` mode: one append-only log per topic,
//! committed offsets per (group, topic), at-least-once like Kafka. Members
//! of one group do not split partitions: a `dev` process runs one member of
//! each group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use switchboard_core::Error;
use switchboard_core::event::encode;
use switchboard_proto::events::v1::EventEnvelope;
use tokio::sync::Notify;

use super::{
    Assignment, EventBus, Pace, RawRecord, Received, Scan, StartFrom, Subscription, decode_record, outgoing_traceparent,
};

/// A stored record: key, value and `traceparent`.
type Stored = (Vec<u8>, Vec<u8>, Option<String>);

#[derive(Default)]
struct Log {
    records_by_topic: HashMap<String, Vec<Stored>>,
    committed_by_group_topic: HashMap<(String, String), i64>,
}

#[derive(Default, Clone)]
pub struct MemoryBus {
    log: Arc<Mutex<Log>>,
    appended: Arc<Notify>,
}

impl MemoryBus {
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // A panicking holder cannot leave the log half-written (every
        // mutation is one push or insert), so a poisoned lock is still sound.
        switchboard_core::sync::lock_unpoisoned(&self.log)
    }

    fn append(&self, topic: &str, stored: Stored) {
        self.lock().records_by_topic.entry(topic.to_owned()).or_default().push(stored);
        self.appended.notify_waiters();
    }
}

fn raw(topic: &str, offset: usize, (key, payload, traceparent): &Stored) -> RawRecord {
    RawRecord {
        topic: topic.to_owned(),
        partition: 0,
        offset: offset as i64,
        key: key.clone(),
        payload: payload.clone(),
        traceparent: traceparent.clone(),
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, topic: &str, envelope: &EventEnvelope) -> Result<(), Error> {
        self.append(topic, (envelope.subject.as_bytes().to_vec(), encode(envelope), outgoing_traceparent()));
        Ok(())
    }

    async fn publish_raw(&self, record: &RawRecord) -> Result<(), Error> {
        self.append(&record.topic, (record.key.clone(), record.payload.clone(), record.traceparent.clone()));
        Ok(())
    }

    /// In memory every record is seen at once, whatever the pace.
    async fn subscribe_paced(
        &self,
        group: &str,
        topics: &[&str],
        start: StartFrom,
        _pace: Pace,
    ) -> Result<Box<dyn Subscription>, Error> {
        let mut log = self.lock();
        let mut positions = Vec::new();
        for topic in topics {
            let end = log.records_by_topic.get(*topic).map_or(0, |records| records.len() as i64);
            let key = (group.to_owned(), (*topic).to_owned());
            let position = match (log.committed_by_group_topic.get(&key), start) {
                (Some(committed), _) => *committed,
                (None, StartFrom::Earliest) => 0,
                (None, StartFrom::Latest) => end,
            };
            log.committed_by_group_topic.entry(key).or_insert(position);
            positions.push(((*topic).to_owned(), position));
        }
        Ok(Box::new(MemorySubscription { bus: self.clone(), group: group.to_owned(), positions, next_topic: 0 }))
    }

    async fn scan(&self, topic: &str, visit: &mut (dyn FnMut(RawRecord) -> Scan + Send)) -> Result<(), Error> {
        let records = self.lock().records_by_topic.get(topic).cloned().unwrap_or_default();
        for (offset, stored) in records.iter().enumerate() {
            if visit(raw(topic, offset, stored)) == Scan::Stop {
                break;
            }
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}

struct MemorySubscription {
    bus: MemoryBus,
    group: String,
    /// Next offset to read per topic.
    positions: Vec<(String, i64)>,
    /// Round-robin start, so one busy topic cannot starve the others.
    next_topic: usize,
}

impl MemorySubscription {
    fn poll(&mut self) -> Option<RawRecord> {
        let log = self.bus.lock();
        let topic_count = self.positions.len();
        for step in 0..topic_count {
            let index = (self.next_topic + step) % topic_count;
            let (topic, position) = &mut self.positions[index];
            let Some(stored) =
                log.records_by_topic.get(topic.as_str()).and_then(|records| records.get(*position as usize))
            else {
                continue;
            };
            let record = raw(topic, *position as usize, stored);
            *position += 1;
            self.next_topic = (index + 1) % topic_count;
            return Some(record);
        }
        None
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    /// The in-process log has one member per group: always assigned.
    fn assignment(&self) -> Assignment {
        Assignment::assigned()
    }

    async fn receive(&mut self) -> Result<Received, Error> {
        loop {
            // Register interest before polling so an append between the
            // poll and the wait still wakes us.
            let appended = self.bus.appended.clone();
            let notified = appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(record) = self.poll() {
                return Ok(decode_record(record));
            }
            notified.await;
        }
    }

    fn try_receive(&mut self) -> Result<Option<Received>, Error> {
        Ok(self.poll().map(decode_record))
    }

    async fn ack_position(&mut self, topic: &str, _partition: i32, offset: i64) -> Result<(), Error> {
        let mut log = self.bus.lock();
        let committed = log.committed_by_group_topic.entry((self.group.clone(), topic.to_owned())).or_insert(0);
        *committed = (*committed).max(offset + 1);
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<(), Error> {
        Ok(())
    }
}
