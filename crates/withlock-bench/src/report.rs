//! The figures, as a plain-text table or as JSON.
//!
//! Times are summarised by median and 90th percentile (see `stats`); storm
//! throughput by the median over rounds. The ratio is always withlock over
//! flock(1): for times lower is better, for throughput higher is better.

use std::fmt::Write;

use crate::measure_handoff::Handoff;
use crate::measure_startup::Startup;
use crate::measure_storm::{Round, Storm};
use crate::stats::{self, Summary};

/// What the run was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub runs: usize,
    pub handoffs: usize,
    pub procs: usize,
    pub iterations: usize,
    pub rounds: usize,
}

/// Everything measured in one run.
#[derive(Debug)]
pub struct Results {
    pub settings: Settings,
    pub startup: Startup,
    pub handoff: Handoff,
    pub storm: Storm,
}

/// The summaries both formats print.
struct Figures {
    startup: [Option<Summary>; 3],
    handoff: [Option<Summary>; 2],
    storm_rate: [Option<f64>; 2],
    storm_lost: [i64; 2],
}

impl Figures {
    fn of(results: &Results) -> Figures {
        let (startup, handoff, storm) = (&results.startup, &results.handoff, &results.storm);
        Figures {
            startup: [&startup.withlock, &startup.flock, &startup.bare].map(|s| Summary::of(s)),
            handoff: [&handoff.withlock, &handoff.flock].map(|s| Summary::of(s)),
            storm_rate: [&storm.withlock, &storm.flock].map(|rounds| stats::median(&rates(rounds))),
            storm_lost: [&storm.withlock, &storm.flock].map(|rounds| lost(rounds)),
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
        let number = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.decimals$}"));
        Row {
            label,
            cells: [
                number(figures[0]),
                number(figures[1]),
                ratio(figures[0], figures[1]).map_or("-".to_string(), |r| format!("{r:.2}x")),
                number(bare),
            ],
        }
    }
}

/// The plain-text table.
pub fn table(results: &Results) -> String {
    let f = Figures::of(results);
    let median = |s: Option<Summary>| s.map(|s| s.median);
    let p90 = |s: Option<Summary>| s.map(|s| s.p90);
    let [withlock, flock, bare] = f.startup;
    let [hand_withlock, hand_flock] = f.handoff;
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
    ];
    let s = results.settings;
    let mut out = format!(
        "startup: {} runs each; handoff: {} trials each; storm: {} processes x {} runs, {} rounds each\n\n",
        s.runs, s.handoffs, s.procs, s.iterations, s.rounds
    );
    let header = ["withlock", "flock(1)", "withlock/flock", "bare true"];
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>10} {:>15} {:>10}",
        "measurement", header[0], header[1], header[2], header[3]
    );
    for row in rows {
        let [a, b, c, d] = &row.cells;
        let _ = writeln!(out, "{:<24} {a:>10} {b:>10} {c:>15} {d:>10}", row.label);
    }
    out.push_str(
        "\nstartup and handoff: lower is better, so a ratio above 1 means withlock is slower.\n\
         storm runs/s: higher is better, so a ratio above 1 means withlock is faster.\n\
         lost updates are summed over all rounds; anything but 0 means the lock failed.\n",
    );
    out
}

/// The same figures as JSON, with per-round storm results as well.
///
/// Written by hand: the shape is small and fixed, and this keeps serde out
/// of the workspace's dependencies for one benchmark.
pub fn json(results: &Results) -> String {
    let f = Figures::of(results);
    let s = results.settings;
    let storm = |rounds: &[Round], rate: Option<f64>| {
        format!(
            "{{\"runs_per_sec_median\": {}, \"runs_per_sec\": [{}], \"lost_updates\": [{}]}}",
            number(rate),
            rounds
                .iter()
                .map(|r| number(Some(r.runs_per_sec)))
                .collect::<Vec<_>>()
                .join(", "),
            rounds
                .iter()
                .map(|r| r.lost_updates.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    let median = |s: Option<Summary>| s.map(|s| s.median);
    format!(
        "{{\n\
         \x20 \"settings\": {{\"runs\": {}, \"handoffs\": {}, \"procs\": {}, \"iterations\": {}, \"rounds\": {}}},\n\
         \x20 \"startup_ms\": {{\n\
         \x20   \"withlock\": {},\n\
         \x20   \"flock\": {},\n\
         \x20   \"true\": {},\n\
         \x20   \"ratio_median\": {}\n\
         \x20 }},\n\
         \x20 \"handoff_us\": {{\n\
         \x20   \"withlock\": {},\n\
         \x20   \"flock\": {},\n\
         \x20   \"ratio_median\": {}\n\
         \x20 }},\n\
         \x20 \"storm\": {{\n\
         \x20   \"withlock\": {},\n\
         \x20   \"flock\": {},\n\
         \x20   \"ratio_median\": {}\n\
         \x20 }}\n\
         }}\n",
        s.runs,
        s.handoffs,
        s.procs,
        s.iterations,
        s.rounds,
        summary(f.startup[0]),
        summary(f.startup[1]),
        summary(f.startup[2]),
        number(ratio(median(f.startup[0]), median(f.startup[1]))),
        summary(f.handoff[0]),
        summary(f.handoff[1]),
        number(ratio(median(f.handoff[0]), median(f.handoff[1]))),
        storm(&results.storm.withlock, f.storm_rate[0]),
        storm(&results.storm.flock, f.storm_rate[1]),
        number(ratio(f.storm_rate[0], f.storm_rate[1])),
    )
}

fn summary(summary: Option<Summary>) -> String {
    match summary {
        Some(s) => format!(
            "{{\"median\": {}, \"p90\": {}}}",
            number(Some(s.median)),
            number(Some(s.p90))
        ),
        None => "null".to_string(),
    }
}

/// A JSON number, or `null` for none (JSON has no NaN or infinity).
fn number(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "null".to_string(),
    }
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
            },
            startup: Startup {
                withlock: vec![3.0, 3.0, 9.0],
                flock: vec![2.0, 2.0, 2.0],
                bare: vec![1.0, 1.0, 1.0],
            },
            handoff: Handoff {
                withlock: vec![100.0, 200.0],
                flock: vec![150.0, 150.0],
            },
            storm: Storm {
                withlock: vec![round(400.0)],
                flock: vec![round(500.0)],
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
        let storm = table
            .lines()
            .find(|l| l.starts_with("storm, median"))
            .unwrap();
        assert!(
            storm.ends_with("400        500           0.80x          -"),
            "{storm}"
        );
    }

    #[test]
    fn the_json_has_the_same_figures() {
        let json = json(&results());
        assert!(
            json.contains(r#""withlock": {"median": 3.000, "p90": 9.000}"#),
            "{json}"
        );
        assert!(json.contains(r#""ratio_median": 1.000"#), "{json}");
        assert!(
            json.contains(r#""runs_per_sec": [400.000], "lost_updates": [0]"#),
            "{json}"
        );
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }
}
