//! Options that only some kinds of lock support, refused up front with one
//! line and exit status 64 before anything is taken or run.
//!
//! Each entry of [`REFUSALS`] names an option, says whether the command line
//! gave it, and whether a lock supports it; a new option that some locks
//! cannot honour (as `--max` was) is one more entry.

use withlock::AnyLock;

use crate::cli::Cli;

/// An option the lock cannot honour; nothing ran.
#[derive(Debug)]
pub(crate) struct Unsupported(String);

impl Unsupported {
    /// A refusal saying `message`.
    pub(crate) fn new(message: String) -> Unsupported {
        Unsupported(message)
    }
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// One option some kinds of lock refuse.
struct Refusal {
    /// The option as a user types it.
    option: &'static str,
    /// Whether the command line gave it.
    given: fn(&Cli) -> bool,
    /// Whether the lock can honour it.
    supported: fn(&AnyLock) -> bool,
    /// What the lock's kind is limited to, for the message.
    limit: &'static str,
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        option: "--shared",
        given: |cli| cli.shared,
        supported: AnyLock::supports_shared,
        limit: "exclusive only",
    },
    Refusal {
        option: "--max",
        given: |cli| cli.max.is_some(),
        supported: AnyLock::supports_max,
        limit: "one holder at a time",
    },
    Refusal {
        option: "--slots",
        given: |cli| cli.slots.is_some(),
        supported: AnyLock::supports_max,
        limit: "one holder at a time",
    },
];

/// Fails on the first option given that `lock` cannot honour.
pub(crate) fn refuse_unsupported(cli: &Cli, lock: &AnyLock) -> Result<(), Unsupported> {
    match REFUSALS
        .iter()
        .find(|r| (r.given)(cli) && !(r.supported)(lock))
    {
        Some(r) => Err(Unsupported(format!(
            "{} locks are {}: drop {} or use a file lock",
            lock.kind(),
            r.limit,
            r.option
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn check(args: &[&str]) -> Result<(), String> {
        let cli = Cli::parse_from(args);
        let lock = AnyLock::parse(&cli.locks[0], None).unwrap();
        refuse_unsupported(&cli, &lock).map_err(|e| e.to_string())
    }

    #[test]
    fn shared_is_refused_for_socket_locks_only() {
        assert_eq!(
            check(&["withlock", "-s", "tcp:4711", "--", "true"]),
            Err("socket locks are exclusive only: drop --shared or use a file lock".into())
        );
        assert!(check(&["withlock", "-s", "name", "--", "true"]).is_ok());
        assert!(check(&["withlock", "-x", "abstract:x", "--", "true"]).is_ok());
    }

    #[test]
    fn max_is_refused_for_socket_locks_only() {
        assert_eq!(
            check(&["withlock", "--max", "2", "unix:/tmp/x.sock", "--", "true"]),
            Err("socket locks are one holder at a time: drop --max or use a file lock".into())
        );
        assert!(check(&["withlock", "--max", "2", "name", "--", "true"]).is_ok());
    }
}
