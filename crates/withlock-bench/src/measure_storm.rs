//! Contention storm: many processes queueing on one lock at once.
//!
//! Each of P threads runs K locked commands one after another, all on the
//! same lock, so there is always a queue. The command is an unlocked
//! read-increment-write of a counter file, so the final count checks mutual
//! exclusion: every update lost is a moment two commands ran together.
//! Throughput is locked runs per second of wall time; it is bounded by the
//! start-up of wrapper and command and by handoffs, not by the work.

use std::fs;
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};

use crate::helpers;
use crate::rig::{self, Rig, Wrapper};

/// The lock name used for storms.
const LOCK: &str = "storm";

/// One storm's outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round {
    pub runs_per_sec: f64,
    /// Runs made minus the final count; 0 when the lock held.
    pub lost_updates: i64,
}

/// Every round of each wrapper, in the order they ran.
#[derive(Debug, Default)]
pub(crate) struct Storm {
    pub withlock: Vec<Round>,
    pub flock: Vec<Round>,
}

/// `rounds` storms of each wrapper, alternating flock(1) and withlock.
pub(crate) fn measure(rig: &Rig, procs: usize, iterations: usize, rounds: usize) -> Result<Storm> {
    eprintln!("storm: {procs} processes x {iterations} locked runs, {rounds} rounds each");
    let mut storm = Storm::default();
    for round in 1..=rounds {
        for wrapper in [Wrapper::Flock, Wrapper::Withlock] {
            let outcome = one_storm(rig, wrapper, procs, iterations)
                .with_context(|| format!("storm round {round} with {}", wrapper.key()))?;
            eprintln!(
                "  round {round}/{rounds} {:>8}: {:.0} runs/s, {} lost",
                wrapper.key(),
                outcome.runs_per_sec,
                outcome.lost_updates
            );
            match wrapper {
                Wrapper::Withlock => storm.withlock.push(outcome),
                Wrapper::Flock => storm.flock.push(outcome),
                _ => unreachable!("this storm runs the local wrappers only"),
            }
        }
    }
    Ok(storm)
}

/// `rounds` storms of each of `wrappers`, taking turns in that order; each
/// wrapper's rounds come back in the order of `wrappers` (`--pg`).
pub(crate) fn each<const N: usize>(
    rig: &Rig,
    wrappers: [Wrapper; N],
    procs: usize,
    iterations: usize,
    rounds: usize,
) -> Result<[Vec<Round>; N]> {
    let mut storms = [(); N].map(|()| Vec::with_capacity(rounds));
    for round in 1..=rounds {
        for (i, wrapper) in wrappers.into_iter().enumerate() {
            let outcome = one_storm(rig, wrapper, procs, iterations)
                .with_context(|| format!("storm round {round} with {}", wrapper.key()))?;
            eprintln!(
                "  round {round}/{rounds} {:>21}: {:.0} runs/s, {} lost",
                wrapper.key(),
                outcome.runs_per_sec,
                outcome.lost_updates
            );
            storms[i].push(outcome);
        }
    }
    Ok(storms)
}

pub(crate) fn one_storm(
    rig: &Rig,
    wrapper: Wrapper,
    procs: usize,
    iterations: usize,
) -> Result<Round> {
    let dir = rig.trial_dir()?;
    let counter = dir.path().join("counter");
    fs::write(&counter, "0\n").context("cannot create the counter")?;
    let started = Instant::now();
    thread::scope(|scope| {
        let threads: Vec<_> = (0..procs)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    for _ in 0..iterations {
                        let mut run =
                            rig.locked_helper(wrapper, LOCK, "increment", &[counter.as_path()]);
                        rig::run_checked(&mut run)?;
                    }
                    Ok(())
                })
            })
            .collect();
        threads.into_iter().try_for_each(|thread| {
            thread
                .join()
                .map_err(|_| anyhow!("a storm thread panicked"))?
        })
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let runs = procs * iterations;
    let count = helpers::read_number(&counter).context("cannot read the final count")?;
    Ok(Round {
        runs_per_sec: runs as f64 / seconds,
        lost_updates: runs as i64 - count as i64,
    })
}
