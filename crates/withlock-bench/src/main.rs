//! `withlock-bench`: measures withlock against flock(1) in one run.
//!
//! Both wrappers take the same flock(2) lock, so what can differ is the cost
//! of starting the wrapper, how soon a waiter runs once the holder ends, the
//! throughput under contention, and how punctually a timed wait gives up.
//! Trials of the two are interleaved, so the noise of a shared machine falls
//! on both alike, and medians and 90th percentiles are reported, so a few
//! delayed runs do not decide the result.
//!
//! With `--pg` it compares withlock's PostgreSQL backend (`--url`, on
//! private servers it starts, one with durable commits and one without)
//! with `etcdctl lock` (on a private etcd member), local withlock and
//! flock(1) instead; with `--etcd`, withlock's etcd backend with `etcdctl
//! lock` alone on a private etcd member it starts.
//!
//! The same binary also serves as the command being locked, through hidden
//! subcommands (see [`helpers`]): that way the timestamps are taken inside
//! the locked command itself, with nothing else in between.

mod helpers;
mod measure_etcd;
mod measure_fairness;
mod measure_handoff;
mod measure_pg;
mod measure_scale;
mod measure_startup;
mod measure_storm;
mod measure_timeout;
mod proc_locks;
mod report;
mod report_etcd;
mod report_pg;
mod rig;
mod round_trips;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::measure_etcd::EtcdSettings;
use crate::measure_pg::PgPlan;
use crate::report::{Results, Settings};
use crate::report_pg::PgSettings;
use crate::rig::{Programs, Rig};

/// Benchmark withlock against flock(1): startup time, lock handoff latency,
/// throughput under contention, timeout accuracy and fairness (arrival
/// order, an exclusive waiter behind shared holders), in one run. With
/// --pg, withlock's PostgreSQL backend beside both instead.
#[derive(Debug, Parser)]
#[command(
    name = "withlock-bench",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    override_usage = "withlock-bench [OPTIONS]"
)]
struct Cli {
    #[command(flatten)]
    options: Options,

    #[command(subcommand)]
    helper: Option<Helper>,
}

#[derive(Debug, Args)]
struct Options {
    /// The withlock binary [default: `withlock` in the directory of this
    /// program, i.e. target/release when both are built with --release].
    #[arg(long, value_name = "PATH")]
    withlock: Option<PathBuf>,

    /// The flock(1) binary.
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/flock")]
    flock: PathBuf,

    /// Startup runs of each of withlock, flock(1) and bare `true`.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = at_least_one())]
    runs: u32,

    /// Handoff trials of each wrapper.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = at_least_one())]
    handoffs: u32,

    /// Concurrent processes in the contention storm.
    #[arg(long, value_name = "P", default_value_t = 8, value_parser = at_least_one())]
    procs: u32,

    /// Locked runs each storm process makes, one after another.
    #[arg(long, value_name = "K", default_value_t = 60, value_parser = at_least_one())]
    iterations: u32,

    /// Storms of each wrapper, alternating between the two.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = at_least_one())]
    rounds: u32,

    /// Timed-out waits of each wrapper, alternating between the two.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = at_least_one())]
    timeouts: u32,

    /// How long each timed-out wait asks to wait, in milliseconds (`-w` of
    /// both wrappers).
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = at_least_one())]
    timeout_ms: u32,

    /// Waiters queued one by one in the arrival-order measurement.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = at_least_one())]
    waiters: u32,

    /// Shared holders streaming back to back in front of an exclusive waiter.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = at_least_one())]
    readers: u32,

    /// How long each of those shared holders holds, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = at_least_one())]
    hold_ms: u32,

    /// Compare withlock's PostgreSQL backend (`--url`) with `etcdctl lock`,
    /// local withlock and flock(1) instead: startup, handoff, storm, round
    /// trips, in-process acquire+release and arrival order, on private
    /// servers started for the run (PostgreSQL with fsync on and with it
    /// off, and one etcd member; needs PostgreSQL's server binaries, in
    /// $WITHLOCK_PG_BIN or /usr/lib/postgresql/15/bin, and /usr/bin/etcd and
    /// /usr/bin/etcdctl). Uses --runs, --handoffs, --waiters, --procs,
    /// --iterations and --rounds.
    #[arg(long)]
    pg: bool,

    /// Compare withlock's etcd backend (`--url etcd://`) with `etcdctl
    /// lock` instead: startup, handoff, storm and arrival order, on a
    /// private one-member etcd started for the run (needs /usr/bin/etcd
    /// and /usr/bin/etcdctl). Uses --runs, --handoffs, --procs,
    /// --iterations, --rounds and --waiters.
    #[arg(long, conflicts_with = "pg")]
    etcd: bool,

    /// Measure scale instead: --local-waiters waiters on one local lock
    /// (withlock and flock(1)) and --pg-waiters on one PostgreSQL lock (on
    /// a private server, as with --pg), each served in arrival order;
    /// context switches and memory per waiter while they wait, and the
    /// time until all have run.
    #[arg(long, conflicts_with = "pg")]
    scale: bool,

    /// Waiters on one local lock with --scale.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = at_least_one())]
    local_waiters: u32,

    /// Waiters on one PostgreSQL lock with --scale.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = at_least_one())]
    pg_waiters: u32,

    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn at_least_one() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..)
}

/// The commands the benchmark runs under a lock; not for people.
#[derive(Debug, Subcommand)]
enum Helper {
    /// Write the monotonic time this process started at into FILE.
    #[command(hide = true)]
    Stamp { file: PathBuf },

    /// Create READY, wait for a byte on the FIFO GO, then write the
    /// monotonic time into END and exit.
    #[command(hide = true)]
    Hold {
        ready: PathBuf,
        go: PathBuf,
        end: PathBuf,
    },

    /// Add one to the number in FILE, deliberately without any locking.
    #[command(hide = true)]
    Increment { file: PathBuf },

    /// Write the parent's peak resident set (VmHWM, KiB) into FILE.
    #[command(hide = true)]
    ParentPeak { file: PathBuf },
}

fn main() -> ExitCode {
    // Taken before anything else, so that `stamp` records when the process
    // got control rather than when clap had finished with its arguments.
    let started_ns = helpers::monotonic_ns();
    let cli = Cli::parse();
    match started_ns.and_then(|started_ns| dispatch(cli, started_ns)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("withlock-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli, started_ns: u64) -> Result<()> {
    match cli.helper {
        Some(Helper::Stamp { file }) => helpers::stamp(&file, started_ns),
        Some(Helper::Hold { ready, go, end }) => helpers::hold(&ready, &go, &end),
        Some(Helper::Increment { file }) => helpers::increment(&file),
        Some(Helper::ParentPeak { file }) => helpers::parent_peak(&file),
        None => benchmark(&cli.options),
    }
}

fn benchmark(options: &Options) -> Result<()> {
    if options.pg {
        return benchmark_pg(options);
    }
    if options.etcd {
        return benchmark_etcd(options);
    }
    if options.scale {
        return benchmark_scale(options);
    }
    let rig = Rig::new(programs(options)?)?;
    let settings = Settings {
        runs: options.runs as usize,
        handoffs: options.handoffs as usize,
        procs: options.procs as usize,
        iterations: options.iterations as usize,
        rounds: options.rounds as usize,
        timeouts: options.timeouts as usize,
        timeout_ms: options.timeout_ms,
        waiters: options.waiters as usize,
        readers: options.readers as usize,
        hold_ms: options.hold_ms,
    };
    eprintln!("withlock: {}", rig.programs().withlock.display());
    eprintln!("flock(1): {}", rig.programs().flock.display());
    let results = Results {
        startup: measure_startup::measure(&rig, settings.runs)?,
        handoff: measure_handoff::measure(&rig, settings.handoffs)?,
        storm: measure_storm::measure(&rig, settings.procs, settings.iterations, settings.rounds)?,
        timeout: measure_timeout::measure(
            &rig,
            settings.timeouts,
            Duration::from_millis(settings.timeout_ms.into()),
        )?,
        fairness: measure_fairness::measure(
            &rig,
            settings.waiters,
            settings.readers,
            Duration::from_millis(settings.hold_ms.into()),
        )?,
        settings,
    };
    if options.json {
        print!("{}", report::json(&results));
    } else {
        print!("{}", report::table(&results));
    }
    Ok(())
}

/// `--pg`: the server backends beside the local ones, in one run.
fn benchmark_pg(options: &Options) -> Result<()> {
    let programs = programs(options)?;
    // Checked before the servers are started, which takes a few seconds.
    let rig = Rig::new(programs)?;
    let servers = measure_pg::start_servers(100)?;
    let rig = rig.with_servers(servers.urls());
    eprintln!("withlock: {}", rig.programs().withlock.display());
    eprintln!("flock(1): {}", rig.programs().flock.display());
    let settings = PgSettings {
        runs: options.runs as usize,
        handoffs: options.handoffs as usize,
        waiters: options.waiters as usize,
    };
    let plan = PgPlan {
        runs: settings.runs,
        handoffs: settings.handoffs,
        waiters: settings.waiters,
        procs: options.procs as usize,
        iterations: options.iterations as usize,
        rounds: options.rounds as usize,
    };
    let results = measure_pg::measure(&rig, &servers, plan)?;
    // The rig's pg_locks sessions end before the servers stop.
    drop(rig);
    drop(servers);
    if options.json {
        print!("{}", report_pg::json(&results, settings));
    } else {
        print!("{}", report_pg::table(&results, settings));
    }
    Ok(())
}

/// `--etcd`: the etcd backend beside `etcdctl lock`, in one run.
fn benchmark_etcd(options: &Options) -> Result<()> {
    let rig = Rig::new(programs(options)?)?;
    let member = measure_etcd::start_member()?;
    let rig = rig.with_etcd(&member.endpoint());
    eprintln!("withlock: {}", rig.programs().withlock.display());
    let settings = EtcdSettings {
        runs: options.runs as usize,
        handoffs: options.handoffs as usize,
        procs: options.procs as usize,
        iterations: options.iterations as usize,
        rounds: options.rounds as usize,
        waiters: options.waiters as usize,
    };
    let results = measure_etcd::measure(&rig, settings)?;
    drop(member);
    if options.json {
        print!("{}", report_etcd::json(&results, settings));
    } else {
        print!("{}", report_etcd::table(&results, settings));
    }
    Ok(())
}

/// `--scale`: many waiters on one lock, local and on PostgreSQL.
fn benchmark_scale(options: &Options) -> Result<()> {
    let rig = Rig::new(programs(options)?)?;
    // Every waiter holds a connection; the rig's watcher one more.
    let servers = measure_pg::start_servers(options.pg_waiters + 20)?;
    let rig = rig.with_servers(servers.urls());
    let mut rows = Vec::new();
    for (wrapper, waiters) in [
        (rig::Wrapper::Withlock, options.local_waiters),
        (rig::Wrapper::Flock, options.local_waiters),
        (rig::Wrapper::Pg, options.pg_waiters),
    ] {
        eprintln!("scale: {waiters} waiters through {}", wrapper.key());
        let scale = measure_scale::measure(&rig, wrapper, waiters as usize)
            .with_context(|| format!("scale with {}", wrapper.key()))?;
        rows.push((wrapper, scale));
    }
    drop(rig);
    drop(servers);
    if options.json {
        let value: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(wrapper, s)| {
                let row = serde_json::json!({
                    "waiters": s.waiters,
                    "inversions": s.inversions,
                    "switches_per_waiter_per_sec": s.switches_per_waiter_sec,
                    "max_switches_of_one_waiter": s.max_switches,
                    "rss_kib_per_waiter": s.rss_kib,
                    "pss_kib_per_waiter": s.pss_kib,
                    "total_sec": s.total_sec,
                });
                (wrapper.key().to_string(), row)
            })
            .collect();
        println!("{:#}", serde_json::Value::Object(value));
        return Ok(());
    }
    println!(
        "{:<22} {:>8} {:>11} {:>15} {:>12} {:>10} {:>10} {:>9}",
        "wrapper",
        "waiters",
        "inversions",
        "switches/w/s",
        "max switches",
        "RSS KiB/w",
        "PSS KiB/w",
        "total s"
    );
    for (wrapper, s) in &rows {
        println!(
            "{:<22} {:>8} {:>11} {:>15.3} {:>12} {:>10.0} {:>10.0} {:>9.2}",
            wrapper.key(),
            s.waiters,
            s.inversions,
            s.switches_per_waiter_sec,
            s.max_switches,
            s.rss_kib,
            s.pss_kib,
            s.total_sec
        );
    }
    println!(
        "\nswitches/w/s: context switches (voluntary and not, every thread) per waiter per\n\
         second while all waited, over {} s; max switches: the most of one waiter in that\n\
         window. RSS and PSS: each waiter process's own (PSS shares pages among the\n\
         processes that map them); a PostgreSQL waiter's server backend is not counted.\n\
         total: from the holder's go-ahead until every waiter had run its command.",
        measure_scale::QUIET_WINDOW.as_secs()
    );
    Ok(())
}

fn programs(options: &Options) -> Result<Programs> {
    let bench = std::env::current_exe().context("cannot find this program's own path")?;
    let withlock = match &options.withlock {
        Some(path) => path.clone(),
        None => bench
            .parent()
            .context("this program's path has no directory")?
            .join("withlock"),
    };
    Ok(Programs {
        withlock,
        flock: options.flock.clone(),
        bench,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn helpers_and_options_parse() {
        let cli = Cli::parse_from(["withlock-bench", "hold", "r", "g", "e"]);
        assert!(matches!(cli.helper, Some(Helper::Hold { .. })));
        let cli = Cli::parse_from(["withlock-bench", "--runs", "5", "--json"]);
        assert!(cli.helper.is_none() && cli.options.json);
        assert_eq!(cli.options.runs, 5);
        assert!(Cli::try_parse_from(["withlock-bench", "--procs", "0"]).is_err());
        let cli = Cli::parse_from(["withlock-bench"]);
        assert_eq!((cli.options.timeouts, cli.options.timeout_ms), (20, 200));
        let cli = Cli::parse_from(["withlock-bench", "--timeouts", "4", "--timeout-ms", "50"]);
        assert_eq!((cli.options.timeouts, cli.options.timeout_ms), (4, 50));
        assert!(Cli::try_parse_from(["withlock-bench", "--timeout-ms", "0"]).is_err());
        let cli = Cli::parse_from(["withlock-bench", "--pg", "--runs", "50"]);
        assert!(cli.options.pg && !Cli::parse_from(["withlock-bench"]).options.pg);
        let cli = Cli::parse_from(["withlock-bench", "--etcd", "--procs", "4"]);
        assert!(cli.options.etcd && !cli.options.pg);
        assert!(Cli::try_parse_from(["withlock-bench", "--etcd", "--pg"]).is_err());
    }
}
