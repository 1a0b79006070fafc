//! A test helper until the command line gains `--url`: takes a PostgreSQL
//! lock in another process, so tests can see two processes exclude each
//! other.
//!
//! ```text
//! withlock-pg-probe URL NAME exclusive|shared forever|nowait|SECONDS hold
//! withlock-pg-probe URL NAME exclusive|shared forever|nowait|SECONDS storm LOG ROUNDS
//! ```
//!
//! `hold` takes the lock, prints `acquired BACKEND_PID`, holds it until its
//! standard input closes, then releases it and prints `released`. `storm`
//! takes and releases the lock ROUNDS times, appending `enter PID` and
//! `leave PID` to LOG inside each hold. A conflict prints `busy` or
//! `timedout` and exits 75; any other error exits 1.
#![deny(missing_docs)]

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use withlock::{Lock, Mode, Wait};
use withlock_pg::PgLock;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, name, mode, wait, action, rest @ ..] = args.as_slice() else {
        eprintln!("usage: withlock-pg-probe URL NAME MODE WAIT hold|storm [LOG ROUNDS]");
        return ExitCode::from(64);
    };
    let mode = if mode == "shared" {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let wait = match wait.as_str() {
        "forever" => Wait::Forever,
        "nowait" => Wait::NoWait,
        secs => Wait::For(Duration::from_secs_f64(
            secs.parse().expect("WAIT in seconds"),
        )),
    };
    let lock = match PgLock::new(url, name) {
        Ok(lock) => lock.with_mode(mode),
        Err(e) => {
            eprintln!("withlock-pg-probe: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match (action.as_str(), rest) {
        ("hold", []) => hold(&lock, wait),
        ("storm", [log, rounds]) => storm(&lock, wait, log, rounds.parse().expect("ROUNDS")),
        _ => {
            eprintln!("withlock-pg-probe: unknown action");
            return ExitCode::from(64);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(withlock::Error::Busy { .. }) => {
            println!("busy");
            ExitCode::from(75)
        }
        Err(withlock::Error::TimedOut { .. }) => {
            println!("timedout");
            ExitCode::from(75)
        }
        Err(e) => {
            eprintln!("withlock-pg-probe: {e}");
            ExitCode::from(1)
        }
    }
}

fn hold(lock: &PgLock, wait: Wait) -> withlock::Result<()> {
    let guard = lock.acquire_with(wait, &mut withlock::NoHooks)?;
    println!("acquired {}", guard.backend_pid());
    std::io::stdout().flush().ok();
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink).ok();
    guard.release()?;
    println!("released");
    Ok(())
}

fn storm(lock: &PgLock, wait: Wait, log: &str, rounds: u32) -> withlock::Result<()> {
    let pid = std::process::id();
    let append = |line: String| {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .expect("open LOG");
        file.write_all(line.as_bytes()).expect("write LOG");
    };
    for _ in 0..rounds {
        let guard = lock.acquire_with(wait, &mut withlock::NoHooks)?;
        append(format!("enter {pid}\n"));
        std::thread::yield_now();
        append(format!("leave {pid}\n"));
        guard.release()?;
    }
    Ok(())
}
