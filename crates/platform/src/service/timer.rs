//! Work that runs on a timer: [`Kit::every`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::Error;
use tokio::sync::Notify;

use super::Kit;
use crate::metrics::{labels, metrics};

/// When a timer task runs: every `interval`, and also whenever `wake` is
/// notified; optionally once more at shutdown (to publish what the service
/// did last).
pub struct Every {
    name: String,
    interval: Duration,
    wake: Option<Arc<Notify>>,
    at_shutdown: bool,
}

impl Every {
    pub fn new(name: impl Into<String>, interval: Duration) -> Every {
        Every { name: name.into(), interval, wake: None, at_shutdown: false }
    }

    /// Also runs as soon as `wake` is notified.
    pub fn woken_by(mut self, wake: Arc<Notify>) -> Every {
        self.wake = Some(wake);
        self
    }

    /// Runs once more when shutdown begins.
    pub fn and_at_shutdown(mut self) -> Every {
        self.at_shutdown = true;
        self
    }
}

impl Kit {
    /// Runs `tick` on the schedule until shutdown. A failed tick is logged
    /// and counted, and the next tick tries again: timers do work that a
    /// later run can always redo (sweeps, relays, lease renewals).
    pub fn every<Tick, TickFuture>(&mut self, every: Every, mut tick: Tick)
    where
        Tick: FnMut() -> TickFuture + Send + 'static,
        TickFuture: Future<Output = Result<(), Error>> + Send,
    {
        let shutdown = self.shutdown();
        let Every { name, interval, wake, at_shutdown } = every;
        let task_name = name.clone();
        self.task(task_name, async move {
            let wake = wake.unwrap_or_default();
            loop {
                let stopping = tokio::select! {
                    () = shutdown.cancelled() => true,
                    () = wake.notified() => false,
                    () = tokio::time::sleep(interval) => false,
                };
                if stopping && !at_shutdown {
                    return Ok(());
                }
                if let Err(error) = tick().await {
                    metrics().task_failures.get_or_create(&labels([("task", &name)])).inc();
                    tracing::warn!(task = %name, error = %error, "timer task failed, retrying on the next tick");
                }
                if stopping {
                    return Ok(());
                }
            }
        });
    }
}
