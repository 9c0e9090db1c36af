//! [`consume_by_key`]: the loop of a [`ConsumerSpec::concurrent_by_key`]
//! consumer.
//!
//! [`ConsumerSpec::concurrent_by_key`]: super::ConsumerSpec::concurrent_by_key

use std::collections::HashMap;
use std::future::Future;

use switchboard_core::Error;
use tokio_util::sync::CancellationToken;

use super::{Consumer, Positions, finish, receive_next};
use crate::bus::{Delivery, Received, Subscription};

/// Where a record's order is kept: its topic, partition and key.
type RecordKey = (String, i32, Vec<u8>);

/// [`super::consume`] for a [`super::ConsumerSpec::concurrent_by_key`] spec: each batch
/// of waiting records is split by partition and key, the parts handled
/// concurrently and each in order, and the batch's offsets stored once all
/// of it is finished.
pub async fn consume_by_key<Handler, HandlerFuture>(
    consumer: Consumer,
    mut subscription: Box<dyn Subscription>,
    handler: Handler,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    Handler: Fn(Delivery) -> HandlerFuture + Send + Sync,
    HandlerFuture: Future<Output = Result<(), Error>> + Send,
{
    while let Some(records) = receive_next(&consumer, subscription.as_mut(), &shutdown).await {
        let mut parts: HashMap<RecordKey, Vec<Received>> = HashMap::new();
        for received in records {
            let key = match &received {
                Received::Event(delivery) => (delivery.topic.clone(), delivery.partition, delivery.key.clone()),
                Received::Malformed(malformed) => {
                    (malformed.record.topic.clone(), malformed.record.partition, malformed.record.key.clone())
                }
            };
            parts.entry(key).or_default().push(received);
        }
        let handled = futures::future::join_all(parts.into_values().map(|part| async {
            let mut finished = Vec::with_capacity(part.len());
            for received in part {
                finished.push(finish(&consumer, received, &handler, &shutdown).await?);
            }
            Some(finished)
        }))
        .await;
        // Shutdown came while a record was retried: nothing of the batch
        // is stored, and it is delivered again after restart.
        let Some(handled) = handled.into_iter().collect::<Option<Vec<_>>>() else { break };
        let mut positions = Positions::default();
        for (topic, partition, offset) in handled.into_iter().flatten() {
            positions.advance(&topic, partition, offset);
        }
        positions.store(subscription.as_mut()).await?;
    }
    subscription.close().await
}
