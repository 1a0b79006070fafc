//! The hidden subcommands: the commands the benchmark runs under a lock.
//!
//! They are part of this binary rather than shell one-liners so that the
//! timestamps come from inside the locked command, with no shell start-up
//! between the lock changing hands and the clock being read.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use nix::time::{ClockId, clock_gettime};

/// Now on CLOCK_MONOTONIC, in nanoseconds. Every process on the machine
/// shares this clock, and it never jumps, so stamps from two processes can
/// be subtracted.
pub(crate) fn monotonic_ns() -> Result<u64> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).context("clock_gettime")?;
    let seconds = u64::try_from(now.tv_sec()).context("negative monotonic time")?;
    let nanos = u64::try_from(now.tv_nsec()).context("negative monotonic time")?;
    Ok(seconds * 1_000_000_000 + nanos)
}

/// `stamp FILE`: records when the waiter's command started.
pub(crate) fn stamp(file: &Path, started_ns: u64) -> Result<()> {
    write_stamp(file, started_ns)
}

/// `hold READY GO END`: holds the lock until the benchmark says go.
///
/// READY tells the benchmark the lock is held. Opening the FIFO blocks until
/// the benchmark opens it for writing, and the read until it writes its byte;
/// the benchmark does that only once the waiter is blocked in the kernel, so
/// the handoff that follows is a real one. The end time is taken last, just
/// before exiting.
pub(crate) fn hold(ready: &Path, go: &Path, end: &Path) -> Result<()> {
    File::create(ready).with_context(|| format!("cannot create {}", ready.display()))?;
    let mut gate = File::open(go).with_context(|| format!("cannot open {}", go.display()))?;
    let mut byte = [0u8; 1];
    gate.read_exact(&mut byte)
        .with_context(|| format!("no go-ahead on {}", go.display()))?;
    write_stamp(end, monotonic_ns()?)
}

/// `increment FILE`: a read-modify-write that is only correct under a lock.
///
/// The plain read and the truncating write leave a window in which two
/// unlocked runs would read the same value, so every lost update counted
/// afterwards is a moment two holders ran at once. An empty file, which a
/// reader can see in the middle of another's write, counts as zero.
pub(crate) fn increment(file: &Path) -> Result<()> {
    let text =
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let count = parse_count(&text).with_context(|| format!("{} holds no count", file.display()))?;
    fs::write(file, format!("{}\n", count + 1))
        .with_context(|| format!("cannot write {}", file.display()))
}

/// `parent-peak FILE`: writes the peak resident set of the process that
/// started this one, the wrapper, as `VmHWM` in KiB.
///
/// Read from inside the command, since a wrapper has done all it does
/// before its command but wait and release; and read there because the
/// other way, `ru_maxrss` from wait4(2), would report the benchmark's
/// own size: a process's peak survives exec, and a child starts as a copy
/// of the benchmark. `VmHWM` belongs to the memory the wrapper's own exec
/// set up.
pub(crate) fn parent_peak(file: &Path) -> Result<()> {
    let parent = std::os::unix::process::parent_id();
    let status = format!("/proc/{parent}/status");
    let text = fs::read_to_string(&status).with_context(|| format!("cannot read {status}"))?;
    let kib = kib_field(&text, "VmHWM:").with_context(|| format!("no VmHWM in {status}"))?;
    write_stamp(file, kib)
}

/// The number of the line that starts with `name` in a `/proc` file of
/// `name value kB` lines (`status`, `smaps_rollup`).
pub(crate) fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
}

/// The number in a counter or stamp file; empty means zero.
pub(crate) fn parse_count(text: &str) -> Result<u64> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse()
        .with_context(|| format!("{text:?} is not a whole number"))
}

/// Writes a nanosecond stamp as decimal text.
fn write_stamp(file: &Path, ns: u64) -> Result<()> {
    fs::write(file, format!("{ns}\n")).with_context(|| format!("cannot write {}", file.display()))
}

/// Reads back a stamp, or a final count; unlike [`parse_count`], an empty
/// file is an error here, since something failed to write it.
pub(crate) fn read_number(file: &Path) -> Result<u64> {
    let text =
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    anyhow::ensure!(!text.trim().is_empty(), "{} is empty", file.display());
    parse_count(&text).with_context(|| format!("no number in {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_with_empty_as_zero() {
        assert_eq!(parse_count("41\n").unwrap(), 41);
        assert_eq!(parse_count("").unwrap(), 0);
        assert!(parse_count("4x").is_err());
    }

    #[test]
    fn kib_fields_are_read_by_name() {
        let status = "Name:\twithlock\nVmHWM:\t    3748 kB\nVmRSS:\t    3620 kB\n";
        assert_eq!(kib_field(status, "VmHWM:"), Some(3748));
        assert_eq!(kib_field(status, "VmRSS:"), Some(3620));
        assert_eq!(kib_field(status, "Pss:"), None);
    }

    #[test]
    fn increment_adds_one_and_stamps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("counter");
        fs::write(&counter, "0\n").unwrap();
        increment(&counter).unwrap();
        increment(&counter).unwrap();
        assert_eq!(read_number(&counter).unwrap(), 2);
        let before = monotonic_ns().unwrap();
        stamp(&dir.path().join("t"), before).unwrap();
        assert_eq!(read_number(&dir.path().join("t")).unwrap(), before);
        assert!(monotonic_ns().unwrap() >= before);
    }
}
