//! `--etcd`: withlock's etcd backend (`--url etcd://`) beside `etcdctl
//! lock`, the reference client, in one run, on the same private
//! one-member etcd over loopback.
//!
//! The member is started here, through `withlock-etcd-testing`'s [`Etcd`]:
//! its own temporary directory, free ports on 127.0.0.1, killed at the
//! end. It needs `/usr/bin/etcd` and `/usr/bin/etcdctl`.
//!
//! Both clients take the same kind of lock (a key under `NAME/` with a
//! lease; the lowest create revision holds), so what differs is the
//! client. Four things are measured, each interleaved across the two with
//! the order rotating from round to round:
//!
//! - **startup**: `withlock --url URL startup -- true` beside `etcdctl
//!   lock startup -- true` and bare `true`: an uncontended run;
//! - **handoff**: from the end of one holder's command to the start of the
//!   next waiter's; a waiter counts as blocked once its key is in line;
//! - **storm**: P processes making K locked runs each on one lock, runs
//!   per second, with a counter that shows any overlap;
//! - **order**: waiters queued one by one, the pairs served out of their
//!   arrival order.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use withlock_etcd_testing::{DEFAULT_ETCD, DEFAULT_ETCDCTL, Etcd};

use crate::measure_fairness;
use crate::measure_handoff;
use crate::measure_startup::{self, Subject};
use crate::measure_storm::{self, Round};
use crate::rig::{Rig, Wrapper};

/// Everything `--etcd` measures. Arrays of two are in
/// [`Wrapper::WITH_ETCD`] order: withlock --url, etcdctl lock.
#[derive(Debug, Default)]
pub(crate) struct EtcdResults {
    /// `etcd --version`'s first line.
    pub server_version: String,
    /// Startup wall times in milliseconds, and bare `true`'s.
    pub startup: [Vec<f64>; 2],
    pub startup_bare: Vec<f64>,
    /// Handoff latencies in microseconds.
    pub handoff: [Vec<f64>; 2],
    /// Every storm round, in the order they ran.
    pub storm: [Vec<Round>; 2],
    /// Pairs of queued waiters served against their arrival order.
    pub inversions: [u64; 2],
}

/// How much `--etcd` does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EtcdSettings {
    pub runs: usize,
    pub handoffs: usize,
    pub procs: usize,
    pub iterations: usize,
    pub rounds: usize,
    pub waiters: usize,
}

/// Starts the member, saying so; fails with the install command when etcd
/// is missing.
pub(crate) fn start_member() -> Result<Etcd> {
    for tool in [DEFAULT_ETCD, DEFAULT_ETCDCTL] {
        ensure!(
            std::path::Path::new(tool).is_file(),
            "--etcd needs etcd, and {tool} is missing: install it with \
             `apt-get install -y etcd-server etcd-client`"
        );
    }
    eprintln!("etcd: starting a private member");
    let started = Instant::now();
    let etcd = std::panic::catch_unwind(Etcd::start)
        .map_err(|_| anyhow::anyhow!("the etcd member did not start (see above)"))?;
    eprintln!(
        "etcd: member up at {} in {:.1} s",
        etcd.url(),
        started.elapsed().as_secs_f64()
    );
    Ok(etcd)
}

pub(crate) fn measure(rig: &Rig, settings: EtcdSettings) -> Result<EtcdResults> {
    let version = std::process::Command::new(DEFAULT_ETCD)
        .arg("--version")
        .output()
        .context("cannot run etcd --version")?;
    let server_version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("etcd")
        .trim_start_matches("etcd Version: ")
        .to_owned();

    let runs = settings.runs;
    eprintln!("etcd startup: {runs} runs each of withlock --url, etcdctl lock and bare true");
    let [withlock, etcdctl, bare] = measure_startup::interleaved(
        rig,
        runs,
        [
            Subject::Locked(Wrapper::Etcd),
            Subject::Locked(Wrapper::Etcdctl),
            Subject::Bare,
        ],
    )?;

    let handoffs = settings.handoffs;
    eprintln!("etcd handoff: {handoffs} trials each of withlock --url and etcdctl lock");
    let handoff = measure_handoff::interleaved(rig, handoffs, Wrapper::WITH_ETCD)?;

    let (procs, iterations, rounds) = (settings.procs, settings.iterations, settings.rounds);
    eprintln!("etcd storm: {procs} processes x {iterations} locked runs, {rounds} rounds each");
    let mut storm: [Vec<Round>; 2] = Default::default();
    for round in 1..=rounds {
        // Alternating, the first one swapped every round.
        let mut order = [0, 1];
        order.rotate_left(round % 2);
        for i in order {
            let wrapper = Wrapper::WITH_ETCD[i];
            let outcome = measure_storm::one_storm(rig, wrapper, procs, iterations)
                .with_context(|| format!("storm round {round} with {}", wrapper.key()))?;
            eprintln!(
                "  round {round}/{rounds} {:>13}: {:.0} runs/s, {} lost",
                wrapper.key(),
                outcome.runs_per_sec,
                outcome.lost_updates
            );
            storm[i].push(outcome);
        }
    }

    let waiters = settings.waiters;
    eprintln!("etcd order: {waiters} waiters queued one by one, each client");
    let mut inversions = [0; 2];
    for (i, wrapper) in Wrapper::WITH_ETCD.into_iter().enumerate() {
        let n = measure_fairness::order(rig, wrapper, waiters)
            .with_context(|| format!("arrival order with {}", wrapper.key()))?;
        eprintln!("  {:>13}: {n} inversions", wrapper.key());
        inversions[i] = n;
    }

    Ok(EtcdResults {
        server_version,
        startup: [withlock, etcdctl],
        startup_bare: bare,
        handoff,
        storm,
        inversions,
    })
}
