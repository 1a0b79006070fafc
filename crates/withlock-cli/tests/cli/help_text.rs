//! `-h`, `--help` and the man page: `-h` is a short summary, `--help` the
//! whole text, both wrapped to the terminal (here `COLUMNS`, as clap reads
//! it when stdout is not a terminal); the man page has the sections a
//! reader looks for.

use std::process::Command;

use crate::support::{Env, output};

/// `withlock ARG` with `COLUMNS` set: its stdout.
fn help(env: &Env, arg: &str, columns: usize) -> String {
    let mut run = env.withlock().arg(arg);
    run.env("COLUMNS", columns.to_string());
    let out = run.assert().code(0).get_output().clone();
    String::from_utf8(out.stdout).unwrap()
}

fn widest(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap()
}

#[test]
fn short_help_is_a_summary_and_points_to_the_long_one() {
    let env = Env::new();
    let short = help(&env, "-h", 80);
    assert!(short.lines().count() <= 40, "{short}");
    assert!(!short.contains("Exit status:"), "{short}");
    assert!(short.contains("withlock --help"), "{short}");
    assert!(!short.contains("--generate-extras"), "{short}");
    let long = help(&env, "--help", 80);
    assert!(long.lines().count() > 2 * short.lines().count());
    for section in [
        "Examples:",
        "Exit status:",
        "--generate-extras",
        "WITHLOCK_FENCES",
    ] {
        assert!(long.contains(section), "{section}: {long}");
    }
}

#[test]
fn both_helps_wrap_to_the_terminal_with_columns_kept() {
    let env = Env::new();
    for arg in ["-h", "--help"] {
        for columns in [60, 80] {
            let text = help(&env, arg, columns);
            assert!(widest(&text) <= columns, "{arg} at {columns}:\n{text}");
        }
        // A wide terminal is used, up to a width that still reads well.
        assert!(widest(&help(&env, arg, 300)) <= 120, "{arg}");
    }
    assert!(widest(&help(&env, "--help", 300)) > 100);
    // The exit statuses stay a table: each meaning's continuation lines
    // are indented under it, never at the left margin.
    let long = help(&env, "--help", 60);
    let statuses = long.split("Exit status:\n").nth(1).unwrap();
    for line in statuses.lines() {
        assert!(line.starts_with("  "), "{line:?} in\n{statuses}");
    }
}

/// The man page `withlock --generate-extras` writes, as roff source.
fn man_page(env: &Env) -> String {
    let prefix = env.file("prefix");
    env.withlock()
        .arg("--generate-extras")
        .arg(&prefix)
        .assert()
        .code(0);
    std::fs::read_to_string(prefix.join("share/man/man1/withlock.1")).unwrap()
}

/// The text of the man page section `title`, up to the next one.
fn section<'a>(page: &'a str, title: &str) -> &'a str {
    let start = page
        .find(&format!(".SH {title}\n"))
        .unwrap_or_else(|| panic!("no {title} section:\n{page}"));
    let rest = &page[start + 1..];
    &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
}

#[test]
fn the_man_page_has_a_synopsis_with_values_and_dashes_an_environment_and_see_also() {
    let env = Env::new();
    let page = man_page(&env);
    let synopsis = section(&page, "SYNOPSIS");
    for shown in [
        r"\fB\-\-wait\fR\ \fISECONDS\fR",
        r"\fB\-\-dir\fR\ \fIDIR\fR",
        r"\fB\-\-max\fR\ \fIN\fR",
        r"\fINAME\fR... \fB\-\-\fR\ \fICOMMAND\fR",
        r"\fBwithlock \-\-list\fR",
    ] {
        assert!(synopsis.contains(shown), "{shown}:\n{synopsis}");
    }
    let environment = section(&page, "ENVIRONMENT");
    for variable in [
        "WITHLOCK_DIR",
        "WITHLOCK_URL",
        r"\fBWITHLOCK_FENCE\fR",
        "WITHLOCK_FENCES",
        "NO_COLOR",
        "PGPASSWORD",
        "PGHOST",
        "PGSSLMODE",
    ] {
        assert!(environment.contains(variable), "{variable}:\n{environment}");
    }
    let see_also = section(&page, "\"SEE ALSO\"");
    assert!(see_also.contains(r"\fBflock\fR(1)"), "{see_also}");
}

#[test]
fn help_and_man_page_list_every_exit_status_of_the_readme() {
    let readme = include_str!("../../../../README.md");
    let table = readme.split("### Exit status").nth(1).unwrap();
    let statuses: Vec<&str> = table
        .lines()
        .skip_while(|line| !line.starts_with("| status"))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.split('|').nth(1))
        .map(str::trim)
        .filter(|status| status.parse::<u8>().is_ok())
        .collect();
    assert!(statuses.len() >= 10, "{statuses:?}");
    let env = Env::new();
    let help = help(&env, "--help", 100);
    let help = help.split("Exit status:\n").nth(1).unwrap();
    let page = man_page(&env);
    let page = section(&page, r#""EXIT STATUS""#);
    for status in statuses {
        assert!(
            help.lines()
                .any(|line| line.starts_with(&format!("  {status} "))),
            "{status} is missing from --help:\n{help}"
        );
        assert!(
            page.contains(&format!("\\fB{status}\\fR")),
            "{status}: {page}"
        );
    }
}

/// The man page as man(1) shows it, `columns` wide, without bold or
/// underlining.
fn rendered(env: &Env, columns: usize) -> String {
    let page = env.file("prefix/share/man/man1/withlock.1");
    if !page.exists() {
        man_page(env);
    }
    let out = output(
        Command::new("groff")
            .args(["-man", "-Tascii", "-P-cbou"])
            .arg(format!("-rLL={columns}n"))
            .arg(&page),
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// However narrow the page, the synopsis breaks lines between options,
/// never between an option and its value (`[--max` / `N]`) nor inside an
/// option's name.
#[test]
fn the_synopsis_keeps_each_option_with_its_value_at_any_width() {
    let env = Env::new();
    for columns in [40, 45, 50, 55, 60, 70, 80] {
        let page = rendered(&env, columns);
        let synopsis = page
            .split("SYNOPSIS\n")
            .nth(1)
            .and_then(|rest| rest.split("\nDESCRIPTION").next())
            .unwrap();
        for kept in [
            "[--dir DIR]",
            "[--url URL]",
            "[--max N]",
            "[-w|--wait SECONDS]",
            "[-E|--conflict-exit-code N]",
            "[--grace SECONDS]",
            "-- COMMAND",
            "--generate-extras PREFIX",
        ] {
            assert!(
                synopsis.lines().any(|line| line.contains(kept)),
                "{kept} at {columns} columns:\n{synopsis}"
            );
        }
    }
}

/// A run needs a lock name and a command, so `-h`, `--help` and the man
/// page show them as required, `<NAME>...`; `--list` has a usage line of
/// its own, where the names are optional.
#[test]
fn the_help_shows_the_names_and_the_command_as_required() {
    let env = Env::new();
    for arg in ["-h", "--help"] {
        let text = help(&env, arg, 100);
        for shown in [
            "<NAME>...",
            "<COMMAND>...",
            "withlock --list [--json] [NAME...]",
        ] {
            assert!(text.contains(shown), "{arg}: {shown}:\n{text}");
        }
        assert!(
            !text.contains("[NAME]") && !text.contains("[COMMAND]"),
            "{arg}:\n{text}"
        );
    }
    let page = man_page(&env);
    let options = section(&page, "OPTIONS");
    for shown in [r"<\fINAME\fR>", r"<\fICOMMAND\fR>"] {
        assert!(options.contains(shown), "{shown}:\n{options}");
    }
    // Still optional to the parser: --list takes names or none.
    env.withlock().arg("--list").assert().code(0);
}

/// `-v` says how the command ended as well (the README's `-v` row), and
/// both helps say so.
#[test]
fn the_help_says_that_verbose_tells_how_the_command_ended() {
    let env = Env::new();
    for arg in ["-h", "--help"] {
        let text = help(&env, arg, 120);
        // The option's line, or (--help) the line after it.
        let at = text.find("-v, --verbose").unwrap();
        let said: String = text[at..].lines().take(2).collect();
        assert!(said.contains("and how the command ended"), "{arg}: {said}");
    }
    let out = env.withlock().args(["-v", "t", "--", "true"]).output();
    assert!(
        crate::support::stderr(&out).contains("; the command exited with status 0 after "),
        "{out:?}"
    );
}
