//! Timeout accuracy: how close to the requested time a wrapper gives up
//! waiting for a lock that stays held.
//!
//! A holder takes the lock (this binary's `hold`, under the same wrapper, as
//! in the handoff trials) and keeps it. Then `withlock ... -w SECONDS --
//! true` or `flock -w SECONDS -E 75 ... true` is timed from spawn to exit:
//! it must give up, with exit status 75. The figure is that wall time, and
//! its distance from the requested time is the error. It includes starting
//! the wrapper, which no timer can avoid, so a perfect timer would still
//! show an error of about the startup figure.

use std::process::{Command, ExitStatus};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::measure_handoff::{self, LOCK, STEP_LIMIT};
use crate::rig::{GAVE_UP, Rig, Wrapper};

/// Wall times in milliseconds from spawn to exit, one per trial.
#[derive(Debug, Default)]
pub(crate) struct Timeouts {
    pub withlock: Vec<f64>,
    pub flock: Vec<f64>,
}

/// `trials` timed-out waits through each wrapper, each asked to give up
/// after `limit`; alternating, with the wrapper that goes first swapped
/// every trial.
pub(crate) fn measure(rig: &Rig, trials: usize, limit: Duration) -> Result<Timeouts> {
    eprintln!(
        "timeout: {trials} trials each of withlock and flock(1), giving up after {} ms",
        limit.as_millis()
    );
    let mut timeouts = Timeouts::default();
    for trial in 0..trials {
        let mut order = Wrapper::BOTH;
        if trial % 2 == 1 {
            order.reverse();
        }
        for wrapper in order {
            let ms = one_timeout(rig, wrapper, limit)
                .with_context(|| format!("timeout trial {} with {}", trial + 1, wrapper.key()))?;
            match wrapper {
                Wrapper::Withlock => timeouts.withlock.push(ms),
                Wrapper::Flock => timeouts.flock.push(ms),
                _ => unreachable!("Wrapper::BOTH holds the local wrappers only"),
            }
        }
    }
    Ok(timeouts)
}

/// One wait that times out, in milliseconds from spawn to exit.
fn one_timeout(rig: &Rig, wrapper: Wrapper, limit: Duration) -> Result<f64> {
    let dir = rig.trial_dir()?;
    let mut trial = measure_handoff::start_holder(rig, wrapper, dir.path())?;
    let mut attempt = rig.locked_at_most(wrapper, LOCK, limit, &["true"]);
    let (status, elapsed) = time_to_exit(&mut attempt)?;
    ensure!(
        status.code() == Some(GAVE_UP),
        "{attempt:?} ended with {status}, not with exit status {GAVE_UP} for giving up"
    );
    trial.release()?;
    Ok(elapsed.as_secs_f64() * 1e3)
}

/// Runs `command`, returning how it ended and the wall time from just
/// before the spawn to its exit.
///
/// The wait blocks in the kernel (no polling, which would add to the
/// figure). A watchdog kills the command if it is still running after
/// [`STEP_LIMIT`], so a wrapper that never gives up fails the run instead of
/// hanging it. The exit is first seen without reaping (`WNOWAIT`), and the
/// watchdog is called off under the same lock it kills under, so it can
/// never signal a process ID that has already been reused.
fn time_to_exit(command: &mut Command) -> Result<(ExitStatus, Duration)> {
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).context("process ID out of range")?);
    let exited = Mutex::new(false);
    let called_off = Condvar::new();
    let (seen, elapsed) = thread::scope(|scope| {
        scope.spawn(|| {
            let exited = exited
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let (exited, _) = called_off
                .wait_timeout_while(exited, STEP_LIMIT, |exited| !*exited)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !*exited {
                let _ = kill(pid, Signal::SIGKILL);
            }
        });
        let seen = waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
        let elapsed = started.elapsed();
        *exited
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        called_off.notify_one();
        (seen, elapsed)
    });
    if let Err(err) = seen {
        let _ = child.kill();
        let _ = child.wait();
        return Err(err).with_context(|| format!("cannot wait for {command:?}"));
    }
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for {command:?}"))?;
    if elapsed >= STEP_LIMIT {
        bail!("{command:?} did not give up within {STEP_LIMIT:?}: {status}");
    }
    Ok((status, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_a_command_to_its_exit() {
        let (status, elapsed) = time_to_exit(Command::new("sleep").arg("0.05")).unwrap();
        assert!(status.success());
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        assert!(elapsed < STEP_LIMIT, "{elapsed:?}");
        let (status, _) = time_to_exit(&mut Command::new("false")).unwrap();
        assert_eq!(status.code(), Some(1));
    }
}
