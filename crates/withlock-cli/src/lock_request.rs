//! The locks one run takes and how it takes them: every NAME on the command
//! line (each with `-s`'s mode or its own, `NAME=shared` or
//! `NAME=exclusive`) as one [`LockSet`], all or none in the library's
//! global order; with `--supersede`, watching for newer requests while it
//! waits. Each NAME is read by the library's spec grammar
//! ([`withlock::spec`]); with `--url`, as a name on the server, whose
//! kind (PostgreSQL or etcd) the URL's scheme chooses
//! ([`AnyLock::on_server`]).

use withlock::{AnyLock, CancelWatch, LockSet, LockSpec, Mode, SetGuard, Supersede, Wait};

use crate::cancel_running;
use crate::cli::Cli;
use crate::option_support;
use crate::waiting_report::ReportWhenWaiting;

/// The set of locks the command line names, in the order they are taken.
pub(crate) fn lock_set(cli: &Cli) -> anyhow::Result<LockSet> {
    let default = if cli.shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    // The command a server lock's holder announces to other clients.
    let argv: Vec<String> = cli
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if cli.url.is_some() && cli.supersede {
        // Supersede notices travel over this machine's abstract sockets;
        // a newer request on another machine would never be seen.
        return Err(option_support::Unsupported::new(
            "--supersede works on one machine only: drop --supersede or --url".into(),
        )
        .into());
    }
    let mut locks = Vec::with_capacity(cli.locks.len());
    for spec in &cli.locks {
        let (lock, own_mode) = match &cli.url {
            Some(url) => {
                let spec = LockSpec::parse_on_server(spec)?;
                let mut lock = AnyLock::on_server(url, spec.target.as_str(), &argv, cli.grace)?;
                if cli.cancel_running && lock.supports_cancel() {
                    lock = lock.cancelling();
                }
                (lock, spec.mode)
            }
            None => {
                let spec = LockSpec::parse(spec)?;
                let lock = AnyLock::at(&spec.target, &spec.label, cli.dir.as_deref())?;
                (lock, spec.mode)
            }
        };
        // A lock's own mode wins over -s and --max, so only a lock without
        // one must be able to honour them.
        if own_mode.is_none() {
            option_support::refuse_unsupported(cli, &lock)?;
        }
        let lock = match (own_mode, cli.max_holders()) {
            (Some(mode), _) => lock.with_mode(mode)?,
            (None, Some(max)) => lock.with_max(max)?,
            (None, None) => lock.with_mode(default)?,
        };
        if cli.cancel_running {
            refuse_uncancellable(&lock)?;
        }
        locks.push(lock);
    }
    Ok(LockSet::new(locks)?)
}

/// `--cancel-running` takes exclusive locks that can tell who asks
/// (not socket locks), each refused with one line and 64.
fn refuse_uncancellable(lock: &AnyLock) -> Result<(), option_support::Unsupported> {
    let label = withlock::escape::text(lock.label());
    if !lock.supports_cancel() {
        return Err(option_support::Unsupported::new(format!(
            "{label}: --cancel-running needs a lock whose holder can check who asks \
             (a name or lock file here, or a --url lock): drop --cancel-running"
        )));
    }
    if lock.mode() != Mode::Exclusive {
        return Err(option_support::Unsupported::new(format!(
            "{label}: --cancel-running takes exclusive locks only: drop =shared or \
             --cancel-running"
        )));
    }
    Ok(())
}

/// Takes every lock of `set`, reporting the wait unless quiet; with
/// `--supersede` or `--cancel-running`, gives up with
/// [`withlock::Error::Superseded`] when a newer such request for one of
/// the locks comes while it waits. Once this returns the locks are held
/// and nothing supersedes them; with `--cancel-running` a newer request
/// may still cancel the command, through the watch returned.
pub(crate) fn take(
    cli: &Cli,
    set: &LockSet,
    wait: Wait,
) -> anyhow::Result<(SetGuard, Option<CancelWatch>)> {
    let mut report = ReportWhenWaiting::new(cli.quiet);
    // A signal while waiting gives up such waits before withlock exits.
    let _armed = set
        .locks()
        .any(AnyLock::wait_outlives_exit)
        .then(crate::abandon_on_signal::Armed::new);
    let acquired = if cli.cancel_running && cli.url.is_some() {
        // Through the server (withlock::pg::cancel): the locks ask and
        // listen on their own sessions, the watch hears the cancel.
        set.acquire_with(wait, &mut report).map(|mut guard| {
            guard.watch_for_cancel(cancel_running::on_cancel(cli.grace));
            (guard, None)
        })
    } else if cli.cancel_running {
        let watch = Supersede::announce_cancelling(set)?;
        let acquired = set
            .acquire_with(wait, &mut watch.hooks(&mut report))
            .and_then(|guard| {
                let cancel = CancelWatch::start(set, &watch, cancel_running::on_cancel(cli.grace))?;
                Ok((guard, Some(cancel)))
            });
        watch.finish(acquired)
    } else if cli.supersede {
        let watch = Supersede::announce(set)?;
        let acquired = set.acquire_with(wait, &mut watch.hooks(&mut report));
        watch.finish(acquired).map(|guard| (guard, None))
    } else {
        set.acquire_with(wait, &mut report)
            .map(|guard| (guard, None))
    };
    report.finish(acquired.is_ok());
    Ok(acquired?)
}

/// The locks and their modes for messages: `a (exclusive), b (shared)`.
pub(crate) fn describe(set: &LockSet) -> String {
    let locks: Vec<String> = set
        .locks()
        .map(|lock| format!("{} ({})", withlock::escape::text(lock.label()), lock.mode()))
        .collect();
    locks.join(", ")
}

/// The locks' names for messages: `a, b`.
pub(crate) fn names(set: &LockSet) -> String {
    let locks: Vec<String> = set
        .locks()
        .map(|lock| withlock::escape::text(lock.label()))
        .collect();
    locks.join(", ")
}
