//! Values of the server options (`--url`, `--grace`) that parse but are
//! refused up front, with one line and exit status 64, before anything is
//! taken or run:
//!
//! - a password in a `--url` given on the command line: every local user
//!   can read a process's arguments (`ps`, `/proc/PID/cmdline`) for as long
//!   as it runs. `WITHLOCK_URL` in the environment is readable only by the
//!   same user and root, and stays accepted.
//! - a `--grace` above [`MAX_GRACE`]: the longest a newcomer pauses for a
//!   holder that ended without releasing (see `withlock::pg::handover`).

use withlock::pg::handover::MAX_GRACE;
use withlock::{human_duration, server_url_gives_password};

use crate::cli::Cli;
use crate::option_support::Unsupported;

/// Fails on the first value that must not be used. The message never
/// repeats the URL: it holds the password.
pub(crate) fn refuse_unsafe(cli: &Cli) -> Result<(), Unsupported> {
    let url = cli.url.as_deref().filter(|_| cli.url_on_command_line);
    if url.is_some_and(server_url_gives_password) {
        let elsewhere = if url.is_some_and(withlock::etcd::is_etcd_url) {
            "ETCDCTL_PASSWORD or a file named by ?password-file=PATH"
        } else {
            "PGPASSWORD or the password file (~/.pgpass, PGPASSFILE)"
        };
        return Err(Unsupported::new(format!(
            "--url gives a password, which every local user can read with ps while withlock \
             runs: put it in {elsewhere}, or the whole URL in WITHLOCK_URL, and drop it from \
             --url"
        )));
    }
    if cli.grace > MAX_GRACE {
        return Err(Unsupported::new(format!(
            "--grace may be at most {} seconds ({}), the longest the next holder pauses for a \
             holder whose session ended without releasing: make the command stop sooner",
            MAX_GRACE.as_secs(),
            human_duration(MAX_GRACE)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str]) -> Result<(), String> {
        let mut cli = <Cli as clap::Parser>::parse_from(args);
        cli.url_on_command_line = cli.url.is_some();
        refuse_unsafe(&cli).map_err(|e| e.to_string())
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_repeating_it() {
        for url in [
            "postgres://ci:s3cr3t@db/app",
            "postgresql://ci@db/app?password=s3cr3t",
            "host=db user=ci password=s3cr3t",
            "etcd://ci:s3cr3t@127.0.0.1:2379/locks",
        ] {
            let err = check(&["withlock", "--url", url, "x", "--", "true"]).unwrap_err();
            assert!(err.contains("PASSWORD"), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        assert!(
            check(&[
                "withlock",
                "--url",
                "postgres://ci@db/app",
                "x",
                "--",
                "true"
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_grace_above_the_maximum_is_refused() {
        let at_most = MAX_GRACE.as_secs().to_string();
        assert!(check(&["withlock", "--grace", &at_most, "x", "--", "true"]).is_ok());
        let err = check(&["withlock", "--grace", "1e9", "x", "--", "true"]).unwrap_err();
        assert!(err.contains(&format!("at most {at_most} seconds")), "{err}");
    }
}
