//! `withlock`: run a command while holding a named lock.
//!
//! Parses the command line, takes the lock through the `withlock` library,
//! runs the command, and maps every outcome to a documented exit status.

// A failed write must never panic: stderr goes through `say!`, stdout
// through `output`.
#![deny(clippy::print_stdout, clippy::print_stderr)]
// The process starts in `entry_point`, without the Rust runtime's start-up
// work (see there why); unit tests keep the test harness's `main`.
#![cfg_attr(not(test), no_main)]

/// `eprintln!` that cannot panic: a line that cannot be written (stderr
/// closed, or a pipe whose reader has gone) is dropped, and the exit status
/// still tells what happened. A panic would turn it into 101, and in the
/// lock-loss path would skip stopping the command.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod abandon_on_signal;
mod cancel_running;
mod cli;
mod command;
#[cfg(not(test))]
mod entry_point;
mod exit_code;
mod extras;
mod fence_env;
mod help_layout;
mod hold;
mod lock_loss;
mod lock_request;
mod lock_table;
mod no_libm;
mod once_per;
mod open_file_limit;
mod option_support;
mod output;
mod release;
mod server_options;
mod signals;
mod slot_env;
mod terminal;
mod time_limit;
mod waiting_report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use withlock::human_duration;

use crate::cli::{Cli, ParseError};
use crate::command::StartError;

/// Under the test harness, which brings its own `main`, this one only
/// keeps `run_cli` in use.
#[cfg(test)]
fn main() {
    std::process::exit(run_cli().into());
}

/// What withlock does, from its command line to its exit status.
fn run_cli() -> u8 {
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(ParseError::Command(line)) => {
            say!("withlock: {line}");
            return exit_code::USAGE;
        }
        Err(ParseError::Clap(err)) if err.kind() == clap::error::ErrorKind::ValueValidation => {
            // The value's own message names the cause and the fix: one line.
            let text = err.render().to_string();
            let line = text.lines().next().unwrap_or_default();
            say!("withlock: {}", line.strip_prefix("error: ").unwrap_or(line));
            return exit_code::USAGE;
        }
        Err(ParseError::Clap(err)) if err.kind() == clap::error::ErrorKind::InvalidUtf8 => {
            say!(
                "withlock: an argument before -- is not valid UTF-8: lock names, paths and \
                 option values must be (the command after -- may be any bytes)"
            );
            return exit_code::USAGE;
        }
        Err(ParseError::Clap(err)) if err.use_stderr() => {
            let _ = err.print();
            return exit_code::USAGE;
        }
        // --help, -h or --version.
        Err(ParseError::Clap(err)) => {
            let what = match err.kind() {
                clap::error::ErrorKind::DisplayVersion => "the version",
                _ => "the help",
            };
            // The help's last lines may still be in stdout's buffer.
            let printed = err
                .print()
                .and_then(|()| std::io::Write::flush(&mut std::io::stdout()));
            return match output::stdout_status(what, printed) {
                Ok(code) => code,
                Err(err) => {
                    say!("withlock: {err:#}");
                    exit_code::OS_ERROR
                }
            };
        }
    };
    let outcome = if let Err(refused) = server_options::refuse_unsafe(&cli) {
        Err(refused.into())
    } else if let Some(prefix) = &cli.generate_extras {
        generate_extras(prefix)
    } else if cli.list {
        list(&cli, &cli.list_names())
    } else if cli.action == cli::Action::Hold {
        hold::run(&cli)
    } else if cli.action == cli::Action::Release {
        release::run(&cli)
    } else {
        run(&cli)
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            let code = error_code(&err, &cli);
            // Quiet hides only the expected outcomes of contention.
            let conflict = err.downcast_ref::<withlock::Error>().is_some_and(|e| {
                let kind = e.kind();
                kind.is_conflict() || kind == withlock::ErrorKind::Superseded
            });
            if !(conflict && cli.quiet) {
                match open_file_limit::advice(&err) {
                    Some(advice) => say!("withlock: {err:#}: {advice}"),
                    None => say!("withlock: {err:#}"),
                }
            }
            code
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let set = lock_request::lock_set(cli)?;
    once_per::refuse_unsupported(cli, &set)?;
    let program = command::resolve(&cli.command[0])?;
    let wait = cli.wait_limit();
    signals::install();
    let asked = Instant::now();
    let (mut guard, cancel_watch) = lock_request::take(cli, &set, wait)?;
    if cli.verbose {
        say!(
            "withlock: acquired {} after waiting {}",
            lock_request::describe(&set),
            human_duration(asked.elapsed())
        );
    }
    if let Some(window) = cli.once_per {
        if let Some(last) = once_per::recent_success(&mut guard, window)? {
            drop(cancel_watch);
            // Nothing ran, and the next holder must not wait for this one.
            guard.release()?;
            if !cli.quiet {
                say!("{}", once_per::skipped_line(&set, &last, window));
            }
            return Ok(cli.skip_exit_code.unwrap_or(0));
        }
    }
    let mut env = fence_env::of(&set, &guard);
    env.extend(slot_env::of(&set, &guard, cli.slots.as_ref())?);
    if let Some(limit) = cli.time_limit {
        if let Some(deadline) = time_limit::start(limit, cli.grace)? {
            guard.announce_deadline(deadline)?;
        }
    }
    lock_loss::watch(&mut guard, cli.grace)?;
    let ends_with_withlock = !set.locks().all(withlock::AnyLock::can_be_inherited);
    let started = Instant::now();
    let ended = command::run(
        &program,
        &cli.command,
        &guard.fds(),
        &env,
        ends_with_withlock,
    )?;
    let ran = started.elapsed();
    // Nothing cancels a command that has ended.
    drop(cancel_watch);
    // Stopped for a lost lock, a time limit or a cancel: the first
    // reason's status, not the command's.
    let status = signals::stopped_status().unwrap_or(ended.exit_code());
    let held = guard.held_for();
    if let (Some(window), 0) = (cli.once_per, status) {
        if let Err(err) = guard.record_success(window) {
            say!(
                "withlock: warning: the run succeeded, but could not be recorded for --once-per,                  so the next run will not be skipped: {err}"
            );
        }
    }
    // The command's status matters more than a failed unlock, which the
    // kernel repairs anyway when withlock exits a moment later. A lost lock
    // was reported already, and cannot be released.
    if let Err(err) = guard.release() {
        if !lock_loss::was_lost() {
            say!("withlock: warning: {err}");
        }
    }
    if cli.verbose {
        say!(
            "withlock: released {} after holding {} {}; the command {ended} after {}",
            lock_request::names(&set),
            if set.len() == 1 { "it" } else { "them" },
            human_duration(held),
            human_duration(ran)
        );
    }
    Ok(status)
}

fn list(cli: &Cli, names: &[String]) -> anyhow::Result<u8> {
    let locks = match &cli.url {
        // One session lists every lock on the server.
        Some(url) => withlock::list_on_server(url, names)?,
        None => {
            let dir = cli
                .dir
                .clone()
                .unwrap_or_else(withlock::lock_dir::default_dir);
            withlock::list(&dir, names)?
        }
    };
    output::to_stdout("the listing", |mut out| {
        if cli.json {
            serde_json::to_writer_pretty(&mut out, &lock_table::json(&locks))?;
            writeln!(out)
        } else {
            lock_table::table(&locks, &mut out)
        }
    })
}

fn generate_extras(prefix: &Path) -> anyhow::Result<u8> {
    let written: Vec<PathBuf> = extras::generate(prefix)?;
    output::to_stdout("the names of the files written", |out| {
        written
            .iter()
            .try_for_each(|path| writeln!(out, "{}", path.display()))
    })
}

fn error_code(err: &anyhow::Error, cli: &Cli) -> u8 {
    if let Some(err) = err.downcast_ref::<withlock::Error>() {
        if err.is_conflict() {
            return cli.conflict_exit_code;
        }
        return exit_code::of(err);
    }
    if let Some(err) = err.downcast_ref::<StartError>() {
        return err.exit_code();
    }
    if err.is::<option_support::Unsupported>() {
        return exit_code::USAGE;
    }
    exit_code::OS_ERROR
}
