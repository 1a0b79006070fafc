//! The `--etcd` figures, as a plain-text table or as JSON.
//!
//! The columns are withlock on the etcd member (`--url etcd://`) and
//! `etcdctl lock` on the same member; the ratio is withlock's over
//! etcdctl's. Times are summarised by median and 90th percentile, storms
//! by the median of their rounds.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::measure_etcd::{EtcdResults, EtcdSettings};
use crate::report::{cell, number, ratio_cell, summary};
use crate::stats::{self, Summary};

/// Runs per second of each storm round.
fn rates(results: &EtcdResults) -> [Vec<f64>; 2] {
    results
        .storm
        .each_ref()
        .map(|rounds| rounds.iter().map(|round| round.runs_per_sec).collect())
}

/// Updates lost over all rounds: 0 unless the lock failed.
fn lost(results: &EtcdResults) -> [i64; 2] {
    results
        .storm
        .each_ref()
        .map(|rounds| rounds.iter().map(|round| round.lost_updates).sum())
}

/// The plain-text table.
pub(crate) fn table(results: &EtcdResults, settings: EtcdSettings) -> String {
    let startup = results.startup.each_ref().map(|s| Summary::of(s));
    let bare = Summary::of(&results.startup_bare);
    let handoff = results.handoff.each_ref().map(|s| Summary::of(s));
    let rates = rates(results).map(|r| stats::median(&r));
    let median = |s: [Option<Summary>; 2]| s.map(|s| s.map(|s| s.median));
    let p90 = |s: [Option<Summary>; 2]| s.map(|s| s.map(|s| s.p90));
    let mut out = format!(
        "etcd {} (one member) on 127.0.0.1; startup: {} runs each; handoff: {} trials \
         each; storm: {} processes x {} runs, {} rounds each; order: {} waiters\n\n",
        results.server_version,
        settings.runs,
        settings.handoffs,
        settings.procs,
        settings.iterations,
        settings.rounds,
        settings.waiters
    );
    let _ = writeln!(
        out,
        "{:<28} {:>14} {:>10} {:>14} {:>10}",
        "measurement", "withlock-etcd", "etcdctl", "withlock/etcdctl", "bare true"
    );
    // Counts (lost updates, inversions) get no ratio: 0 against 0 is no
    // number.
    let mut row = |label: &str, cells: [Option<f64>; 2], bare: Option<f64>, decimals: usize| {
        let number = |x: Option<f64>| cell(x, decimals);
        let ratio = if decimals > 0 {
            ratio_cell(cells[0], cells[1])
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "{label:<28} {:>14} {:>10} {:>16} {:>10}",
            number(cells[0]),
            number(cells[1]),
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
    row("storm, median (runs/s)", rates, None, 1);
    row(
        "storm, lost updates",
        lost(results).map(|n| Some(n as f64)),
        None,
        0,
    );
    row(
        "order inversions",
        results.inversions.map(|n| Some(n as f64)),
        None,
        0,
    );
    out.push_str(
        "\nwithlock-etcd is `withlock --url etcd://HOST:PORT`; etcdctl is `etcdctl lock NAME`,\n\
         both on the same private member over loopback. For times lower is better, so a\n\
         ratio below 1 means withlock is faster; for the storm higher is better, so a\n\
         ratio above 1 means withlock gets more runs through.\n",
    );
    out
}

/// The same figures as JSON.
pub(crate) fn json(results: &EtcdResults, settings: EtcdSettings) -> String {
    let keys = ["withlock_etcd", "etcdctl"];
    let ratio = |medians: [Option<f64>; 2]| {
        number(
            medians[0]
                .zip(medians[1])
                .and_then(|(a, b)| stats::ratio(a, b)),
        )
    };
    let by_client = |samples: &[Vec<f64>; 2]| -> Value {
        let mut map = serde_json::Map::new();
        for (key, samples) in keys.iter().zip(samples) {
            map.insert(key.to_string(), summary(Summary::of(samples)));
        }
        map.insert(
            "ratio_withlock_etcdctl_median".into(),
            ratio(samples.each_ref().map(|s| stats::median(s))),
        );
        Value::Object(map)
    };
    let mut startup = by_client(&results.startup);
    startup["true"] = summary(Summary::of(&results.startup_bare));
    let rates = rates(results);
    let lost = lost(results);
    let value = json!({
        "settings": {
            "runs": settings.runs,
            "handoffs": settings.handoffs,
            "procs": settings.procs,
            "iterations": settings.iterations,
            "rounds": settings.rounds,
            "waiters": settings.waiters,
        },
        "server_version": results.server_version,
        "startup_ms": startup,
        "handoff_us": by_client(&results.handoff),
        "storm_runs_per_sec": {
            "withlock_etcd": rates[0],
            "etcdctl": rates[1],
            "ratio_withlock_etcdctl_median":
                ratio(rates.each_ref().map(|r| stats::median(r))),
        },
        "storm_lost_updates": {"withlock_etcd": lost[0], "etcdctl": lost[1]},
        "inversions": {
            "withlock_etcd": results.inversions[0],
            "etcdctl": results.inversions[1],
        },
    });
    format!("{value:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure_storm::Round;

    fn results() -> EtcdResults {
        let round = |runs_per_sec| Round {
            runs_per_sec,
            lost_updates: 0,
        };
        EtcdResults {
            server_version: "3.4.23".into(),
            startup: [vec![6.0, 6.0, 12.0], vec![12.0; 3]],
            startup_bare: vec![0.5; 3],
            handoff: [vec![1500.0; 2], vec![3000.0; 2]],
            storm: [vec![round(200.0), round(220.0)], vec![round(100.0); 2]],
            inversions: [0, 2],
        }
    }

    const SETTINGS: EtcdSettings = EtcdSettings {
        runs: 3,
        handoffs: 2,
        procs: 8,
        iterations: 10,
        rounds: 2,
        waiters: 20,
    };

    #[test]
    fn the_table_puts_withlock_beside_etcdctl() {
        let table = table(&results(), SETTINGS);
        let cells = |label: &str| crate::report::cells(&table, label);
        assert_eq!(
            cells("startup, median (ms)"),
            ["6.000", "12.000", "0.50x", "0.500"]
        );
        assert_eq!(
            cells("handoff, p90 (µs)"),
            ["1500.0", "3000.0", "0.50x", "-"]
        );
        assert_eq!(
            cells("storm, median (runs/s)"),
            ["210.0", "100.0", "2.10x", "-"]
        );
        assert_eq!(cells("storm, lost updates"), ["0", "0", "-", "-"]);
        assert_eq!(cells("order inversions"), ["0", "2", "-", "-"]);
        assert!(table.starts_with("etcd 3.4.23 (one member)"), "{table}");
    }

    #[test]
    fn the_json_has_the_same_figures() {
        let json: Value = serde_json::from_str(&json(&results(), SETTINGS)).unwrap();
        assert_eq!(json["startup_ms"]["withlock_etcd"]["median"], 6.0);
        assert_eq!(json["startup_ms"]["true"]["median"], 0.5);
        assert_eq!(json["startup_ms"]["ratio_withlock_etcdctl_median"], 0.5);
        assert_eq!(json["handoff_us"]["etcdctl"]["median"], 3000.0);
        assert_eq!(
            json["storm_runs_per_sec"]["ratio_withlock_etcdctl_median"],
            2.1
        );
        assert_eq!(json["storm_lost_updates"]["etcdctl"], 0);
        assert_eq!(json["inversions"]["etcdctl"], 2);
        assert_eq!(json["settings"]["procs"], 8);
    }
}
