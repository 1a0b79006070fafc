//! The figures, as a plain-text table or as JSON.
//!
//! Times are summarised by median and 90th percentile (see `stats`); storm
//! throughput by the median over rounds; timeout errors also by their
//! maximum. The ratio is always withlock over flock(1): for times lower is
//! better, for throughput higher is better.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::measure_fairness::Fairness;
use crate::measure_handoff::Handoff;
use crate::measure_startup::Startup;
use crate::measure_storm::{Round, Storm};
use crate::measure_timeout::Timeouts;
use crate::stats::{self, Summary};

/// What the run was asked to do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub runs: usize,
    pub handoffs: usize,
    pub procs: usize,
    pub iterations: usize,
    pub rounds: usize,
    pub timeouts: usize,
    /// The time each timeout trial asks the wrapper to wait at most.
    pub timeout_ms: u32,
    /// Waiters in the arrival-order measurement.
    pub waiters: usize,
    /// Shared holders in the stream before an exclusive waiter.
    pub readers: usize,
    /// How long each of them holds.
    pub hold_ms: u32,
}

/// Everything measured in one run.
#[derive(Debug)]
pub(crate) struct Results {
    pub settings: Settings,
    pub startup: Startup,
    pub handoff: Handoff,
    pub storm: Storm,
    pub timeout: Timeouts,
    pub fairness: Fairness,
}

/// The summaries both formats print.
struct Figures {
    startup: [Option<Summary>; 3],
    /// Median peak resident set size in KiB: withlock, flock(1).
    peak_rss_kib: [Option<f64>; 2],
    handoff: [Option<Summary>; 2],
    storm_rate: [Option<f64>; 2],
    storm_lost: [i64; 2],
    timeout: [Option<GiveUp>; 2],
}

/// How one wrapper's timed-out waits went, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct GiveUp {
    /// The median wall time from spawn to exit.
    elapsed_median: f64,
    /// The distance of the wall time from the requested time, either way.
    error: Summary,
    error_max: f64,
}

impl GiveUp {
    /// `None` for no trials.
    fn of(elapsed: &[f64], requested_ms: f64) -> Option<GiveUp> {
        let errors: Vec<f64> = elapsed.iter().map(|ms| (ms - requested_ms).abs()).collect();
        Some(GiveUp {
            elapsed_median: stats::median(elapsed)?,
            error: Summary::of(&errors)?,
            error_max: stats::max(&errors)?,
        })
    }
}

impl Figures {
    fn of(results: &Results) -> Figures {
        let (startup, handoff, storm) = (&results.startup, &results.handoff, &results.storm);
        Figures {
            startup: [&startup.withlock, &startup.flock, &startup.bare].map(|s| Summary::of(s)),
            peak_rss_kib: [0, 1].map(|i| stats::median(&startup.peak_rss_kib[i])),
            handoff: [&handoff.withlock, &handoff.flock].map(|s| Summary::of(s)),
            storm_rate: [&storm.withlock, &storm.flock].map(|rounds| stats::median(&rates(rounds))),
            storm_lost: [&storm.withlock, &storm.flock].map(|rounds| lost(rounds)),
            timeout: [&results.timeout.withlock, &results.timeout.flock]
                .map(|elapsed| GiveUp::of(elapsed, f64::from(results.settings.timeout_ms))),
        }
    }
}

fn rates(rounds: &[Round]) -> Vec<f64> {
    rounds.iter().map(|round| round.runs_per_sec).collect()
}

fn lost(rounds: &[Round]) -> i64 {
    rounds.iter().map(|round| round.lost_updates).sum()
}

fn ratio(withlock: Option<f64>, flock: Option<f64>) -> Option<f64> {
    stats::ratio(withlock?, flock?)
}

/// A table cell: `x` with `decimals` places, or `-` for none.
pub(crate) fn cell(x: Option<f64>, decimals: usize) -> String {
    x.map_or("-".to_string(), |x| format!("{x:.decimals$}"))
}

/// The cell of the ratio of `withlock` to its peer, as `0.50x`, or `-`
/// where either is missing.
pub(crate) fn ratio_cell(withlock: Option<f64>, peer: Option<f64>) -> String {
    ratio(withlock, peer).map_or("-".to_string(), |r| format!("{r:.2}x"))
}

/// One line of the table.
struct Row {
    label: &'static str,
    cells: [String; 4],
}

impl Row {
    /// A row comparing the wrappers, with bare `true` where there is one.
    fn compare(
        label: &'static str,
        figures: [Option<f64>; 2],
        bare: Option<f64>,
        decimals: usize,
    ) -> Row {
        let number = |x: Option<f64>| cell(x, decimals);
        Row {
            label,
            cells: [
                number(figures[0]),
                number(figures[1]),
                ratio_cell(figures[0], figures[1]),
                number(bare),
            ],
        }
    }
}

/// The plain-text table.
pub(crate) fn table(results: &Results) -> String {
    let f = Figures::of(results);
    let median = |s: Option<Summary>| s.map(|s| s.median);
    let p90 = |s: Option<Summary>| s.map(|s| s.p90);
    let [withlock, flock, bare] = f.startup;
    let [hand_withlock, hand_flock] = f.handoff;
    let give_up = |figure: fn(GiveUp) -> f64| f.timeout.map(|g| g.map(figure));
    let rows = [
        Row::compare(
            "startup, median (ms)",
            [median(withlock), median(flock)],
            median(bare),
            3,
        ),
        Row::compare(
            "startup, p90 (ms)",
            [p90(withlock), p90(flock)],
            p90(bare),
            3,
        ),
        Row::compare("peak RSS, median (KiB)", f.peak_rss_kib, None, 0),
        Row::compare(
            "handoff, median (µs)",
            [median(hand_withlock), median(hand_flock)],
            None,
            1,
        ),
        Row::compare(
            "handoff, p90 (µs)",
            [p90(hand_withlock), p90(hand_flock)],
            None,
            1,
        ),
        Row::compare("storm, median (runs/s)", f.storm_rate, None, 0),
        Row {
            label: "storm, lost updates",
            cells: [
                f.storm_lost[0].to_string(),
                f.storm_lost[1].to_string(),
                "-".to_string(),
                "-".to_string(),
            ],
        },
        Row::compare(
            "timeout, median (ms)",
            give_up(|g| g.elapsed_median),
            None,
            3,
        ),
        Row::compare(
            "timeout |error|, median (ms)",
            give_up(|g| g.error.median),
            None,
            3,
        ),
        Row::compare(
            "timeout |error|, p90 (ms)",
            give_up(|g| g.error.p90),
            None,
            3,
        ),
        Row::compare(
            "timeout |error|, max (ms)",
            give_up(|g| g.error_max),
            None,
            3,
        ),
        Row {
            label: "order inversions",
            cells: [0, 1, 2, 3].map(|i| match results.fairness.inversions.get(i) {
                Some(Some(n)) => n.to_string(),
                _ => "-".to_string(),
            }),
        },
        Row {
            label: "writer wait (hold times)",
            cells: [0, 1, 2, 3].map(|i| {
                let fair = &results.fairness;
                let starved = if fair.writer_starved.get(i) == Some(&true) {
                    ">="
                } else {
                    ""
                };
                match fair.writer_wait_holds.get(i).copied().flatten() {
                    Some(holds) => format!("{starved}{holds:.1}"),
                    None => "-".to_string(),
                }
            }),
        },
    ];
    let s = results.settings;
    let mut out = format!(
        "startup: {} runs each; handoff: {} trials each; storm: {} processes x {} runs, {} rounds each;\n\
         timeout: {} trials each, giving up after {} ms;\n\
         fairness: {} waiters in order; an exclusive waiter behind {} readers holding {} ms each\n\n",
        s.runs,
        s.handoffs,
        s.procs,
        s.iterations,
        s.rounds,
        s.timeouts,
        s.timeout_ms,
        s.waiters,
        s.readers,
        s.hold_ms
    );
    let header = ["withlock", "flock(1)", "withlock/flock", "bare true"];
    let _ = writeln!(
        out,
        "{:<28} {:>10} {:>10} {:>15} {:>10}",
        "measurement", header[0], header[1], header[2], header[3]
    );
    for row in rows {
        let [a, b, c, d] = &row.cells;
        let _ = writeln!(out, "{:<28} {a:>10} {b:>10} {c:>15} {d:>10}", row.label);
    }
    out.push_str(
        "\nstartup and handoff: lower is better, so a ratio above 1 means withlock is slower.\n\
         storm runs/s: higher is better, so a ratio above 1 means withlock is faster.\n\
         lost updates are summed over all rounds; anything but 0 means the lock failed.\n\
         timeout: wall time from spawn to exit of a wrapper told to give up after the time\n\
         above while the lock stays held; |error| is its distance from that time. Both\n\
         include the wrapper's own process start-up (about 1-2 ms, see startup), so even\n\
         a perfect timer shows that much error.\n\
         order inversions: pairs of waiters served against their arrival order (0 is\n\
         first come, first served). writer wait: how long an exclusive waiter waited\n\
         behind readers re-queueing back to back, in reader hold times; \">=\" means it\n\
         was still waiting when the stream was stopped.\n",
    );
    out
}

/// The same figures as JSON, with per-round storm results as well.
pub(crate) fn json(results: &Results) -> String {
    let f = Figures::of(results);
    let s = results.settings;
    let median = |s: Option<Summary>| s.map(|s| s.median);
    let storm = |rounds: &[Round], rate: Option<f64>| {
        json!({
            "runs_per_sec_median": number(rate),
            "runs_per_sec": rounds.iter().map(|r| number(Some(r.runs_per_sec))).collect::<Vec<_>>(),
            "lost_updates": rounds.iter().map(|r| r.lost_updates).collect::<Vec<_>>(),
        })
    };
    let error_median = |g: Option<GiveUp>| g.map(|g| g.error.median);
    let value = json!({
        "settings": {
            "runs": s.runs,
            "handoffs": s.handoffs,
            "procs": s.procs,
            "iterations": s.iterations,
            "rounds": s.rounds,
            "timeouts": s.timeouts,
            "timeout_ms": s.timeout_ms,
        },
        "startup_ms": {
            "withlock": summary(f.startup[0]),
            "flock": summary(f.startup[1]),
            "true": summary(f.startup[2]),
            "ratio_median": number(ratio(median(f.startup[0]), median(f.startup[1]))),
        },
        "peak_rss_kib": {
            "withlock": number(f.peak_rss_kib[0]),
            "flock": number(f.peak_rss_kib[1]),
            "ratio_median": number(ratio(f.peak_rss_kib[0], f.peak_rss_kib[1])),
        },
        "handoff_us": {
            "withlock": summary(f.handoff[0]),
            "flock": summary(f.handoff[1]),
            "ratio_median": number(ratio(median(f.handoff[0]), median(f.handoff[1]))),
        },
        "storm": {
            "withlock": storm(&results.storm.withlock, f.storm_rate[0]),
            "flock": storm(&results.storm.flock, f.storm_rate[1]),
            "ratio_median": number(ratio(f.storm_rate[0], f.storm_rate[1])),
        },
        "timeout_ms": {
            "requested": s.timeout_ms,
            "withlock": give_up(f.timeout[0]),
            "flock": give_up(f.timeout[1]),
            "ratio_abs_error_median": number(ratio(
                error_median(f.timeout[0]),
                error_median(f.timeout[1]),
            )),
        },
        "fairness": {
            "waiters": s.waiters,
            "readers": s.readers,
            "hold_ms": s.hold_ms,
            "inversions": {
                "withlock": results.fairness.inversions[0],
                "flock": results.fairness.inversions[1],
            },
            "writer_wait_holds": {
                "withlock": number(results.fairness.writer_wait_holds[0]),
                "flock": number(results.fairness.writer_wait_holds[1]),
            },
            "writer_starved": {
                "withlock": results.fairness.writer_starved[0],
                "flock": results.fairness.writer_starved[1],
            },
        },
    });
    format!("{value:#}\n")
}

/// A summary in the JSON reports: median and p90, or `null` for none.
pub(crate) fn summary(summary: Option<Summary>) -> Value {
    match summary {
        Some(s) => json!({"median": number(Some(s.median)), "p90": number(Some(s.p90))}),
        None => Value::Null,
    }
}

fn give_up(give_up: Option<GiveUp>) -> Value {
    match give_up {
        Some(g) => json!({
            "elapsed_median": number(Some(g.elapsed_median)),
            "abs_error_median": number(Some(g.error.median)),
            "abs_error_p90": number(Some(g.error.p90)),
            "abs_error_max": number(Some(g.error_max)),
        }),
        None => Value::Null,
    }
}

/// A JSON number rounded to 3 decimals, or `null` for none (JSON has no NaN
/// or infinity).
pub(crate) fn number(x: Option<f64>) -> Value {
    match x {
        Some(x) if x.is_finite() => json!((x * 1e3).round() / 1e3),
        _ => Value::Null,
    }
}

/// The cells after `label` in its row of a report's table, for the tests
/// of every report.
#[cfg(test)]
pub(crate) fn cells(table: &str, label: &str) -> Vec<String> {
    let line = table.lines().find(|l| l.starts_with(label)).unwrap();
    line[label.len()..]
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Results {
        let round = |runs_per_sec| Round {
            runs_per_sec,
            lost_updates: 0,
        };
        Results {
            settings: Settings {
                runs: 3,
                handoffs: 2,
                procs: 2,
                iterations: 1,
                rounds: 1,
                timeouts: 3,
                timeout_ms: 200,
                waiters: 30,
                readers: 4,
                hold_ms: 100,
            },
            startup: Startup {
                withlock: vec![3.0, 3.0, 9.0],
                flock: vec![2.0, 2.0, 2.0],
                bare: vec![1.0, 1.0, 1.0],
                peak_rss_kib: [vec![4000.0], vec![1500.0]],
            },
            handoff: Handoff {
                withlock: vec![100.0, 200.0],
                flock: vec![150.0, 150.0],
            },
            storm: Storm {
                withlock: vec![round(400.0)],
                flock: vec![round(500.0)],
            },
            timeout: Timeouts {
                withlock: vec![201.0, 203.0, 202.0],
                flock: vec![199.5, 201.0, 200.0],
            },
            fairness: Fairness {
                inversions: [Some(0), Some(212)],
                writer_wait_holds: [Some(1.2), Some(30.0)],
                writer_starved: [false, true],
            },
        }
    }

    #[test]
    fn the_table_shows_medians_and_ratios() {
        let table = table(&results());
        let startup = table
            .lines()
            .find(|l| l.starts_with("startup, median"))
            .unwrap();
        assert_eq!(
            startup.split_whitespace().collect::<Vec<_>>()[3..],
            ["3.000", "2.000", "1.50x", "1.000"]
        );
        assert_eq!(
            cells(&table, "peak RSS, median (KiB)"),
            ["4000", "1500", "2.67x", "-"]
        );
        let storm = table
            .lines()
            .find(|l| l.starts_with("storm, median"))
            .unwrap();
        assert!(
            storm.ends_with("400        500           0.80x          -"),
            "{storm}"
        );
        let row = |label: &str| -> Vec<String> {
            let line = table.lines().find(|l| l.starts_with(label)).unwrap();
            line[label.len()..]
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(row("order inversions"), ["0", "212", "-", "-"]);
        assert_eq!(row("writer wait (hold times)"), ["1.2", ">=30.0", "-", "-"]);
    }

    #[test]
    fn the_table_shows_timeout_errors() {
        let table = table(&results());
        let cells = |label: &str| cells(&table, label);
        assert_eq!(
            cells("timeout, median (ms)"),
            ["202.000", "200.000", "1.01x", "-"]
        );
        assert_eq!(
            cells("timeout |error|, median (ms)"),
            ["2.000", "0.500", "4.00x", "-"]
        );
        assert_eq!(
            cells("timeout |error|, max (ms)"),
            ["3.000", "1.000", "3.00x", "-"]
        );
        assert!(table.contains("timeout: 3 trials each, giving up after 200 ms"));
    }

    #[test]
    fn the_json_has_the_same_figures() {
        let text = json(&results());
        assert!(text.ends_with("}\n"), "{text}");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["settings"]["runs"], 3);
        assert_eq!(json["settings"]["timeout_ms"], 200);
        assert_eq!(
            json["startup_ms"]["withlock"],
            json!({"median": 3.0, "p90": 9.0})
        );
        assert_eq!(json["startup_ms"]["true"]["median"], 1.0);
        assert_eq!(json["startup_ms"]["ratio_median"], 1.5);
        assert_eq!(json["peak_rss_kib"]["withlock"], 4000.0);
        assert_eq!(json["peak_rss_kib"]["flock"], 1500.0);
        assert_eq!(json["handoff_us"]["ratio_median"], 1.0);
        assert_eq!(json["storm"]["withlock"]["runs_per_sec"], json!([400.0]));
        assert_eq!(json["storm"]["withlock"]["lost_updates"], json!([0]));
        assert_eq!(json["storm"]["ratio_median"], 0.8);
        assert_eq!(json["timeout_ms"]["requested"], 200);
        assert_eq!(
            json["timeout_ms"]["withlock"],
            json!({
                "elapsed_median": 202.0,
                "abs_error_median": 2.0,
                "abs_error_p90": 3.0,
                "abs_error_max": 3.0,
            })
        );
        assert_eq!(json["timeout_ms"]["flock"]["abs_error_median"], 0.5);
        assert_eq!(json["timeout_ms"]["ratio_abs_error_median"], 4.0);
        let fairness = &json["fairness"];
        assert_eq!(fairness["inversions"], json!({"withlock": 0, "flock": 212}));
        assert_eq!(fairness["writer_wait_holds"]["withlock"], 1.2);
        assert_eq!(fairness["writer_starved"]["flock"], true);
        assert_eq!(fairness["waiters"], 30);
    }

    #[test]
    fn missing_figures_are_null_in_json() {
        let mut results = results();
        results.startup.bare.clear();
        results.timeout.flock.clear();
        results.storm.flock[0].runs_per_sec = 0.0;
        let json: Value = serde_json::from_str(&json(&results)).unwrap();
        assert!(json["startup_ms"]["true"].is_null());
        assert!(json["timeout_ms"]["flock"].is_null());
        assert!(json["timeout_ms"]["ratio_abs_error_median"].is_null());
        assert!(json["storm"]["ratio_median"].is_null());
        assert_eq!(number(Some(1.23456)), json!(1.235));
        assert!(number(Some(f64::NAN)).is_null());
    }
}
