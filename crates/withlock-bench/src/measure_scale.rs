//! Scale (`--scale`): many waiters on one lock, all served in arrival
//! order, none of them polling, and what each costs.
//!
//! A holder takes the lock, as in the handoff trials; then N waiters,
//! `WRAPPER LOCK -- sh -c 'echo I >> LOG'`, are started one at a time, each
//! once the previous one is seen waiting (as in the order measurement), so
//! the arrival order is certain. With all of them waiting:
//!
//! - **context switches**: every thread's `voluntary_ctxt_switches` and
//!   `nonvoluntary_ctxt_switches` (`/proc/PID/task/TID/status`) are summed
//!   per waiter, twice, [`QUIET_WINDOW`] apart. A waiter that sleeps in the
//!   kernel (or on the server's reply) until the lock is free switches 0
//!   times in between; one that polls switches at its polling rate.
//! - **memory**: each waiter's `VmRSS` and `Pss` (`/proc/PID/smaps_rollup`,
//!   its proportional share of pages shared with the other waiters).
//!
//! Then the holder lets go, and the **total** is the time from its
//! go-ahead until the last waiter has exited; the log gives the
//! **inversions** (pairs served against their arrival order).

use std::fs;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::helpers::kib_field;
use crate::measure_fairness::inversions;
use crate::measure_handoff::{LOCK, STEP_LIMIT, start_holder};
use crate::rig::{Rig, Wrapper};

/// How long one waiter may take to be seen waiting. With hundreds already
/// waiting, on a loaded machine, that can take seconds (each new request
/// meets every queued one in the kernel's or the server's lock table), so
/// more than the other measurements' step limit.
const QUEUE_LIMIT: Duration = Duration::from_secs(60);

/// How long the waiters are watched for context switches.
pub(crate) const QUIET_WINDOW: Duration = Duration::from_secs(2);

/// One wrapper's figures with N waiters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Scale {
    pub waiters: usize,
    /// Pairs of waiters served against their arrival order.
    pub inversions: u64,
    /// Context switches per waiter per second while all of them waited.
    pub switches_per_waiter_sec: f64,
    /// The largest number of switches of one waiter in the window.
    pub max_switches: u64,
    /// Mean `VmRSS` and `Pss` of a waiter, in KiB.
    pub rss_kib: f64,
    pub pss_kib: f64,
    /// From the holder's go-ahead until every waiter had run, in seconds.
    pub total_sec: f64,
}

/// `waiters` waiters through `wrapper` (see the module docs).
pub(crate) fn measure(rig: &Rig, wrapper: Wrapper, waiters: usize) -> Result<Scale> {
    let dir = rig.trial_dir()?;
    let log = dir.path().join("log");
    let mut trial = start_holder(rig, wrapper, dir.path())?;
    let mut children = Vec::with_capacity(waiters);
    let queued = Instant::now();
    for i in 0..waiters {
        let append = format!("echo {i} >> '{}'", log.display());
        let mut command = rig.locked(wrapper, LOCK, &["sh", "-c", append.as_str()]);
        children.push(Waiter(
            command
                .spawn()
                .with_context(|| format!("cannot run {command:?}"))?,
        ));
        let deadline = Instant::now() + QUEUE_LIMIT;
        while rig.waiting(wrapper, LOCK)? < i + 1 {
            ensure!(Instant::now() < deadline, "waiter {i} never blocked");
            thread::sleep(Duration::from_micros(200));
        }
        if (i + 1) % 100 == 0 {
            eprintln!(
                "  {:>21}: {} waiting after {:.1} s",
                wrapper.key(),
                i + 1,
                queued.elapsed().as_secs_f64()
            );
        }
    }
    let pids: Vec<u32> = children.iter().map(|child| child.0.id()).collect();
    let before = pids
        .iter()
        .map(|&pid| switches(pid))
        .collect::<Result<Vec<_>>>()?;
    thread::sleep(QUIET_WINDOW);
    let after = pids
        .iter()
        .map(|&pid| switches(pid))
        .collect::<Result<Vec<_>>>()?;
    let deltas: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let (mut rss, mut pss) = (0.0, 0.0);
    for &pid in &pids {
        let (r, p) = memory_kib(pid)?;
        rss += r as f64;
        pss += p as f64;
    }
    let go = Instant::now();
    trial.release()?;
    for child in &mut children {
        child.finish()?;
    }
    let total_sec = go.elapsed().as_secs_f64();
    let served: Vec<usize> = fs::read_to_string(&log)?
        .lines()
        .map(|line| line.trim().parse().context("a bad log line"))
        .collect::<Result<_>>()?;
    ensure!(served.len() == waiters, "only {} waiters ran", served.len());
    let n = waiters as f64;
    Ok(Scale {
        waiters,
        inversions: inversions(&served),
        switches_per_waiter_sec: deltas.iter().sum::<u64>() as f64 / n / QUIET_WINDOW.as_secs_f64(),
        max_switches: deltas.iter().copied().max().unwrap_or(0),
        rss_kib: rss / n,
        pss_kib: pss / n,
        total_sec,
    })
}

/// Context switches of every thread of `pid`, so far.
fn switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("waiter {pid} is gone while it should wait"))?;
    for task in tasks {
        let status = fs::read_to_string(task?.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
}

/// `VmRSS` and `Pss` of `pid`, in KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok((
        kib_field(&status, "VmRSS:").unwrap_or(0),
        kib_field(&rollup, "Pss:").unwrap_or(0),
    ))
}

/// A waiter, killed and reaped if the measurement stops early.
struct Waiter(Child);

impl Waiter {
    fn finish(&mut self) -> Result<()> {
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            if let Some(status) = self.0.try_wait()? {
                ensure!(status.success(), "a waiter failed: {status}");
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "a waiter did not exit");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
