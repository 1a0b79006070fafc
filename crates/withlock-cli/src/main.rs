//! `withlock`: run a command while holding a named lock.
//!
//! Parses the command line, takes the lock through the `withlock` library,
//! runs the command, and maps every outcome to a documented exit status.

mod cli;
mod command;
mod exit_code;
mod signals;
mod terminal;
mod waiting_report;

use std::process::ExitCode;

use clap::Parser;
use withlock::{FileLock, Lock, Mode, Wait};

use crate::cli::Cli;
use crate::command::StartError;
use crate::waiting_report::ReportWhenWaiting;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                exit_code::USAGE
            } else {
                0
            });
        }
    };
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = error_code(&err, &cli);
            let conflict = err
                .downcast_ref::<withlock::Error>()
                .is_some_and(withlock::Error::is_conflict);
            if !(conflict && cli.quiet) {
                eprintln!("withlock: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let mode = if cli.shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let lock = FileLock::parse(&cli.lock, cli.dir.as_deref())?.with_mode(mode);
    let program = command::resolve(&cli.command[0])?;
    let wait = match (cli.no_wait, cli.wait) {
        (true, _) => Wait::NoWait,
        (false, Some(limit)) => Wait::For(limit),
        (false, None) => Wait::Forever,
    };
    signals::install();
    let mut report = ReportWhenWaiting::new(&lock, cli.quiet);
    let acquired = lock.acquire_with(wait, &mut report);
    report.finish();
    let guard = acquired?;
    let status = command::run(&program, &cli.command, guard.as_fd())?;
    // The command's status matters more than a failed unlock, which the
    // kernel repairs anyway when withlock exits a moment later.
    if let Err(err) = guard.release() {
        eprintln!("withlock: warning: {err}");
    }
    Ok(status)
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
    exit_code::OS_ERROR
}
