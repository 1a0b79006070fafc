//! Startup: the wall time of running `true` under each wrapper, and bare.
//!
//! The lock is always free here, so this is what a wrapper adds to every
//! command it runs: its own exec and start-up, opening the lock file,
//! flock(2), starting the command and waiting for it. Bare `true` is the
//! floor both stand on.
//!
//! Peak memory is measured beside it: each wrapper's `VmHWM`, its resident
//! set at its largest (the pages of its binary and libraries it touched,
//! which it shares with every other process running them, and its own
//! heap and stack), read by its command (`withlock-bench parent-peak`).

use std::time::Instant;

use anyhow::Result;

use crate::helpers;
use crate::rig::{self, Rig, Wrapper};

/// Wall times in milliseconds, one per run, and peak resident set sizes
/// in KiB, one per memory run, of withlock and flock(1).
#[derive(Debug, Default)]
pub(crate) struct Startup {
    pub withlock: Vec<f64>,
    pub flock: Vec<f64>,
    pub bare: Vec<f64>,
    pub peak_rss_kib: [Vec<f64>; 2],
}

/// Runs of each subject whose peak memory is read (it hardly varies).
const MEMORY_RUNS: usize = 20;

/// What one startup run runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject {
    Locked(Wrapper),
    Bare,
}

const SUBJECTS: [Subject; 3] = [
    Subject::Locked(Wrapper::Withlock),
    Subject::Locked(Wrapper::Flock),
    Subject::Bare,
];

/// `runs` runs of each subject, interleaved: every round runs all three, in
/// an order that rotates from round to round so none is always first after
/// the benchmark's own bookkeeping.
pub(crate) fn measure(rig: &Rig, runs: usize) -> Result<Startup> {
    eprintln!("startup: {runs} runs each of withlock, flock(1) and bare true");
    let [withlock, flock, bare] = interleaved(rig, runs, SUBJECTS)?;
    let mut peak_rss_kib: [Vec<f64>; 2] = Default::default();
    for _ in 0..MEMORY_RUNS.min(runs) {
        for (i, wrapper) in Wrapper::BOTH.into_iter().enumerate() {
            peak_rss_kib[i].push(peak_rss(rig, wrapper)? as f64);
        }
    }
    Ok(Startup {
        withlock,
        flock,
        bare,
        peak_rss_kib,
    })
}

/// `runs` timed runs of each of `subjects`, after one untimed run each (to
/// fault the binaries into the page cache, create the lock files, and let
/// a server warm up). The samples come back in the order of `subjects`.
pub(crate) fn interleaved<const N: usize>(
    rig: &Rig,
    runs: usize,
    subjects: [Subject; N],
) -> Result<[Vec<f64>; N]> {
    for subject in subjects {
        time(rig, subject)?;
    }
    let mut samples = [(); N].map(|()| Vec::with_capacity(runs));
    for round in 0..runs {
        let mut order: [usize; N] = std::array::from_fn(|i| i);
        order.rotate_left(round % N);
        for i in order {
            samples[i].push(time(rig, subjects[i])?);
        }
    }
    Ok(samples)
}

/// One run, in milliseconds from spawn to exit status.
fn time(rig: &Rig, subject: Subject) -> Result<f64> {
    let mut command = command(rig, subject);
    let started = Instant::now();
    rig::run_checked(&mut command)?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// The peak resident set size of `wrapper`, in KiB, in one run.
fn peak_rss(rig: &Rig, wrapper: Wrapper) -> Result<u64> {
    let trial = rig.trial_dir()?;
    let file = trial.path().join("peak");
    rig::run_checked(&mut rig.locked_helper(wrapper, "startup", "parent-peak", &[&file]))?;
    helpers::read_number(&file)
}

fn command(rig: &Rig, subject: Subject) -> std::process::Command {
    match subject {
        Subject::Locked(wrapper) => rig.locked(wrapper, "startup", &["true"]),
        Subject::Bare => rig.bare(&["true"]),
    }
}
