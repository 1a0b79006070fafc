//! The password file, read as libpq reads it: `PGPASSFILE` (or the URL's
//! `passfile`), else `~/.pgpass`; one `hostname:port:database:username:password`
//! entry a line, the first match wins, `*` matches any value, `\:` and
//! `\\` stand for a colon and a backslash, lines starting with `#` are
//! comments.
//!
//! A file that does not exist is no error. A file that is not a regular
//! file, that can be read by group or others (libpq wants `0600` or less),
//! or that cannot be read, is ignored like libpq does; libpq prints a
//! WARNING, but this library prints nothing, so the reason is returned as a
//! note that the connection error shows when authentication then fails.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// What a connection is looked up by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lookup<'a> {
    /// The host name, the `hostaddr`, or the socket directory; `localhost`
    /// for the default socket directory, as libpq.
    pub host: &'a str,
    /// The port, in decimal.
    pub port: &'a str,
    /// The database name.
    pub database: &'a str,
    /// The role name.
    pub user: &'a str,
}

/// What reading the file gave.
#[derive(PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No file, or no entry for this connection.
    NotFound,
    /// The password of the first matching entry.
    Found(String),
    /// The file was not read; the reason, for error messages.
    Ignored(String),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotFound => f.write_str("NotFound"),
            Outcome::Found(_) => f.write_str("Found(<redacted>)"),
            Outcome::Ignored(why) => f.debug_tuple("Ignored").field(why).finish(),
        }
    }
}

/// The password the file at `path` holds for `lookup`.
pub(crate) fn password(path: &Path, lookup: Lookup<'_>) -> Outcome {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::NotFound,
        Err(e) => return ignored(path, &format!("cannot be opened ({e})")),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return ignored(path, &format!("cannot be examined ({e})")),
    };
    if !meta.is_file() {
        return ignored(path, "is not a plain file");
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return ignored(
            path,
            &format!(
                "has group or world access (mode {:04o}; make it 0600 with chmod 600)",
                meta.mode() & 0o7777
            ),
        );
    }
    let mut text = Vec::new();
    if let Err(e) = file.read_to_end(&mut text) {
        return ignored(path, &format!("cannot be read ({e})"));
    }
    match find(&String::from_utf8_lossy(&text), lookup) {
        Some(password) => Outcome::Found(password),
        None => Outcome::NotFound,
    }
}

fn ignored(path: &Path, why: &str) -> Outcome {
    Outcome::Ignored(format!(
        "password file {} was ignored: it {why}",
        path.display()
    ))
}

/// The password of the first line of `text` matching `lookup`.
pub(crate) fn find(text: &str, lookup: Lookup<'_>) -> Option<String> {
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| entry_password(line, lookup))
}

/// The password of `line` if its four fields match `lookup`.
fn entry_password(line: &str, lookup: Lookup<'_>) -> Option<String> {
    let mut rest = line;
    for wanted in [lookup.host, lookup.port, lookup.database, lookup.user] {
        rest = match_field(rest, wanted)?;
    }
    Some(unescape_until_colon(rest))
}

/// The text after the field at the start of `line` and its colon, if the
/// field is `*` or equals `wanted` once unescaped.
fn match_field<'a>(line: &'a str, wanted: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut wanted = wanted.chars();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        let c = match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => escaped,
                None => return None,
            },
            ':' => {
                return match wanted.next() {
                    None => Some(&line[i + 1..]),
                    Some(_) => None,
                };
            }
            c => c,
        };
        if wanted.next() != Some(c) {
            return None;
        }
    }
    // The line ended inside the field: no password field follows.
    None
}

/// The password field: up to the next unescaped colon, escapes removed.
fn unescape_until_colon(field: &str) -> String {
    let mut password = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => match chars.next() {
                Some(escaped) => password.push(escaped),
                None => password.push('\\'),
            },
            c => password.push(c),
        }
    }
    password
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const APP: Lookup<'static> = Lookup {
        host: "db.example",
        port: "5432",
        database: "app",
        user: "alice",
    };

    #[test]
    fn the_first_matching_line_wins() {
        let text = "\
db.example:5432:other:alice:wrong
db.example:5432:app:alice:right
*:*:*:*:fallback
";
        assert_eq!(find(text, APP).as_deref(), Some("right"));
    }

    #[test]
    fn stars_match_any_value() {
        assert_eq!(find("*:5432:*:alice:pw", APP).as_deref(), Some("pw"));
        assert_eq!(find("*:*:*:*:pw", APP).as_deref(), Some("pw"));
        assert_eq!(find("*:6543:*:alice:pw", APP), None);
    }

    #[test]
    fn a_star_inside_a_value_is_literal() {
        let lookup = Lookup { host: "db*", ..APP };
        assert_eq!(find("db.example:*:*:*:no", lookup), None);
        assert_eq!(find("db*:*:*:*:yes", lookup).as_deref(), Some("yes"));
        assert_eq!(find("db.*:*:*:*:no", APP), None);
    }

    #[test]
    fn escaped_colons_and_backslashes_are_unescaped() {
        let lookup = Lookup {
            host: "/run/a:b",
            user: "do\\main",
            ..APP
        };
        let text = r"/run/a\:b:5432:app:do\\main:p\:w\\d";
        assert_eq!(find(text, lookup).as_deref(), Some(r"p:w\d"));
    }

    #[test]
    fn the_password_ends_at_an_unescaped_colon() {
        assert_eq!(find("*:*:*:*:pass:extra", APP).as_deref(), Some("pass"));
    }

    #[test]
    fn an_empty_password_is_found_as_empty() {
        assert_eq!(find("*:*:*:*:", APP).as_deref(), Some(""));
    }

    #[test]
    fn comments_blank_and_short_lines_are_skipped() {
        let text = "# *:*:*:*:commented\n\n db.example:5432:app:alice:spaced\ndb.example:5432\n*:*:*:*:ok\r\n";
        assert_eq!(find(text, APP).as_deref(), Some("ok"));
    }

    #[test]
    fn a_field_must_match_whole() {
        assert_eq!(find("db.example:5432:app:alicex:pw", APP), None);
        assert_eq!(find("db.example:5432:app:alic:pw", APP), None);
        assert_eq!(find("db.example:543:app:alice:pw", APP), None);
    }

    fn write_file(text: &str, mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_private_file_is_read() {
        let (_dir, path) = write_file("*:*:*:alice:s3cret\n", 0o600);
        assert_eq!(password(&path, APP), Outcome::Found("s3cret".into()));
        let (_dir, path) = write_file("*:*:*:bob:s3cret\n", 0o400);
        assert_eq!(password(&path, APP), Outcome::NotFound);
    }

    #[test]
    fn a_file_others_can_read_is_ignored_with_the_reason() {
        let (_dir, path) = write_file("*:*:*:alice:s3cret\n", 0o640);
        let Outcome::Ignored(why) = password(&path, APP) else {
            panic!("not ignored")
        };
        assert!(why.contains("group or world access"), "{why}");
        assert!(why.contains("0640"), "{why}");
        assert!(!why.contains("s3cret"));
    }

    #[test]
    fn a_missing_file_is_no_error_and_a_directory_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(password(&dir.path().join("none"), APP), Outcome::NotFound);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(password(dir.path(), APP), Outcome::Ignored(_)));
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert!(!format!("{:?}", Outcome::Found("s3cret".into())).contains("s3cret"));
    }
}
