//! Making another user's text safe to print on a terminal.
//!
//! A command line is chosen by whoever ran it, and withlock prints other
//! users' command lines. Every control character (C0, DEL, C1), every
//! Unicode formatting character that can reorder or hide text (bidi
//! overrides, zero-width marks) and every byte that is not UTF-8 is printed
//! as a visible escape, so no escape sequence reaches the terminal.

use std::fmt::Write;

/// Escapes one argument; quotes it when it is empty or has spaces or quotes.
pub fn argument(arg: &[u8]) -> String {
    let mut out = String::new();
    for chunk in arg.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    let needs_quotes =
        arg.is_empty() || out.chars().any(|c| c.is_whitespace() || "'\"".contains(c));
    if needs_quotes {
        format!("'{}'", out.replace('\'', "\\'"))
    } else {
        out
    }
}

/// Escapes a whole command line, one argument after another.
pub fn command_line<A: AsRef<[u8]>>(args: &[A]) -> String {
    args.iter()
        .map(|a| argument(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Escapes text in a message (for example a path) without quoting it.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_char(&mut out, c);
    }
    out
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\\' => out.push_str("\\\\"),
        c if is_dangerous(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00ad            // soft hyphen
            | 0x061c          // Arabic letter mark
            | 0x200b..=0x200f // zero-width and direction marks
            | 0x2028..=0x202e // separators and bidi embeddings, overrides
            | 0x2060..=0x206f // invisible operators and bidi isolates
            | 0xfeff          // zero-width no-break space
            | 0xfff9..=0xfffb // interlinear annotations
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_arguments_pass_through() {
        assert_eq!(command_line(&["make", "deploy", "-j4"]), "make deploy -j4");
    }

    #[test]
    fn terminal_escapes_are_made_visible() {
        let evil = b"\x1b]0;pwned\x07\x1b[2J\x9b31m";
        let shown = argument(evil);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(shown.starts_with("\\u{1b}]0;pwned\\u{7}"), "{shown}");
        assert!(
            shown.contains("\\x9b"),
            "a lone C1 byte is not UTF-8: {shown}"
        );
    }

    #[test]
    fn c1_and_bidi_characters_are_escaped() {
        let shown = argument("a\u{9b}b\u{202e}c".as_bytes());
        assert_eq!(shown, "a\\u{9b}b\\u{202e}c");
    }

    #[test]
    fn spaces_and_empty_arguments_are_quoted() {
        assert_eq!(
            command_line(&["sh", "-c", "echo hi", ""]),
            "sh -c 'echo hi' ''"
        );
        assert_eq!(argument(b"line\nbreak"), "line\\nbreak");
    }
}
