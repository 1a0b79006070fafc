//! Fairness: whether waiters are served in the order they arrived, and how
//! long an exclusive waiter waits behind a stream of shared holders.
//!
//! Order: a holder holds the lock while `waiters` exclusive waiters arrive
//! one at a time, each started only once the previous one is seen blocked
//! in `/proc/locks` (in `pg_locks` for the PostgreSQL backend); each one's command appends its number to a log. Once
//! the holder lets go, the log gives the order they were served in, and an
//! inversion is a pair served against its arrival order (0 for first come,
//! first served; n(n-1)/2 for the reverse order).
//!
//! Starvation: `readers` threads each run `WRAPPER -s LOCK sleep HOLD` back
//! to back, started a fraction of a hold apart so that there is always some
//! reader holding the lock. Once the stream runs, an exclusive waiter asks
//! for the lock; its wait, from spawn to the start of its command, is
//! reported in hold times. The stream stops when the waiter got in, or after
//! [`STREAM_LIMIT`] at the latest, so a starved waiter's figure is that
//! limit: it would have waited longer.

use std::fs;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};

use crate::measure_handoff::{STEP_LIMIT, start_holder};
use crate::rig::{Rig, Wrapper};

/// How long the reader stream runs at most once the exclusive waiter asked.
pub(crate) const STREAM_LIMIT: Duration = Duration::from_secs(3);
/// How long the stream runs before the exclusive waiter asks.
const STREAM_WARMUP: Duration = Duration::from_millis(300);
/// The lock used for the reader stream.
const STREAM_LOCK: &str = "stream";

/// The figures of each wrapper.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fairness {
    /// Pairs of waiters served against their arrival order.
    pub inversions: [Option<u64>; 2],
    /// The exclusive waiter's wait behind the readers, in hold times.
    pub writer_wait_holds: [Option<f64>; 2],
    /// True where the waiter was still waiting when the stream stopped.
    pub writer_starved: [bool; 2],
}

/// Both measurements for both wrappers ([`Wrapper::BOTH`] order).
pub(crate) fn measure(
    rig: &Rig,
    waiters: usize,
    readers: usize,
    hold: Duration,
) -> Result<Fairness> {
    eprintln!(
        "fairness: {waiters} waiters in order; an exclusive waiter behind {readers} readers \
         holding {} ms each",
        hold.as_millis()
    );
    let mut fairness = Fairness::default();
    for (i, wrapper) in Wrapper::BOTH.into_iter().enumerate() {
        let inversions = order(rig, wrapper, waiters)
            .with_context(|| format!("arrival order with {}", wrapper.key()))?;
        let (wait, starved) = writer_wait(rig, wrapper, readers, hold)
            .with_context(|| format!("reader stream with {}", wrapper.key()))?;
        let holds = wait.as_secs_f64() / hold.as_secs_f64();
        eprintln!(
            "  {:>8}: {inversions} inversions; writer waited {:.0} ms = {holds:.1} holds{}",
            wrapper.key(),
            wait.as_secs_f64() * 1e3,
            if starved {
                " (still waiting: starved)"
            } else {
                ""
            }
        );
        fairness.inversions[i] = Some(inversions);
        fairness.writer_wait_holds[i] = Some(holds);
        fairness.writer_starved[i] = starved;
    }
    Ok(fairness)
}

/// Pairs (i, j), i arrived before j, where j was served before i.
pub(crate) fn inversions(served: &[usize]) -> u64 {
    let mut count = 0;
    for (a, first) in served.iter().enumerate() {
        count += served[a + 1..]
            .iter()
            .filter(|later| *later < first)
            .count() as u64;
    }
    count
}

/// Arrival order through `wrapper`: the inversions among `waiters` waiters
/// queued one by one (also used by `--pg`).
pub(crate) fn order(rig: &Rig, wrapper: Wrapper, waiters: usize) -> Result<u64> {
    let dir = rig.trial_dir()?;
    let log = dir.path().join("log");
    let mut trial = start_holder(rig, wrapper, dir.path())?;
    let mut children = Vec::new();
    for i in 0..waiters {
        let append = format!("echo {i} >> '{}'", log.display());
        let mut command = rig.locked(
            wrapper,
            crate::measure_handoff::LOCK,
            &["sh", "-c", append.as_str()],
        );
        children.push(Running::spawn(&mut command)?);
        let deadline = Instant::now() + STEP_LIMIT;
        while rig.waiting(wrapper, crate::measure_handoff::LOCK)? < i + 1 {
            ensure!(Instant::now() < deadline, "waiter {i} never blocked");
            thread::sleep(Duration::from_micros(200));
        }
    }
    trial.release()?;
    for child in &mut children {
        child.finish()?;
    }
    let served: Vec<usize> = fs::read_to_string(&log)?
        .lines()
        .map(|line| line.trim().parse().context("a bad log line"))
        .collect::<Result<_>>()?;
    ensure!(served.len() == waiters, "only {} waiters ran", served.len());
    Ok(inversions(&served))
}

/// The writer's wait, and whether it was still waiting when the stream
/// stopped.
fn writer_wait(
    rig: &Rig,
    wrapper: Wrapper,
    readers: usize,
    hold: Duration,
) -> Result<(Duration, bool)> {
    let dir = rig.trial_dir()?;
    let started = dir.path().join("started");
    let stop = AtomicBool::new(false);
    let hold_arg = format!("{}", hold.as_secs_f64());
    thread::scope(|scope| -> Result<(Duration, bool)> {
        let stream: Vec<_> = (0..readers)
            .map(|i| {
                let (stop, hold_arg) = (&stop, hold_arg.as_str());
                scope.spawn(move || -> Result<()> {
                    thread::sleep(hold.mul_f64(i as f64 / readers as f64));
                    while !stop.load(Ordering::Relaxed) {
                        let mut run = shared(rig, wrapper, &["sleep", hold_arg]);
                        crate::rig::run_checked(&mut run)?;
                    }
                    Ok(())
                })
            })
            .collect();
        thread::sleep(STREAM_WARMUP);
        let asked = Instant::now();
        let mut writer = Running::spawn(&mut rig.locked_helper(
            wrapper,
            STREAM_LOCK,
            "stamp",
            &[started.as_path()],
        ))?;
        let mut starved = false;
        while !started.exists() && !writer.exited()? {
            if asked.elapsed() >= STREAM_LIMIT && !starved {
                starved = true;
                stop.store(true, Ordering::Relaxed);
            }
            thread::sleep(Duration::from_millis(1));
        }
        let waited = asked.elapsed();
        stop.store(true, Ordering::Relaxed);
        writer.finish()?;
        for reader in stream {
            reader.join().map_err(|_| anyhow!("a reader panicked"))??;
        }
        Ok((waited.min(STREAM_LIMIT), starved))
    })
}

/// `command` under the shared lock [`STREAM_LOCK`].
fn shared(rig: &Rig, wrapper: Wrapper, command: &[&str]) -> Command {
    rig.locked_shared(wrapper, STREAM_LOCK, command)
}

/// A child that is killed if the measurement fails.
struct Running(Child);

impl Running {
    fn spawn(command: &mut Command) -> Result<Running> {
        Ok(Running(
            command
                .spawn()
                .with_context(|| format!("cannot run {command:?}"))?,
        ))
    }

    fn exited(&mut self) -> Result<bool> {
        Ok(self.0.try_wait()?.is_some())
    }

    fn finish(&mut self) -> Result<()> {
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            if let Some(status) = self.0.try_wait()? {
                ensure!(status.success(), "a locked command failed: {status}");
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "a locked command did not exit");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inversions_count_pairs_out_of_order() {
        assert_eq!(inversions(&[0, 1, 2, 3]), 0);
        assert_eq!(inversions(&[1, 0, 2, 3]), 1);
        assert_eq!(inversions(&[3, 2, 1, 0]), 6);
        assert_eq!(inversions(&[]), 0);
    }
}
