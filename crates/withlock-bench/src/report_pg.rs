//! The `--pg` figures, as a plain-text table or as JSON.
//!
//! The columns are withlock on the PostgreSQL server (`--url`), local
//! withlock and flock(1); the ratios are the server backend over each of
//! the other two. Times are summarised by median and 90th percentile.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::measure_pg::PgResults;
use crate::report::number;
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

/// The plain-text table.
pub(crate) fn table(results: &PgResults, settings: PgSettings) -> String {
    let startup = results.startup.each_ref().map(|s| Summary::of(s));
    let bare = Summary::of(&results.startup_bare);
    let handoff = results.handoff.each_ref().map(|s| Summary::of(s));
    let median = |s: [Option<Summary>; 3]| s.map(|s| s.map(|s| s.median));
    let p90 = |s: [Option<Summary>; 3]| s.map(|s| s.map(|s| s.p90));
    let mut out = format!(
        "PostgreSQL {} on 127.0.0.1; startup: {} runs each; handoff: {} trials each; \
         order: {} waiters\n\n",
        results.server_version, settings.runs, settings.handoffs, settings.waiters
    );
    let _ = writeln!(
        out,
        "{:<28} {:>12} {:>10} {:>10} {:>9} {:>9} {:>10}",
        "measurement", "withlock-pg", "withlock", "flock(1)", "pg/local", "pg/flock", "bare true"
    );
    // Counts (inversions) get no ratios: 0 against 0 is no number.
    let mut row = |label: &str, cells: [Option<f64>; 3], bare: Option<f64>, decimals: usize| {
        let number = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.decimals$}"));
        let ratio = |a: Option<f64>, b: Option<f64>| {
            a.zip(b)
                .filter(|_| decimals > 0)
                .and_then(|(a, b)| stats::ratio(a, b))
                .map_or("-".to_string(), |r| format!("{r:.2}x"))
        };
        let _ = writeln!(
            out,
            "{label:<28} {:>12} {:>10} {:>10} {:>9} {:>9} {:>10}",
            number(cells[0]),
            number(cells[1]),
            number(cells[2]),
            ratio(cells[0], cells[1]),
            ratio(cells[0], cells[2]),
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
    let inversions = results.inversions.map(|n| n.map(|n| n as f64));
    row("order inversions", inversions, None, 0);

    let _ = writeln!(
        out,
        "\n{:<28} {:>12} {:>10}   (in-process, {} runs each)",
        "library (µs)", "median", "p90", settings.runs
    );
    for (label, _, samples) in library_rows(results) {
        let s = Summary::of(samples);
        let number = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1}"));
        let _ = writeln!(
            out,
            "{label:<28} {:>12} {:>10}",
            number(s.map(|s| s.median)),
            number(s.map(|s| s.p90))
        );
    }
    out.push_str(
        "\nwithlock-pg is `withlock --url URL`, on a private server over loopback; withlock is\n\
         `withlock --dir D`. Lower is better, so a ratio above 1 means the server backend is\n\
         slower. The library rows are one operation each, with no process start: PgLock\n\
         connects, sets the session up, locks, unlocks and closes; the indented rows are\n\
         its parts on their own (a lock session is a connection with its timeouts set; on\n\
         a new session only the lock is timed).\n",
    );
    out
}

/// The same figures as JSON.
pub(crate) fn json(results: &PgResults, settings: PgSettings) -> String {
    let keys = ["withlock_pg", "withlock", "flock"];
    let by_wrapper = |samples: &[Vec<f64>; 3]| -> Value {
        let mut map = serde_json::Map::new();
        for (key, samples) in keys.iter().zip(samples) {
            map.insert(key.to_string(), summary(Summary::of(samples)));
        }
        let medians = samples.each_ref().map(|s| stats::median(s));
        map.insert(
            "ratio_pg_local_median".into(),
            number(
                medians[0]
                    .zip(medians[1])
                    .and_then(|(a, b)| stats::ratio(a, b)),
            ),
        );
        map.insert(
            "ratio_pg_flock_median".into(),
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
    let value = json!({
        "settings": {
            "runs": settings.runs,
            "handoffs": settings.handoffs,
            "waiters": settings.waiters,
        },
        "server_version": results.server_version,
        "startup_ms": startup,
        "handoff_us": by_wrapper(&results.handoff),
        "library_us": library,
        "inversions": {
            "withlock_pg": results.inversions[0],
            "withlock": results.inversions[1],
            "flock": results.inversions[2],
        },
    });
    format!("{value:#}\n")
}

fn summary(summary: Option<Summary>) -> Value {
    match summary {
        Some(s) => json!({"median": number(Some(s.median)), "p90": number(Some(s.p90))}),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure_pg::Library;

    fn results() -> PgResults {
        PgResults {
            server_version: "15.14".into(),
            startup: [vec![6.0, 6.0, 12.0], vec![2.0; 3], vec![1.5; 3]],
            startup_bare: vec![0.5; 3],
            handoff: [vec![1500.0; 2], vec![1000.0; 2], vec![1200.0; 2]],
            library: Library {
                pg_lock: vec![3000.0],
                file_lock: vec![30.0],
                session: vec![2500.0],
                connect: vec![2000.0],
                lock_on_open_session: vec![200.0],
                lock_on_new_session: vec![400.0],
            },
            inversions: [Some(0), Some(0), Some(3)],
        }
    }

    const SETTINGS: PgSettings = PgSettings {
        runs: 3,
        handoffs: 2,
        waiters: 30,
    };

    #[test]
    fn the_table_compares_the_server_with_both_local_wrappers() {
        let table = table(&results(), SETTINGS);
        let cells = |label: &str| -> Vec<String> {
            let line = table.lines().find(|l| l.starts_with(label)).unwrap();
            line[label.len()..]
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            cells("startup, median (ms)"),
            ["6.000", "2.000", "1.500", "3.00x", "4.00x", "0.500"]
        );
        assert_eq!(
            cells("startup, p90 (ms)"),
            ["12.000", "2.000", "1.500", "6.00x", "8.00x", "0.500"]
        );
        assert_eq!(
            cells("handoff, median (µs)"),
            ["1500.0", "1000.0", "1200.0", "1.50x", "1.25x", "-"]
        );
        assert_eq!(cells("order inversions"), ["0", "0", "3", "-", "-", "-"]);
        assert_eq!(cells("PgLock acquire+release"), ["3000.0", "3000.0"]);
        assert_eq!(cells("  lock+unlock, open session"), ["200.0", "200.0"]);
        assert!(
            table.starts_with("PostgreSQL 15.14 on 127.0.0.1"),
            "{table}"
        );
    }

    #[test]
    fn the_json_has_the_same_figures() {
        let json: Value = serde_json::from_str(&json(&results(), SETTINGS)).unwrap();
        assert_eq!(json["startup_ms"]["withlock_pg"]["median"], 6.0);
        assert_eq!(json["startup_ms"]["true"]["median"], 0.5);
        assert_eq!(json["startup_ms"]["ratio_pg_local_median"], 3.0);
        assert_eq!(json["handoff_us"]["ratio_pg_flock_median"], 1.25);
        assert_eq!(json["library_us"]["file_lock"]["p90"], 30.0);
        assert_eq!(json["library_us"]["lock_on_new_session"]["median"], 400.0);
        assert_eq!(json["inversions"]["flock"], 3);
        assert_eq!(json["settings"]["waiters"], 30);
    }
}
