//! The `--pg` figures, as a plain-text table or as JSON.
//!
//! The columns are withlock on the durable PostgreSQL server (`--url`,
//! `fsync` and `synchronous_commit` on), withlock on the fast one (both
//! off), `etcdctl lock` and `withlock --url etcd://` on one etcd member,
//! local withlock and flock(1);
//! the ratio is the durable server backend over etcdctl. Times are
//! summarised by median and 90th percentile, storms by the median round.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::measure_pg::PgResults;
use crate::measure_storm::Round;
use crate::report::{cell, number, ratio_cell, summary};
use crate::rig::Wrapper;
use crate::stats::{self, Summary};

/// What the `--pg` run was asked to do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgSettings {
    pub runs: usize,
    pub handoffs: usize,
    pub waiters: usize,
}

/// The library-level rows: label, JSON key, samples.
fn library_rows(results: &PgResults) -> [(&'static str, &'static str, &[f64]); 6] {
    let l = &results.library;
    [
        ("PgLock acquire+release", "pg_lock", &l.pg_lock),
        ("FileLock acquire+release", "file_lock", &l.file_lock),
        ("  lock session open+close", "session", &l.session),
        ("  bare connect+close", "connect", &l.connect),
        (
            "  lock+unlock, open session",
            "lock_on_open_session",
            &l.lock_on_open_session,
        ),
        (
            "  lock+unlock, new session",
            "lock_on_new_session",
            &l.lock_on_new_session,
        ),
    ]
}

/// Each storm round's throughput.
fn rates(rounds: &[Round]) -> Vec<f64> {
    rounds.iter().map(|round| round.runs_per_sec).collect()
}

/// The storm's median throughput per wrapper, in [`Wrapper::WITH_PG`]
/// order (none for the local wrappers, which `--pg` does not storm).
fn storm_rates(results: &PgResults) -> [Option<f64>; 6] {
    let mut rates_by = [None; 6];
    for (i, rounds) in results.storm.iter().enumerate() {
        rates_by[i] = stats::median(&rates(rounds));
    }
    rates_by
}

/// The median count of round trips before the command.
fn round_trips_before(results: &PgResults) -> Option<f64> {
    let before: Vec<f64> = results
        .round_trips
        .iter()
        .map(|trips| trips.before as f64)
        .collect();
    stats::median(&before)
}

/// The plain-text table.
pub(crate) fn table(results: &PgResults, settings: PgSettings) -> String {
    let startup = results.startup.each_ref().map(|s| Summary::of(s));
    let bare = Summary::of(&results.startup_bare);
    let handoff = results.handoff.each_ref().map(|s| Summary::of(s));
    let median = |s: [Option<Summary>; 6]| s.map(|s| s.map(|s| s.median));
    let p90 = |s: [Option<Summary>; 6]| s.map(|s| s.map(|s| s.p90));
    let (procs, iterations) = results.storm_shape;
    let mut out = format!(
        "PostgreSQL {} on 127.0.0.1: pg-durable has fsync=on, full_page_writes=on, \
         synchronous_commit=on; pg-fsync-off has all three off.\n{} on 127.0.0.1, one \
         member (fsync on).\nstartup: {} runs each; handoff: {} trials each; storm: {} \
         processes x {} runs; order: {} waiters\n\n",
        results.server_version,
        results.etcd_version,
        settings.runs,
        settings.handoffs,
        procs,
        iterations,
        settings.waiters
    );
    let _ = writeln!(
        out,
        "{:<28} {:>11} {:>13} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "measurement",
        "pg-durable",
        "pg-fsync-off",
        "etcdctl",
        "wl-etcd",
        "withlock",
        "flock(1)",
        "pg/etcdctl",
        "bare true"
    );
    // Counts get no ratios: 0 against 0 is no number.
    let mut row = |label: &str, cells: [Option<f64>; 6], bare: Option<f64>, decimals: usize| {
        let number = |x: Option<f64>| cell(x, decimals);
        let ratio = if decimals > 0 {
            ratio_cell(cells[0], cells[2])
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "{label:<28} {:>11} {:>13} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
            number(cells[0]),
            number(cells[1]),
            number(cells[2]),
            number(cells[3]),
            number(cells[4]),
            number(cells[5]),
            ratio,
            number(bare)
        );
    };
    row(
        "startup, median (ms)",
        median(startup),
        bare.map(|s| s.median),
        3,
    );
    row("startup, p90 (ms)", p90(startup), bare.map(|s| s.p90), 3);
    row("handoff, median (µs)", median(handoff), None, 1);
    row("handoff, p90 (µs)", p90(handoff), None, 1);
    // Throughput: higher is better, so the ratio is printed as is.
    row("storm, median (runs/s)", storm_rates(results), None, 1);
    let mut lost = [None; 6];
    for (i, rounds) in results.storm.iter().enumerate() {
        lost[i] = Some(rounds.iter().map(|r| r.lost_updates).sum::<i64>() as f64);
    }
    row("storm, lost updates", lost, None, 0);
    let inversions = results.inversions.map(|n| n.map(|n| n as f64));
    row("order inversions", inversions, None, 0);
    let mut trips = [None; 6];
    trips[0] = round_trips_before(results);
    row("round trips before command", trips, None, 0);

    let _ = writeln!(
        out,
        "\n{:<28} {:>12} {:>10}   (in-process, pg-durable, {} runs each)",
        "library (µs)", "median", "p90", settings.runs
    );
    for (label, _, samples) in library_rows(results) {
        let s = Summary::of(samples);
        let number = |x: Option<f64>| cell(x, 1);
        let _ = writeln!(
            out,
            "{label:<28} {:>12} {:>10}",
            number(s.map(|s| s.median)),
            number(s.map(|s| s.p90))
        );
    }
    out.push_str(
        "\npg-durable and pg-fsync-off are `withlock --url URL` on the two private servers,\n\
         etcdctl is `etcdctl lock NAME -- COMMAND` and wl-etcd `withlock --url etcd://HOST:PORT`\n\
         on the etcd member, withlock is `withlock --dir D`; all over\n\
         loopback. pg/etcdctl is pg-durable over etcdctl: for times lower is better, for\n\
         the storm higher is. Round trips are those withlock --url waits for before the\n\
         command starts, the TCP handshake included (a counting proxy; median of 5 runs).\n\
         The library rows are one operation each, with no process start: PgLock connects,\n\
         sets the session up, locks, unlocks and closes; the indented rows are its parts\n\
         on their own (a lock session is a connection with its timeouts set; on a new\n\
         session only the lock is timed).\n",
    );
    out
}

/// The same figures as JSON.
pub(crate) fn json(results: &PgResults, settings: PgSettings) -> String {
    let keys = Wrapper::WITH_PG.map(Wrapper::key);
    let by_wrapper = |samples: &[Vec<f64>; 6]| -> Value {
        let mut map = serde_json::Map::new();
        for (key, samples) in keys.iter().zip(samples) {
            map.insert(key.to_string(), summary(Summary::of(samples)));
        }
        let medians = samples.each_ref().map(|s| stats::median(s));
        map.insert(
            "ratio_pg_etcdctl_median".into(),
            number(
                medians[0]
                    .zip(medians[2])
                    .and_then(|(a, b)| stats::ratio(a, b)),
            ),
        );
        Value::Object(map)
    };
    let mut startup = by_wrapper(&results.startup);
    startup["true"] = summary(Summary::of(&results.startup_bare));
    let mut library = serde_json::Map::new();
    for (_, key, samples) in library_rows(results) {
        library.insert(key.to_string(), summary(Summary::of(samples)));
    }
    let mut storm = serde_json::Map::new();
    for (wrapper, rounds) in Wrapper::SERVERS.iter().zip(&results.storm) {
        storm.insert(
            wrapper.key().to_string(),
            json!({
                "median_runs_per_sec": number(stats::median(&rates(rounds))),
                "rounds": rates(rounds),
                "lost_updates": rounds.iter().map(|r| r.lost_updates).sum::<i64>(),
            }),
        );
    }
    let mut inversions = serde_json::Map::new();
    for (key, n) in keys.iter().zip(results.inversions) {
        inversions.insert(key.to_string(), json!(n));
    }
    let value = json!({
        "settings": {
            "runs": settings.runs,
            "handoffs": settings.handoffs,
            "waiters": settings.waiters,
            "storm_procs": results.storm_shape.0,
            "storm_iterations": results.storm_shape.1,
        },
        "server_version": results.server_version,
        "servers": {
            "withlock_pg": "fsync=on full_page_writes=on synchronous_commit=on",
            "withlock_pg_fsync_off": "fsync=off full_page_writes=off synchronous_commit=off",
            "etcdctl": results.etcd_version,
            "withlock_etcd": results.etcd_version,
        },
        "startup_ms": startup,
        "handoff_us": by_wrapper(&results.handoff),
        "storm": storm,
        "round_trips_before_command": results.round_trips.iter().map(|t| t.before).collect::<Vec<_>>(),
        "round_trips_after_command": results.round_trips.iter().map(|t| t.after).collect::<Vec<_>>(),
        "library_us": library,
        "inversions": inversions,
    });
    format!("{value:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure_pg::Library;
    use crate::round_trips::RoundTrips;

    fn round(runs_per_sec: f64) -> Round {
        Round {
            runs_per_sec,
            lost_updates: 0,
        }
    }

    fn results() -> PgResults {
        PgResults {
            server_version: "15.14".into(),
            etcd_version: "etcd Version: 3.4.23".into(),
            startup: [
                vec![6.0, 6.0, 12.0],
                vec![4.0; 3],
                vec![12.0; 3],
                vec![9.0; 3],
                vec![2.0; 3],
                vec![1.5; 3],
            ],
            startup_bare: vec![0.5; 3],
            handoff: [
                vec![1500.0; 2],
                vec![1000.0; 2],
                vec![3000.0; 2],
                vec![2000.0; 2],
                vec![1000.0; 2],
                vec![1200.0; 2],
            ],
            storm: [
                vec![round(200.0), round(100.0), round(300.0)],
                vec![round(250.0); 3],
                vec![round(80.0); 3],
                vec![round(90.0); 3],
            ],
            storm_shape: (8, 20),
            round_trips: vec![
                RoundTrips {
                    before: 6,
                    after: 1,
                };
                3
            ],
            library: Library {
                pg_lock: vec![3000.0],
                file_lock: vec![30.0],
                session: vec![2500.0],
                connect: vec![2000.0],
                lock_on_open_session: vec![200.0],
                lock_on_new_session: vec![400.0],
            },
            inversions: [Some(0), Some(0), Some(0), Some(0), Some(0), Some(3)],
        }
    }

    const SETTINGS: PgSettings = PgSettings {
        runs: 3,
        handoffs: 2,
        waiters: 30,
    };

    #[test]
    fn the_table_compares_the_server_backends_with_each_other_and_the_local_ones() {
        let table = table(&results(), SETTINGS);
        let cells = |label: &str| crate::report::cells(&table, label);
        assert_eq!(
            cells("startup, median (ms)"),
            [
                "6.000", "4.000", "12.000", "9.000", "2.000", "1.500", "0.50x", "0.500"
            ]
        );
        assert_eq!(
            cells("startup, p90 (ms)"),
            [
                "12.000", "4.000", "12.000", "9.000", "2.000", "1.500", "1.00x", "0.500"
            ]
        );
        assert_eq!(
            cells("handoff, median (µs)"),
            [
                "1500.0", "1000.0", "3000.0", "2000.0", "1000.0", "1200.0", "0.50x", "-"
            ]
        );
        assert_eq!(
            cells("storm, median (runs/s)"),
            ["200.0", "250.0", "80.0", "90.0", "-", "-", "2.50x", "-"]
        );
        assert_eq!(
            cells("order inversions"),
            ["0", "0", "0", "0", "0", "3", "-", "-"]
        );
        assert_eq!(
            cells("round trips before command"),
            ["6", "-", "-", "-", "-", "-", "-", "-"]
        );
        assert_eq!(cells("PgLock acquire+release"), ["3000.0", "3000.0"]);
        assert!(
            table.starts_with("PostgreSQL 15.14 on 127.0.0.1: pg-durable has fsync=on"),
            "{table}"
        );
    }

    #[test]
    fn the_json_has_the_same_figures() {
        let json: Value = serde_json::from_str(&json(&results(), SETTINGS)).unwrap();
        assert_eq!(json["startup_ms"]["withlock_pg"]["median"], 6.0);
        assert_eq!(json["startup_ms"]["etcdctl"]["median"], 12.0);
        assert_eq!(json["startup_ms"]["true"]["median"], 0.5);
        assert_eq!(json["startup_ms"]["ratio_pg_etcdctl_median"], 0.5);
        assert_eq!(
            json["handoff_us"]["withlock_pg_fsync_off"]["median"],
            1000.0
        );
        assert_eq!(json["storm"]["etcdctl"]["median_runs_per_sec"], 80.0);
        assert_eq!(json["round_trips_before_command"][0], 6);
        assert_eq!(json["library_us"]["file_lock"]["p90"], 30.0);
        assert_eq!(json["inversions"]["flock"], 3);
        assert_eq!(json["settings"]["waiters"], 30);
    }
}
