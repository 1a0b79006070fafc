//! Handoff latency: from the end of one holder's command to the start of the
//! next waiter's command.
//!
//! This is what a queue of jobs behind one lock pays per job on top of the
//! jobs themselves: the holder exits, its wrapper notices and lets go of the
//! lock, the kernel wakes the waiting wrapper, and that one starts its
//! command. Both ends are stamped by the commands themselves (this binary's
//! `hold` and `stamp`) on CLOCK_MONOTONIC, so the benchmark's own polling is
//! not part of the figure.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::{mkfifo, write};

use crate::helpers;
use crate::rig::{Rig, Wrapper};

/// How long any one step of a trial may take before the trial is abandoned.
pub(crate) const STEP_LIMIT: Duration = Duration::from_secs(10);
/// How often a step's condition is checked. The polling happens before the
/// go-ahead or after both stamps are taken, never in the measured interval.
const POLL: Duration = Duration::from_micros(200);
/// The lock name used for handoffs, and for timeouts.
pub(crate) const LOCK: &str = "h";

/// Latencies in microseconds, one per trial.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    pub withlock: Vec<f64>,
    pub flock: Vec<f64>,
}

/// `trials` handoffs through each wrapper, alternating, with the wrapper
/// that goes first swapped every trial.
pub(crate) fn measure(rig: &Rig, trials: usize) -> Result<Handoff> {
    eprintln!("handoff: {trials} trials each of withlock and flock(1)");
    let [withlock, flock] = interleaved(rig, trials, Wrapper::BOTH)?;
    Ok(Handoff { withlock, flock })
}

/// `trials` handoffs through each of `wrappers`, taking turns, with the
/// order rotated every trial so that none always goes first. The samples
/// come back in the order of `wrappers`.
pub(crate) fn interleaved<const N: usize>(
    rig: &Rig,
    trials: usize,
    wrappers: [Wrapper; N],
) -> Result<[Vec<f64>; N]> {
    let mut samples = [(); N].map(|()| Vec::with_capacity(trials));
    for trial in 0..trials {
        let mut order: [usize; N] = std::array::from_fn(|i| i);
        order.rotate_left(trial % N);
        for i in order {
            let wrapper = wrappers[i];
            let us = one_handoff(rig, wrapper)
                .with_context(|| format!("handoff trial {} with {}", trial + 1, wrapper.key()))?;
            samples[i].push(us);
        }
    }
    Ok(samples)
}

/// One handoff, in microseconds.
fn one_handoff(rig: &Rig, wrapper: Wrapper) -> Result<f64> {
    let dir = rig.trial_dir()?;
    let (end, start) = (dir.path().join("end"), dir.path().join("start"));
    let mut trial = start_holder(rig, wrapper, dir.path())?;

    let waiter = trial.spawn(rig, wrapper, "stamp", &[&start])?;
    poll_until(
        "the waiter to block on the lock",
        &mut trial.processes[waiter],
        || Ok(rig.waiting(wrapper, LOCK)? > 0),
    )?;

    trial.release()?;
    let (ended, started) = (helpers::read_number(&end)?, helpers::read_number(&start)?);
    ensure!(
        started >= ended,
        "the waiter started ({started} ns) before the holder ended ({ended} ns)"
    );
    Ok((started - ended) as f64 / 1e3)
}

/// Starts a trial whose holder, `hold READY GO END` under `wrapper` with
/// its files in `dir`, has taken the lock [`LOCK`] once this returns.
/// [`Trial::release`] lets it go; after that `dir/end` holds the time its
/// command ended.
pub(crate) fn start_holder(rig: &Rig, wrapper: Wrapper, dir: &Path) -> Result<Trial> {
    let (ready, go, end) = (dir.join("ready"), dir.join("go"), dir.join("end"));
    mkfifo(&go, Mode::S_IRUSR | Mode::S_IWUSR)
        .with_context(|| format!("cannot create the FIFO {}", go.display()))?;
    let mut trial = Trial::new(go.clone());
    let holder = trial.spawn(rig, wrapper, "hold", &[&ready, &go, &end])?;
    poll_until(
        "the holder to take the lock",
        &mut trial.processes[holder],
        || Ok(ready.exists()),
    )?;
    Ok(trial)
}

/// The processes of one trial. Dropped before [`Trial::release`], it opens
/// the gate so the holder lets go, then kills and reaps what is left, so a
/// failed trial leaves nothing running.
pub(crate) struct Trial {
    gate: PathBuf,
    processes: Vec<Child>,
    finished: bool,
}

impl Trial {
    fn new(gate: PathBuf) -> Trial {
        Trial {
            gate,
            processes: Vec::new(),
            finished: false,
        }
    }

    /// Starts `helper FILES...` under the trial's lock; returns its index.
    fn spawn(
        &mut self,
        rig: &Rig,
        wrapper: Wrapper,
        helper: &str,
        files: &[&Path],
    ) -> Result<usize> {
        let mut command = rig.locked_helper(wrapper, LOCK, helper, files);
        let child = command
            .spawn()
            .with_context(|| format!("cannot run {command:?}"))?;
        self.processes.push(child);
        Ok(self.processes.len() - 1)
    }

    /// Gives the holder its go-ahead, then waits for every process to exit
    /// with status 0.
    pub(crate) fn release(&mut self) -> Result<()> {
        open_gate(&self.gate)?;
        self.finish()
    }

    /// Waits for every process to exit with status 0.
    fn finish(&mut self) -> Result<()> {
        for child in &mut self.processes {
            let deadline = Instant::now() + STEP_LIMIT;
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                ensure!(Instant::now() < deadline, "a trial process did not exit");
                thread::sleep(POLL);
            };
            ensure!(status.success(), "a trial process failed: {status}");
        }
        self.finished = true;
        Ok(())
    }
}

impl Drop for Trial {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let _ = try_open_gate(&self.gate);
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` until it holds, failing if `process` exits first or the
/// step takes longer than [`STEP_LIMIT`].
fn poll_until(
    what: &str,
    process: &mut Child,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + STEP_LIMIT;
    while !done()? {
        if let Some(status) = process.try_wait()? {
            bail!("gave up waiting for {what}: it exited with {status}");
        }
        ensure!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {STEP_LIMIT:?}"
        );
        thread::sleep(POLL);
    }
    Ok(())
}

/// Gives the holder its go-ahead: one byte down the FIFO. The holder may not
/// have opened its end yet, so this retries for a while rather than block
/// forever on a holder that died.
fn open_gate(gate: &Path) -> Result<()> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        match try_open_gate(gate) {
            Err(Errno::ENXIO) if Instant::now() < deadline => thread::sleep(POLL),
            result => return result.with_context(|| format!("cannot signal {}", gate.display())),
        }
    }
}

/// Writes the go-ahead byte if the holder has the FIFO open for reading
/// (ENXIO if not).
fn try_open_gate(gate: &Path) -> nix::Result<()> {
    let fd = open(
        gate,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    write(&fd, b"g").map(drop)
}
