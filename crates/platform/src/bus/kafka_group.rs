//! Consumer-group membership of a Kafka subscription: rebalance handling,
//! and healing a member the group left without partitions.
//!
//! Found on the local broker: a service killed with `kill -9` and restarted
//! before its old member's session ran out joined with no partitions and
//! never got any, because the broker did not rebalance when the dead member
//! expired; it consumed nothing while looking healthy. Whatever the broker
//! does, a member that holds no partitions while records of its topics wait
//! and nobody commits them ("starving") reports it (readiness) and rejoins
//! the group, with backoff, which makes the broker rebalance.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;

use super::Assignment;
use crate::metrics::{Labels, labels, metrics};

/// How long a partition may hold records no one commits before a member
/// without partitions counts as starving.
pub(super) const STALL_AFTER: Duration = Duration::from_secs(5);
/// How often a member without partitions looks at its group's progress.
pub(super) const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// The first rejoin waits this long after the previous one; each further
/// one twice as long, up to [`MAX_REJOIN_BACKOFF`].
const FIRST_REJOIN_BACKOFF: Duration = Duration::from_secs(5);
const MAX_REJOIN_BACKOFF: Duration = Duration::from_secs(60);

/// Rebalance handling of one consumer group member: logs every assignment
/// and revocation, commits the stored offsets (effects already done) before
/// partitions move to another member so it does not redo them, tracks what
/// this member holds, and exports its lag.
pub(super) struct GroupContext {
    pub(super) group: String,
    /// The consumer's name in metrics (the logical group).
    pub(super) consumer: String,
    pub(super) topic_prefix: String,
    pub(super) assignment: Assignment,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, topic_statistics) in statistics.topics {
            for (partition, partition_statistics) in topic_statistics.partitions {
                if partition < 0 {
                    continue;
                }
                match lag_series(&partition_statistics) {
                    LagSeries::Show(lag) => {
                        metrics().consumer_lag.get_or_create(&self.lag_labels(&topic, partition)).set(lag);
                    }
                    LagSeries::Keep => {}
                    LagSeries::Drop => {
                        metrics().consumer_lag.remove(&self.lag_labels(&topic, partition));
                    }
                }
            }
        }
    }
}

impl GroupContext {
    /// The lag series of one partition: the consumer, the logical topic
    /// and the partition.
    fn lag_labels(&self, physical_topic: &str, partition: i32) -> Labels {
        let logical = physical_topic.strip_prefix(&self.topic_prefix).unwrap_or(physical_topic);
        labels([("consumer", &self.consumer), ("topic", logical), ("partition", &partition.to_string())])
    }
}

/// What a partition's lag series shows after a statistics report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LagSeries {
    /// The member consumes the partition and is this far behind.
    Show(i64),
    /// The member consumes it but does not know its lag yet.
    Keep,
    /// The member does not consume it (never did, or it moved to another
    /// member): its series is another member's to report.
    Drop,
}

/// librdkafka reports a lag of -1 for partitions this member does not
/// consume, and also for one it consumes that never held a record
/// (nothing was ever consumed or committed there): such a partition,
/// empty, is 0 behind, so a dashboard shows every partition from the
/// start.
fn lag_series(statistics: &rdkafka::statistics::Partition) -> LagSeries {
    let held = !matches!(statistics.fetch_state.as_str(), "none" | "stopping" | "stopped");
    if !held {
        return LagSeries::Drop;
    }
    if statistics.consumer_lag >= 0 {
        return LagSeries::Show(statistics.consumer_lag);
    }
    let empty = statistics.hi_offset >= 0 && statistics.hi_offset == statistics.lo_offset;
    if statistics.fetch_state == "active" && empty { LagSeries::Show(0) } else { LagSeries::Keep }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else {
            return;
        };
        tracing::info!(group = %self.group, partitions = partitions.count(), "kafka partitions revoked");
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(group = %self.group, error = %error, "commit before revocation failed"),
        }
        self.assignment.set_partitions(0);
        self.assignment.set_held([]);
        metrics().consumer_partitions.get_or_create(&labels([("consumer", &self.consumer)])).set(0);
        // Another member reports these partitions from now on.
        for revoked in partitions.elements() {
            metrics().consumer_lag.remove(&self.lag_labels(revoked.topic(), revoked.partition()));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(group = %self.group, partitions = partitions.count(), "kafka partitions assigned");
                self.assignment.set_partitions(partitions.count());
                self.assignment.set_held(partitions.elements().iter().map(|element| {
                    let logical = element.topic().strip_prefix(&self.topic_prefix).unwrap_or(element.topic());
                    (logical.to_owned(), element.partition())
                }));
                let held = i64::try_from(partitions.count()).unwrap_or(i64::MAX);
                metrics().consumer_partitions.get_or_create(&labels([("consumer", &self.consumer)])).set(held);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(group = %self.group, error = %error, "kafka rebalance failed");
                // librdkafka unassigns: hints of those partitions are no
                // longer this member's to hand over.
                self.assignment.set_held([]);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(group = %self.group, error = %error, "offset commit failed"),
        }
    }
}

/// Where one partition stands: the group's committed offset (`None`
/// before anyone committed) and the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PartitionProgress {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) committed: Option<i64>,
    pub(super) high_watermark: i64,
}

/// Watches the group's progress while this member holds no partitions.
#[derive(Debug, Default)]
pub(super) struct StarvationWatch {
    /// Per partition: the offset the group had consumed to when it last
    /// moved, and when that was.
    last_progress: HashMap<(String, i32), (i64, Instant)>,
    next_rejoin: Option<Instant>,
    rejoin_backoff: Option<Duration>,
}

impl StarvationWatch {
    /// Forgets what it saw: the member holds partitions again.
    pub(super) fn reset(&mut self) {
        *self = StarvationWatch::default();
    }

    /// Records `progress` seen at `now`; true when some partition has held
    /// records nobody committed for [`STALL_AFTER`]. A partition no one
    /// ever committed counts from the end it had when first seen, so
    /// history the group never meant to read does not count.
    pub(super) fn observe(&mut self, progress: &[PartitionProgress], now: Instant) -> bool {
        let mut starving = false;
        for partition in progress {
            let key = (partition.topic.clone(), partition.partition);
            let (consumed_to, since) = self
                .last_progress
                .entry(key)
                .or_insert_with(|| (partition.committed.unwrap_or(partition.high_watermark), now));
            if let Some(committed) = partition.committed
                && committed != *consumed_to
            {
                *consumed_to = committed;
                *since = now;
            }
            if partition.high_watermark > *consumed_to && now.duration_since(*since) >= STALL_AFTER {
                starving = true;
            }
        }
        starving
    }

    /// Whether a starving member may rejoin now; if so, the next rejoin
    /// waits twice as long as this one did.
    pub(super) fn may_rejoin(&mut self, now: Instant) -> bool {
        if self.next_rejoin.is_some_and(|next| now < next) {
            return false;
        }
        let backoff = self.rejoin_backoff.map_or(FIRST_REJOIN_BACKOFF, |backoff| (backoff * 2).min(MAX_REJOIN_BACKOFF));
        self.rejoin_backoff = Some(backoff);
        self.next_rejoin = Some(now + backoff);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(committed: Option<i64>, high_watermark: i64) -> Vec<PartitionProgress> {
        vec![PartitionProgress { topic: "t".to_owned(), partition: 0, committed, high_watermark }]
    }

    #[test]
    fn records_nobody_commits_make_a_member_starve_after_the_stall_time() {
        let mut watch = StarvationWatch::default();
        let start = Instant::now();
        assert!(!watch.observe(&progress(Some(10), 15), start), "not at once");
        assert!(!watch.observe(&progress(Some(10), 20), start + STALL_AFTER / 2));
        assert!(watch.observe(&progress(Some(10), 20), start + STALL_AFTER), "stalled for the whole window");
    }

    #[test]
    fn progress_by_another_member_or_no_backlog_is_not_starving() {
        let mut watch = StarvationWatch::default();
        let start = Instant::now();
        watch.observe(&progress(Some(10), 15), start);
        assert!(!watch.observe(&progress(Some(14), 18), start + STALL_AFTER), "someone commits");
        let mut idle = StarvationWatch::default();
        idle.observe(&progress(Some(7), 7), start);
        assert!(!idle.observe(&progress(Some(7), 7), start + STALL_AFTER * 3), "nothing waits");
    }

    #[test]
    fn without_commits_only_records_after_the_first_look_count() {
        let mut watch = StarvationWatch::default();
        let start = Instant::now();
        watch.observe(&progress(None, 100), start);
        assert!(!watch.observe(&progress(None, 100), start + STALL_AFTER * 2), "old history");
        watch.observe(&progress(None, 101), start + STALL_AFTER * 2);
        assert!(watch.observe(&progress(None, 101), start + STALL_AFTER * 3), "a new record nobody takes");
    }

    #[test]
    fn rejoins_back_off() {
        let mut watch = StarvationWatch::default();
        let start = Instant::now();
        assert!(watch.may_rejoin(start));
        assert!(!watch.may_rejoin(start + FIRST_REJOIN_BACKOFF / 2));
        assert!(watch.may_rejoin(start + FIRST_REJOIN_BACKOFF));
        assert!(!watch.may_rejoin(start + FIRST_REJOIN_BACKOFF * 2), "the second wait is twice as long");
        assert!(watch.may_rejoin(start + FIRST_REJOIN_BACKOFF * 3));
    }
}
