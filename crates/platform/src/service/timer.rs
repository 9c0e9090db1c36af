//! Work that runs on a timer: [`Kit::every`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use switchboard_core::Error;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Kit;
use crate::metrics::{labels, metrics};

/// When a timer task runs: every `interval`, and also whenever `wake` is
/// notified (when paced, no run begins sooner than `pace` after the last run
/// that covered a wake-up; a run covers every wake-up before it began);
/// optionally once more at shutdown (to publish what the service did last).
pub struct Every {
    name: String,
    interval: Duration,
    wake: Option<Arc<Notify>>,
    pace: Duration,
    at_shutdown: bool,
}

impl Every {
    pub fn new(name: impl Into<String>, interval: Duration) -> Every {
        Every { name: name.into(), interval, wake: None, pace: Duration::ZERO, at_shutdown: false }
    }

    /// Also runs as soon as `wake` is notified.
    pub fn woken_by(mut self, wake: Arc<Notify>) -> Every {
        self.wake = Some(wake);
        self
    }

    /// Begins no run sooner than `pace` after the last run that covered a
    /// wake-up: wake-ups closer together than that share one run, and runs
    /// on the interval wait too. A wake-up after a quiet spell is not
    /// delayed, nor by runs on the interval that covered none. Zero: every
    /// wake-up runs at once.
    pub fn paced(mut self, pace: Duration) -> Every {
        self.pace = pace;
        self
    }

    /// Runs once more when shutdown begins.
    pub fn and_at_shutdown(mut self) -> Every {
        self.at_shutdown = true;
        self
    }

    /// Runs `tick` on this schedule until `shutdown` (and once more then,
    /// if so asked).
    async fn run<Tick, TickFuture>(self, shutdown: CancellationToken, mut tick: Tick) -> Result<(), Error>
    where
        Tick: FnMut() -> TickFuture + Send + 'static,
        TickFuture: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let Every { name, interval, wake, pace, at_shutdown } = self;
        let wake = wake.unwrap_or_default();
        // When the last run that covered a wake-up began: every run waits
        // for the pace after it. Runs that covered none (a look on the
        // interval while idle) do not count, so they never delay a wake-up.
        let mut last_woken_run: Option<Instant> = None;
        loop {
            let (mut stopping, woken) = tokio::select! {
                () = shutdown.cancelled() => (true, false),
                () = wake.notified() => (false, true),
                () = tokio::time::sleep(interval) => (false, false),
            };
            // Wake-ups during the pace wait are taken by the run after it.
            if let Some(due) = last_woken_run.map(|began| began + pace).filter(|_| !stopping && !pace.is_zero()) {
                stopping = tokio::select! {
                    () = shutdown.cancelled() => true,
                    () = tokio::time::sleep_until(due) => false,
                };
            }
            if stopping && !at_shutdown {
                return Ok(());
            }
            // This run covers every wake-up before it began: one kept from
            // the pace wait would only cause an empty run after it.
            let covered = wake.notified().now_or_never().is_some();
            if woken || covered {
                last_woken_run = Some(Instant::now());
            }
            if let Err(error) = tick().await {
                metrics().task_failures.get_or_create(&labels([("task", &name)])).inc();
                tracing::warn!(task = %name, error = %error, "timer task failed, retrying on the next tick");
            }
            if stopping {
                return Ok(());
            }
        }
    }
}

impl Kit {
    /// Runs `tick` on the schedule until shutdown. A failed tick is logged
    /// and counted, and the next tick tries again: timers do work that a
    /// later run can always redo (sweeps, relays, lease renewals).
    pub fn every<Tick, TickFuture>(&mut self, every: Every, tick: Tick)
    where
        Tick: FnMut() -> TickFuture + Send + 'static,
        TickFuture: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let shutdown = self.shutdown();
        let task_name = every.name.clone();
        self.task(task_name, every.run(shutdown, tick));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::Every;

    const PACE: Duration = Duration::from_millis(10);
    const NEVER: Duration = Duration::from_secs(3_600);

    /// A timer task woken by the returned `Notify`, counting its runs.
    fn counted(every: Every) -> (Arc<Notify>, Arc<AtomicUsize>, CancellationToken) {
        let (wake, runs, shutdown) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)), CancellationToken::new());
        let counter = Arc::clone(&runs);
        let run = every.woken_by(Arc::clone(&wake)).run(shutdown.clone(), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        });
        tokio::spawn(run);
        (wake, runs, shutdown)
    }

    /// Lets every ready task run (time is paused: nothing else moves it).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wake_ups_closer_than_the_pace_share_one_run() {
        let (wake, runs, _shutdown) = counted(Every::new("paced", NEVER).paced(PACE));
        wake.notify_one();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the first wake-up runs at once");
        for _ in 0..3 {
            tokio::time::advance(Duration::from_millis(2)).await;
            wake.notify_one();
            settle().await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "wake-ups within the pace wait for it");
        tokio::time::advance(Duration::from_millis(4)).await;
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one run for the three wake-ups, once the pace passed");
        tokio::time::advance(PACE * 2).await;
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "no run without a wake-up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_after_a_quiet_spell_runs_at_once() {
        let (wake, runs, _shutdown) = counted(Every::new("paced", NEVER).paced(PACE));
        wake.notify_one();
        settle().await;
        tokio::time::advance(PACE * 3).await;
        let woken_at = Instant::now();
        wake.notify_one();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(Instant::now(), woken_at, "not delayed");
    }

    #[tokio::test(start_paused = true)]
    async fn runs_on_the_interval_do_not_delay_a_wake_up() {
        let interval = PACE / 2;
        let (wake, runs, _shutdown) = counted(Every::new("paced", interval).paced(PACE));
        settle().await;
        tokio::time::advance(interval + Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the interval's run");
        let woken_at = Instant::now();
        wake.notify_one();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "the wake-up's run");
        assert_eq!(Instant::now(), woken_at, "not delayed by the interval's run");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_on_the_interval_within_the_pace_waits_for_it() {
        let interval = Duration::from_millis(3);
        let (wake, runs, _shutdown) = counted(Every::new("paced", interval).paced(PACE));
        wake.notify_one();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the wake-up's run");
        tokio::time::advance(PACE - Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the interval's run waits for the pace");
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "then runs");
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_every_wake_up_runs_at_once() {
        let (wake, runs, _shutdown) = counted(Every::new("unpaced", NEVER));
        for expected in 1..=3 {
            wake.notify_one();
            settle().await;
            assert_eq!(runs.load(Ordering::SeqCst), expected);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_the_pace_wait_runs_the_last_round_at_once() {
        let (wake, runs, shutdown) = counted(Every::new("paced", NEVER).paced(PACE).and_at_shutdown());
        wake.notify_one();
        settle().await;
        wake.notify_one();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "waiting for the pace");
        shutdown.cancel();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "the shutdown's run does not wait for the pace");
    }
}
