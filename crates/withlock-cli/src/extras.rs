//! The man page and shell completions, generated from the clap definition
//! so they can never disagree with `--help`.
//!
//! `withlock --generate-extras PREFIX` writes them where man(1) and the
//! shells look under an install prefix such as /usr/local.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use roff::{Roff, bold, italic, roman};

use crate::cli::{self, Cli};

/// Writes every extra under `prefix`; returns the files written.
pub(crate) fn generate(prefix: &Path) -> Result<Vec<PathBuf>> {
    write_all(prefix).map_err(with_fix)
}

/// A PREFIX that cannot be written under is named with the fix, after
/// the system's reason.
fn with_fix(err: anyhow::Error) -> anyhow::Error {
    use std::io::ErrorKind::{NotADirectory, NotFound, PermissionDenied, ReadOnlyFilesystem};
    let prefix_problem = err
        .root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| {
            matches!(
                e.kind(),
                NotFound | NotADirectory | PermissionDenied | ReadOnlyFilesystem
            )
        });
    match prefix_problem {
        true => anyhow::anyhow!(
            "{err:#}: give a PREFIX this user can write to, such as ~/.local, or /usr/local as root"
        ),
        false => err,
    }
}

fn write_all(prefix: &Path) -> Result<Vec<PathBuf>> {
    let mut written = vec![man_page(&prefix.join("share/man/man1"))?];
    for (shell, dir) in [
        (Shell::Bash, "share/bash-completion/completions"),
        (Shell::Zsh, "share/zsh/site-functions"),
        (Shell::Fish, "share/fish/vendor_completions.d"),
    ] {
        let dir = prefix.join(dir);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut path = clap_complete::generate_to(shell, &mut Cli::command(), "withlock", &dir)
            .with_context(|| format!("write {shell} completions in {}", dir.display()))?;
        if shell == Shell::Bash {
            // bash-completion loads completions/<command>, without a suffix.
            let plain = dir.join("withlock");
            fs::rename(&path, &plain).with_context(|| format!("write {}", plain.display()))?;
            path = plain;
        }
        written.push(path);
    }
    Ok(written)
}

fn man_page(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("withlock.1");
    fs::write(&path, render_man_page()?).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// The environment variables withlock reads, or sets for the command.
const ENVIRONMENT: [(&str, &str); 7] = [
    (
        "WITHLOCK_DIR",
        "Where named lock files live, as --dir (which beats it). Ignored with --url.",
    ),
    (
        "WITHLOCK_URL",
        "Take the locks on this PostgreSQL server or etcd cluster, as --url. A --dir on \
         the command line beats it.",
    ),
    (
        "WITHLOCK_FENCE",
        "Set for the command when it holds one --url lock: that lock's fencing token, \
         a number that grows with every grant of the name.",
    ),
    (
        "WITHLOCK_FENCES",
        "Set for the command instead when it holds several --url locks: \
         NAME=TOKEN for each, separated by spaces, in the order they were taken. \
         Whichever of the two is set, the other is removed.",
    ),
    (
        "NO_COLOR",
        "When set (to anything), no colour, even on a terminal.",
    ),
    (
        "PGHOST, PGHOSTADDR, PGPORT, PGDATABASE, PGUSER",
        "With --url, what the URL leaves out, as libpq reads them.",
    ),
    (
        "PGPASSWORD, PGPASSFILE, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY",
        "With --url, the password (else ~/.pgpass) and TLS settings the URL does \
         not give, as libpq reads them.",
    ),
];

/// clap_mangen's sections, with a synopsis that shows the `--` and each
/// option's value, and the examples, exit statuses and environment as
/// proper man page sections rather than `--help`'s plain-text columns.
fn render_man_page() -> Result<Vec<u8>> {
    let command = Cli::shown();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    page.extend(synopsis(&command).as_bytes());
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.extend(definition_list("EXAMPLES", &cli::EXAMPLES).as_bytes());
    page.extend(definition_list("EXIT STATUS", &cli::EXIT_STATUSES).as_bytes());
    page.extend(definition_list("ENVIRONMENT", &ENVIRONMENT).as_bytes());
    page.extend(see_also().as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Stands for roff's unbreakable space of fixed width (`\ `) in the
/// synopsis' text, where the roff crate would escape the backslash: an
/// option and its value, and `--` and the command, stay on one line.
const KEEP: &str = "\u{a0}";

/// The five forms of the command line, each option with its value.
fn synopsis(command: &clap::Command) -> String {
    let mut options = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        // Options of the other two forms, or of none.
        if [
            "help",
            "version",
            "generate-extras",
            "list",
            "json",
            "until-exit",
        ]
        .contains(&long)
        {
            continue;
        }
        options.push(roman("["));
        if let Some(short) = arg.get_short() {
            options.extend([bold(format!("-{short}")), roman("|")]);
        }
        options.push(bold(format!("--{long}")));
        if arg.get_action().takes_values() {
            for value in arg.get_value_names().into_iter().flatten() {
                options.extend([roman(KEEP), italic(value.as_str())]);
            }
        }
        options.push(roman("] "));
    }
    let mut doc = Roff::new();
    doc.control("SH", ["SYNOPSIS"]);
    // Lines broken between options only: no hyphen inside an option's
    // name, no stretched spaces inside brackets.
    doc.control("nh", []);
    doc.control("ad", ["l"]);
    doc.text([bold("withlock"), roman(" ")]);
    doc.text(options);
    doc.text([
        italic("NAME"),
        roman("... "),
        bold("--"),
        roman(KEEP),
        italic("COMMAND"),
        roman(" ["),
        italic("ARGS"),
        roman("...]"),
    ]);
    doc.control("br", []);
    doc.text([
        bold("withlock --list"),
        roman(" ["),
        bold("--json"),
        roman("] ["),
        bold("--dir"),
        roman(KEEP),
        italic("DIR"),
        roman(" | "),
        bold("--url"),
        roman(KEEP),
        italic("URL"),
        roman("] ["),
        italic("NAME"),
        roman("...]"),
    ]);
    doc.control("br", []);
    doc.text([
        bold("withlock hold"),
        roman(" ["),
        italic("OPTIONS"),
        roman("] "),
        italic("NAME"),
        roman("... "),
        bold("--until-exit"),
        roman(KEEP),
        italic("PID"),
    ]);
    doc.control("br", []);
    doc.text([
        bold("withlock release"),
        roman(" "),
        italic("NAME"),
        roman("..."),
    ]);
    doc.control("br", []);
    doc.text([
        bold("withlock --generate-extras"),
        roman(KEEP),
        italic("PREFIX"),
    ]);
    doc.control("hy", []);
    doc.control("ad", ["b"]);
    doc.to_roff().replace(KEEP, r"\ ")
}

fn see_also() -> String {
    let mut doc = Roff::new();
    doc.control("SH", ["SEE ALSO"]);
    doc.text([
        bold("flock"),
        roman("(1), "),
        bold("flock"),
        roman("(2), "),
        bold("sysexits"),
        roman("(3)"),
    ]);
    doc.to_roff()
}

/// A man page section of tagged paragraphs: each term, then its meaning.
fn definition_list(title: &str, rows: &[(&str, &str)]) -> String {
    let mut doc = Roff::new();
    doc.control("SH", [title]);
    for (left, right) in rows {
        doc.control("TP", []);
        doc.text([bold(*left)]);
        doc.text([roman(*right)]);
    }
    doc.to_roff()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_man_page_and_three_completions() {
        let prefix = tempfile::tempdir().unwrap();
        let written = generate(prefix.path()).unwrap();
        assert_eq!(written.len(), 4);
        let man = fs::read_to_string(prefix.path().join("share/man/man1/withlock.1")).unwrap();
        assert!(man.contains(".TH withlock"), "{man}");
        assert!(
            man.contains("conflict\\-exit\\-code"),
            "options are documented"
        );
        for file in &written[1..] {
            let text = fs::read_to_string(file).unwrap();
            assert!(text.contains("no-wait"), "{}: {text}", file.display());
        }
    }
}
