//! Group commit: small writes that many callers make at once, coalesced
//! into one write per batch without a timer or a background task.
//!
//! A caller queues its item and waits for the writer's turn; whoever gets
//! the turn writes everything queued by then (its own item and those of
//! callers that arrived while the previous batch was being written) and
//! hands every caller of the batch the batch's outcome. At low load each
//! write holds one item and costs what a direct write costs; under load a
//! write holds whatever arrived during the previous one, so round trips
//! and statements per item fall as the load rises.

use std::future::Future;
use std::sync::Mutex;

use switchboard_core::Error;
use switchboard_core::sync::lock_unpoisoned;
use tokio::sync::oneshot;

type Waiter<Item> = (Item, oneshot::Sender<Result<(), Error>>);

/// Coalesces concurrent writes of `Item`s (see the module docs).
pub struct GroupCommit<Item> {
    queued: Mutex<Vec<Waiter<Item>>>,
    // Held while a batch is written: one batch at a time, so the next one
    // collects whatever arrives meanwhile.
    writer_turn: tokio::sync::Mutex<()>,
}

impl<Item> Default for GroupCommit<Item> {
    fn default() -> Self {
        GroupCommit { queued: Mutex::new(Vec::new()), writer_turn: tokio::sync::Mutex::new(()) }
    }
}

impl<Item> GroupCommit<Item> {
    /// Writes `item` with `write`, in one call of `write` together with
    /// the items other callers submitted meanwhile; returns that call's
    /// outcome. Every caller of one `GroupCommit` must pass a `write` that
    /// does the same thing, since any caller's may write anyone's items.
    /// A caller cancelled while writing fails its batch's other callers
    /// with UNAVAILABLE (their items may or may not have been written).
    pub async fn submit<Write, Written>(&self, item: Item, write: Write) -> Result<(), Error>
    where
        Write: FnOnce(Vec<Item>) -> Written,
        Written: Future<Output = Result<(), Error>>,
    {
        let (sender, receiver) = oneshot::channel();
        lock_unpoisoned(&self.queued).push((item, sender));
        {
            let _turn = self.writer_turn.lock().await;
            let batch = std::mem::take(&mut *lock_unpoisoned(&self.queued));
            // Empty when an earlier writer took this caller's item already.
            if !batch.is_empty() {
                let (items, waiters): (Vec<Item>, Vec<_>) = batch.into_iter().unzip();
                let outcome = write(items).await;
                for waiter in waiters {
                    // A waiter that went away no longer needs the outcome.
                    let _ = waiter.send(outcome.clone());
                }
            }
        }
        receiver.await.unwrap_or_else(|_| Err(Error::unavailable("the batched write was cancelled")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_lone_caller_writes_its_own_item() {
        let group = GroupCommit::default();
        let written = Mutex::new(Vec::new());
        group
            .submit(7, |items| {
                lock_unpoisoned(&written).push(items);
                async { Ok(()) }
            })
            .await
            .expect("written");
        assert_eq!(*lock_unpoisoned(&written), vec![vec![7]]);
    }

    #[tokio::test]
    async fn callers_arriving_during_a_write_share_the_next_one() {
        let group = Arc::new(GroupCommit::default());
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (release_first, first_released) = oneshot::channel::<()>();
        let first_write_started = Arc::new(tokio::sync::Notify::new());

        let first = tokio::spawn({
            let (group, batches, started) = (group.clone(), batches.clone(), first_write_started.clone());
            async move {
                group
                    .submit(0, |items| async move {
                        started.notify_one();
                        let _ = first_released.await;
                        lock_unpoisoned(&batches).push(items);
                        Ok(())
                    })
                    .await
            }
        });
        first_write_started.notified().await;
        let followers: Vec<_> = (1..=5)
            .map(|item| {
                let (group, batches) = (group.clone(), batches.clone());
                tokio::spawn(async move {
                    group
                        .submit(item, |items| {
                            lock_unpoisoned(&batches).push(items);
                            async { Ok(()) }
                        })
                        .await
                })
            })
            .collect();
        // Every follower has queued its item before the first write ends.
        while lock_unpoisoned(&group.queued).len() < 5 {
            tokio::task::yield_now().await;
        }
        release_first.send(()).expect("the first writer waits");
        first.await.expect("joined").expect("first written");
        for follower in followers {
            follower.await.expect("joined").expect("follower written");
        }
        let mut batches = lock_unpoisoned(&batches).clone();
        batches[1].sort();
        assert_eq!(batches, vec![vec![0], vec![1, 2, 3, 4, 5]]);
    }

    #[tokio::test]
    async fn every_caller_of_a_failed_batch_gets_its_error() {
        let group = Arc::new(GroupCommit::default());
        let outcomes = futures::future::join_all((0..3).map(|item| {
            let group = group.clone();
            async move { group.submit(item, |_| async { Err(Error::unavailable("the database is down")) }).await }
        }))
        .await;
        for outcome in outcomes {
            let error = outcome.expect_err("the write failed");
            assert_eq!(error.message, "the database is down");
        }
    }
}
