//! The waiting line on a terminal: cut to the terminal's width with a
//! visible mark, never losing who holds the lock and for how long, and
//! left in the scrollback in its final form once the lock is ours.

use crate::signals::OnTerminal;
use crate::support::{Env, wait_child, wait_for};

/// What a person saw drawn on the terminal: its output without control
/// sequences, one entry per line drawn (split at CR and LF).
fn drawn(output: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = output.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\r', '\n'])
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn on_a_narrow_terminal_the_line_keeps_the_holder_and_marks_its_cuts() {
    let env = Env::new();
    let name = "nightly-database-backup-of-the-production-cluster";
    let holder = env.hold(env.withlock().arg(name), "h");
    let run = env.withlock().args([name, "--", "echo", "RAN"]);
    let mut terminal = OnTerminal::start_sized(&run, Some(80));
    let who = format!("held exclusive by pid {} (root) for ", holder.pid());
    wait_for("the waiting line to name the holder", || {
        drawn(&terminal.output())
            .iter()
            .any(|line| line.contains(&who))
    });
    let lines = drawn(&terminal.output());
    let waiting: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with("withlock: waiting "))
        .collect();
    assert!(!waiting.is_empty(), "{lines:?}");
    for line in waiting {
        assert!(
            line.chars().count() <= 80,
            "wider than the terminal: {line}"
        );
        assert!(line.contains(&who), "the holder was cut: {line}");
        assert!(
            line.contains(": …"),
            "the command's cut is not marked: {line}"
        );
        assert!(line.contains("for nig"), "the name's cut: {line}");
    }

    assert!(holder.release().success());
    assert!(wait_child(&mut terminal.withlock.child).success());
    terminal.wait_drained();
    let lines = drawn(&terminal.output());
    let waited = lines
        .iter()
        .position(|line| line.starts_with("withlock: waited "))
        .unwrap_or_else(|| panic!("no final line once granted: {lines:?}"));
    let last = &lines[waited];
    assert!(
        last.contains(&format!("for {name}: held exclusive by pid")),
        "{last}"
    );
    assert!(
        last.contains(&format!("withlock {name} -- sh -c")),
        "{last}"
    );
    assert_eq!(lines[waited + 1..], ["RAN"], "{lines:?}");
}
