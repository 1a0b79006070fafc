//! The layout of `--help`'s own tables (examples, exit statuses): wrapped
//! to the width clap wraps the rest of the help to, with each meaning's
//! continuation lines under its first, so they read as columns on any
//! terminal.

/// The widest help is laid out, even on a wider terminal: longer lines are
/// hard to read.
pub(crate) const MAX_WIDTH: usize = 120;

/// Without a terminal or `COLUMNS`, the width clap assumes.
const DEFAULT_WIDTH: usize = 100;

/// The width clap wraps help to: the terminal's (as clap finds it: stdout,
/// else `COLUMNS`), at most [`MAX_WIDTH`].
pub(crate) fn width() -> usize {
    let terminal = terminal_size::terminal_size()
        .map(|(columns, _)| usize::from(columns.0))
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(DEFAULT_WIDTH);
    terminal.min(MAX_WIDTH)
}

/// Terms longer than this do not widen the terms' column: their meaning
/// starts on the next line instead.
const MAX_TERM: usize = 40;

/// A titled table of terms and their meanings, `width` columns wide. When
/// the meanings' column would be too narrow, each meaning goes under its
/// term instead.
pub(crate) fn table(title: &str, rows: &[(&str, &str)], width: usize) -> String {
    let term_width = rows
        .iter()
        .map(|(term, _)| term.len())
        .filter(|len| *len <= MAX_TERM)
        .max()
        .unwrap_or(0);
    let (indent, column) = match 2 + term_width + 3 {
        beside if width.saturating_sub(beside) >= 30 => (beside, true),
        _ => (6, false),
    };
    let mut out = format!("{title}:\n");
    for (term, meaning) in rows {
        let lines = wrap(meaning, width.saturating_sub(indent));
        let mut lines = lines.iter();
        if column && term.len() <= term_width {
            let first = lines.next().map_or("", String::as_str);
            out.push_str(&format!("  {term:<term_width$}   {first}\n"));
        } else {
            out.push_str(&format!("  {term}\n"));
        }
        for line in lines {
            out.push_str(&format!("{:indent$}{line}\n", ""));
        }
    }
    out
}

/// `text` in lines of at most `width` columns, broken at spaces; a word
/// longer than that gets a line of its own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meanings_wrap_under_their_first_line() {
        let rows = [(
            "75",
            "the lock is held or the wait timed out; change with -E",
        )];
        assert_eq!(
            table("Exit status", &rows, 40),
            "Exit status:\n  75   the lock is held or the wait\n       timed out; change with -E\n"
        );
        // Too narrow for columns: the meaning goes under its term.
        assert_eq!(
            table("Exit status", &rows, 30),
            "Exit status:\n  75\n      the lock is held or the\n      wait timed out; change\n      with -E\n"
        );
    }

    #[test]
    fn a_long_term_does_not_squeeze_the_others() {
        let rows = [("a", "one"), (&"b".repeat(50), "two")];
        let expected = format!("T:\n  a   one\n  {}\n      two\n", "b".repeat(50));
        assert_eq!(table("T", &rows, 80), expected);
    }
}
