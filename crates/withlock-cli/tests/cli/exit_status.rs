//! Every exit status in the README's table, and that nothing runs on error.

use crate::support::{Env, Sink, set_mode};

#[test]
fn passes_on_the_command_status() {
    let env = Env::new();
    for code in [0, 1, 3, 255] {
        env.withlock()
            .args(["t", "--", "sh", "-c", &format!("exit {code}")])
            .assert()
            .code(code);
    }
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_n() {
    let env = Env::new();
    env.withlock()
        .args(["t", "--", "sh", "-c", "kill -9 $$"])
        .assert()
        .code(128 + 9);
}

#[test]
fn runs_the_command_directly_without_a_shell() {
    let env = Env::new();
    let out = env
        .withlock()
        .args(["t", "--", "echo", "$HOME", "a;b"])
        .output();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "$HOME a;b\n");
}

#[test]
fn the_command_keeps_options_that_look_like_ours() {
    let env = Env::new();
    let out = env
        .withlock()
        .args(["t", "--", "echo", "-n", "--", "-w"])
        .output();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "-- -w");
}

#[test]
fn a_missing_command_is_127_and_nothing_is_locked() {
    let env = Env::new();
    env.withlock()
        .args(["t", "--", "no-such-command-withlock"])
        .assert()
        .code(127)
        .stderr(predicates::str::contains(
            "command not found: no-such-command-withlock",
        ));
    assert!(
        !env.lock_file("t").exists(),
        "a typo must fail before locking"
    );
}

#[test]
fn a_command_that_cannot_execute_is_126() {
    let env = Env::new();
    let script = env.file("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    set_mode(&script, 0o644);
    env.withlock()
        .arg("t")
        .arg("--")
        .arg(&script)
        .assert()
        .code(126)
        .stderr(predicates::str::contains("chmod +x"));
    // A directory: making it executable would not help.
    env.withlock()
        .args(["t", "--"])
        .arg(env.path())
        .assert()
        .code(126)
        .stderr(format!(
            "withlock: cannot execute {}: it is a directory, not a program: name the program to run\n",
            env.path().display()
        ));
}

#[test]
fn a_script_whose_interpreter_is_missing_is_126_and_names_the_interpreter() {
    let env = Env::new();
    let script = env.file("script");
    std::fs::write(&script, "#!/nonexistent/python9 -u\nprint('hi')\n").unwrap();
    set_mode(&script, 0o755);
    let out = env
        .withlock()
        .args(["t", "--"])
        .arg(&script)
        .assert()
        .code(126)
        .get_output()
        .clone();
    let err = crate::support::stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("its #! interpreter /nonexistent/python9 is missing"),
        "{err}"
    );
    assert!(!env.lock_file("t").exists(), "found out before locking");
    // The same through env(1), which looks the interpreter up on PATH.
    std::fs::write(&script, "#!/usr/bin/env no-such-python9\nprint('hi')\n").unwrap();
    let out = env
        .withlock()
        .args(["t", "--"])
        .arg(&script)
        .assert()
        .code(126)
        .get_output()
        .clone();
    let err = crate::support::stderr(&out);
    assert!(
        err.contains("its #! interpreter no-such-python9 (which /usr/bin/env looks for on PATH)"),
        "{err}"
    );
}

#[test]
fn too_low_an_open_file_limit_names_the_limit_and_the_fix() {
    let env = Env::new();
    let marker = env.file("ran");
    let out = crate::support::output(
        std::process::Command::new("sh")
            .args(["-c", "ulimit -n 4 && exec \"$0\" \"$@\""])
            .arg(env.bin())
            .args(["t", "--", "touch"])
            .arg(&marker)
            .env("WITHLOCK_DIR", env.lock_dir()),
    );
    assert_eq!(out.status.code(), Some(71));
    let err = crate::support::stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Too many open files"), "{err}");
    assert!(err.contains("(ulimit -n) is 4: raise it"), "{err}");
    assert!(!marker.exists());
}

#[test]
fn a_bad_name_is_64_with_one_line_and_nothing_runs() {
    let env = Env::new();
    let marker = env.file("ran");
    for name in [".hidden", "a b", "", "ü", &"n".repeat(129)] {
        let out = env
            .withlock()
            .args([name, "--", "touch"])
            .arg(&marker)
            .assert()
            .code(64)
            .get_output()
            .clone();
        let err = crate::support::stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("invalid lock name"), "{err}");
    }
    assert!(!marker.exists());
}

#[test]
fn a_missing_dash_dash_is_64_with_the_corrected_line_and_nothing_runs() {
    let env = Env::new();
    let marker = env.file("ran");
    let marker = marker.to_str().unwrap();
    for (args, line) in [
        (
            vec!["foo", "touch", marker],
            format!("the command goes after --: withlock foo -- touch {marker}"),
        ),
        // The command's own options are not taken for ours.
        (
            vec!["-w", "5", "foo", "sh", "-c", "touch \"$0\"", marker],
            format!(
                "the command goes after --: withlock -w 5 foo -- sh -c 'touch \"$0\"' {marker}"
            ),
        ),
        (
            vec!["foo"],
            "no command: it goes after --: withlock foo -- COMMAND".to_owned(),
        ),
        // Our own option between the name and the command stays ours: no
        // program is named -v.
        (
            vec!["foo", "-v", "touch", marker],
            format!("the command goes after --: withlock foo -v -- touch {marker}"),
        ),
        (
            vec!["--", "touch", marker],
            "no lock name before --: give one, such as withlock NAME -- make".to_owned(),
        ),
        // Nothing at all, or options alone.
        (
            vec![],
            "no lock name before --: give one, such as withlock NAME -- make".to_owned(),
        ),
        (
            vec!["-q", "-w", "5"],
            "no lock name before --: give one, such as withlock NAME -- make".to_owned(),
        ),
    ] {
        let out = env
            .withlock()
            .args(&args)
            .assert()
            .code(64)
            .get_output()
            .clone();
        assert_eq!(
            crate::support::stderr(&out),
            format!("withlock: {line}\n"),
            "{args:?}"
        );
    }
    assert!(!std::path::Path::new(marker).exists());
    assert!(!env.lock_file("foo").exists(), "nothing is locked either");
}

#[test]
fn an_empty_command_is_64_in_one_line() {
    let env = Env::new();
    let out = env
        .withlock()
        .args(["t", "--", ""])
        .assert()
        .code(64)
        .get_output()
        .clone();
    let err = crate::support::stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("the command after -- is empty"), "{err}");
    assert!(!env.lock_file("t").exists());
}

#[test]
fn bad_options_are_64_and_help_is_0() {
    let env = Env::new();
    env.withlock()
        .args(["--no-such-option", "t", "--", "true"])
        .assert()
        .code(64);
    env.withlock()
        .args(["-w", "soon", "t", "--", "true"])
        .assert()
        .code(64);
    env.withlock()
        .args(["-n", "-w", "1", "t", "--", "true"])
        .assert()
        .code(64);
    env.withlock().args(["t"]).assert().code(64);
    // -q prints nothing but errors, so -v cannot be honoured beside it.
    env.withlock()
        .args(["-q", "-v", "t", "--", "true"])
        .assert()
        .code(64)
        .stderr(predicates::str::contains(
            "the argument '--quiet' cannot be used with '--verbose'",
        ));
    env.withlock()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicates::str::contains("Exit status:"));
}

#[test]
fn a_missing_directory_is_78_and_says_how_to_fix_it() {
    let env = Env::new();
    let missing = env.file("missing");
    env.withlock()
        .arg("--dir")
        .arg(&missing)
        .args(["t", "--", "true"])
        .assert()
        .code(78)
        .stderr(predicates::str::contains("mkdir -p"));
}

#[test]
fn busy_and_timed_out_are_75_or_the_chosen_code() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("t"), "h");
    env.withlock()
        .args(["-n", "t", "--", "true"])
        .assert()
        .code(75);
    env.withlock()
        .args(["-w", "0.2", "t", "--", "true"])
        .assert()
        .code(75);
    env.withlock()
        .args(["-n", "-E", "3", "t", "--", "true"])
        .assert()
        .code(3);
    env.withlock()
        .args(["-w", "0", "-E", "9", "t", "--", "true"])
        .assert()
        .code(9);
    assert!(holder.release().success());
}

#[test]
fn quiet_suppresses_the_conflict_message_but_not_errors() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("t"), "h");
    env.withlock()
        .args(["-q", "-n", "t", "--", "true"])
        .assert()
        .code(75)
        .stderr("");
    env.withlock()
        .args(["-q", "t", "--", "no-such-command-withlock"])
        .assert()
        .code(127)
        .stderr(predicates::str::is_empty().not());
    assert!(holder.release().success());
}

use predicates::prelude::PredicateBooleanExt;

/// `withlock --list | head -c10`: when the reader of the listing goes
/// away, withlock stops writing without a word and exits 141 (128 +
/// SIGPIPE), as ls(1) and grep(1) do, killed by SIGPIPE.
#[test]
fn a_listing_into_a_closed_pipe_ends_quietly_with_141() {
    let env = Env::new();
    env.withlock().args(["t", "--", "true"]).assert().code(0);
    for json in [false, true] {
        let mut run = env.withlock().arg("--list");
        if json {
            run = run.arg("--json");
        }
        assert_eq!(
            run.stdout_into(Sink::ClosedPipe),
            (Some(141), String::new()),
            "json: {json}"
        );
    }
}

/// Everything else withlock writes on stdout ends the same way when its
/// reader has gone (`withlock --help | head -1`), rather than panicking
/// (101) or pretending it was written (0).
#[test]
fn help_version_and_generated_files_into_a_closed_pipe_end_quietly_with_141() {
    let env = Env::new();
    let prefix = env.file("prefix");
    let prefix = prefix.to_str().unwrap();
    for args in [
        &["-h"][..],
        &["--help"],
        &["--version"],
        &["--generate-extras", prefix],
    ] {
        assert_eq!(
            env.withlock().args(args).stdout_into(Sink::ClosedPipe),
            (Some(141), String::new()),
            "{args:?}"
        );
    }
}

/// Output that cannot be written for another reason (a full disk) is one
/// line naming what could not be written, and 71.
#[test]
fn output_onto_a_full_disk_is_one_line_and_71() {
    let env = Env::new();
    env.withlock().args(["t", "--", "true"]).assert().code(0);
    let prefix = env.file("prefix");
    let prefix = prefix.to_str().unwrap();
    for (args, what) in [
        (&["--list"][..], "the listing"),
        (&["--list", "--json"], "the listing"),
        (&["-h"], "the help"),
        (&["--help"], "the help"),
        (&["--version"], "the version"),
        (
            &["--generate-extras", prefix],
            "the names of the files written",
        ),
    ] {
        assert_eq!(
            env.withlock().args(args).stdout_into(Sink::Full),
            (
                Some(71),
                format!(
                    "withlock: write {what} to stdout: No space left on device (os error 28)\n"
                )
            ),
            "{args:?}"
        );
    }
}

/// A message that cannot be written to stderr (`2>&-` of a pipe, a full
/// disk) is dropped; the exit status is still the documented one, and the
/// command's output is untouched.
#[test]
fn messages_onto_a_closed_or_full_stderr_keep_the_exit_status() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("busy"), "h");
    for sink in [Sink::ClosedPipe, Sink::Full] {
        for (args, expected) in [
            (&["t", "echo", "hi"][..], (Some(64), "")),
            (&["--bogus"], (Some(64), "")),
            (&["-n", "busy", "--", "echo", "hi"], (Some(75), "")),
            (&["t", "--", "no-such-command-withlock"], (Some(127), "")),
            (&["-v", "t", "--", "echo", "hi"], (Some(0), "hi\n")),
        ] {
            let (code, stdout) = env.withlock().args(args).stderr_into(sink);
            assert_eq!((code, stdout.as_str()), expected, "{args:?} {sink:?}");
        }
    }
    assert!(holder.release().success());
}

/// A PREFIX that cannot hold the man page and completions (here a file) is
/// one line with the system's reason and the fix, and 71.
#[test]
fn generate_extras_under_an_unusable_prefix_names_the_fix() {
    let env = Env::new();
    let file = env.file("a-file");
    std::fs::write(&file, "").unwrap();
    let out = env
        .withlock()
        .arg("--generate-extras")
        .arg(&file)
        .assert()
        .code(71)
        .get_output()
        .clone();
    assert_eq!(
        crate::support::stderr(&out),
        format!(
            "withlock: create {}/share/man/man1: Not a directory (os error 20): give a PREFIX \
             this user can write to, such as ~/.local, or /usr/local as root\n",
            file.display()
        )
    );
}

/// A lock path that is not UTF-8 cannot be taken; the answer is one line
/// that says so, while the command after -- may be any bytes.
#[test]
fn an_argument_that_is_not_utf8_is_64_in_one_line() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let bytes = std::ffi::OsStr::from_bytes(b"./a\xff.lock");
    let out = env
        .withlock()
        .arg(bytes)
        .args(["--", "true"])
        .assert()
        .code(64)
        .get_output()
        .clone();
    assert_eq!(
        crate::support::stderr(&out),
        "withlock: an argument before -- is not valid UTF-8: lock names, paths and option \
         values must be (the command after -- may be any bytes)\n"
    );
    env.withlock()
        .args(["t", "--", "sh", "-c", "exit 0"])
        .arg(bytes)
        .assert()
        .code(0);
}

/// Started with its standard descriptors closed (`withlock ... <&- >&- 2>&-`
/// from a careless script or daemon), withlock opens them on /dev/null
/// before anything else, as the Rust runtime would: its lock file or lock
/// directory never becomes descriptor 0, 1 or 2, so neither its own
/// messages nor its command's output can land in the lock file.
#[test]
fn closed_standard_descriptors_never_become_the_lock_file() {
    let env = Env::new();
    let report = env.file("report");
    let script = format!(
        "a=$(readlink /proc/$$/fd/0); b=$(readlink /proc/$$/fd/1); c=$(readlink /proc/$$/fd/2); \
         printf '%s\\n' \"$a\" \"$b\" \"$c\" > {}; echo into-stdout; echo into-stderr >&2",
        report.display()
    );
    let mut command = env
        .withlock()
        .args(["t", "--", "sh", "-c", &script])
        .command();
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec the child only closes descriptors,
    // which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            for fd in 0..3 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let status = command.status().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        "/dev/null\n/dev/null\n/dev/null\n"
    );
    assert_eq!(std::fs::read_to_string(env.lock_file("t")).unwrap(), "");
}
