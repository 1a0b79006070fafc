//! The command line, as clap parses it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::exit_code;
use crate::help_layout;

/// Example command lines and what they do, for `--help` and the man page.
pub(crate) const EXAMPLES: [(&str, &str); 12] = [
    ("withlock --list", "who holds and waits for each lock"),
    (
        "withlock deploy -- ./script deploy",
        "wait for the lock, then deploy",
    ),
    (
        "withlock -n nightly -- ./backup.sh",
        "skip this run if the last one still runs",
    ),
    (
        "withlock -w 30 build -- make",
        "give up after 30 seconds (exit 75)",
    ),
    (
        "withlock -s artifacts -- ./read-only.sh",
        "share the lock with other readers",
    ),
    (
        "withlock build artifacts=shared -- make",
        "take both locks (or none), artifacts shared",
    ),
    (
        "withlock --supersede deploy -- ./deploy",
        "a newer --supersede deploy makes this one give up (79)",
    ),
    (
        "withlock --cancel-running deploy -- ./deploy",
        "stop a running --cancel-running deploy (82), then deploy",
    ),
    (
        "withlock ./build.lock -- make",
        "lock a file by path, like flock(1)",
    ),
    (
        "withlock tcp:4711 -- ./deploy",
        "hold TCP port 4711 on 127.0.0.1 instead",
    ),
    (
        "withlock unix:/run/lock/d.sock -- make",
        "hold a Unix socket (abstract:NAME: no file)",
    ),
    (
        "withlock --url postgres://ci@db/ci deploy -- ./deploy",
        "one lock for every machine that uses this database",
    ),
];

/// Exit statuses and their meaning, for `--help` and the man page.
pub(crate) const EXIT_STATUSES: [(&str, &str); 15] = [
    (
        "the command's",
        "its own status, or 128+N if it died of signal N",
    ),
    (
        "75",
        "the lock is held (-n, -w 0) or the wait timed out (-w); change with -E",
    ),
    (
        "64",
        "bad usage: unknown option, invalid lock name, number or URL, -s, --max or --slots with a \
         socket lock, --slots with an empty or repeated name, --once-per with a socket lock or \
         several locks, no -- or an empty command after it, a password in --url, --grace above \
         3600; --cancel-running with a lock it cannot cancel; hold: --until-exit with no such \
         process; release: no hold of the locks here",
    ),
    (
        "77",
        "permission denied on the lock file or directory, or the server refused the login \
         (or has no such role) or withlock's state (schema withlock); etcd: a refused user or \
         password, or no permission on the lock's keys; a --once-per record of another user; \
         release: the hold is another user's",
    ),
    (
        "78",
        "unusable or unsafe lock directory, or no regular file (no socket) at the lock path; \
         --url: TLS not possible as sslmode asks, no such database, a transaction-mode \
         pooler, or withlock's state damaged or not trusted; etcd: a TLS mismatch or unusable \
         CA, certificate or key file",
    ),
    (
        "79",
        "superseded: a newer --supersede request for the lock came while waiting; nothing ran",
    ),
    (
        "80",
        "a --url lock was lost while the command ran; the command was stopped (see --grace)",
    ),
    (
        "81",
        "the command ran into its --time-limit and was stopped (see --grace)",
    ),
    (
        "82",
        "cancelled: a newer --cancel-running request came while the command ran with \
         --cancel-running; the command was stopped (see --grace)",
    ),
    (
        "69",
        "the server (--url) could not be reached or failed a query, or an etcd cluster has no \
         quorum; nothing ran",
    ),
    ("71", "any other system error"),
    (
        "126",
        "the command cannot be executed, or its #! interpreter is missing",
    ),
    ("127", "the command was not found"),
    (
        "141",
        "--list, --help or --generate-extras could not finish writing: its reader went away \
         (withlock --list | head -1)",
    ),
    (
        "128+N",
        "interrupted by signal N while waiting (130, 143, ...); nothing ran",
    ),
];

/// The text after the options in `-h`: one example, and where the rest is.
const AFTER_SHORT_HELP: &str = "Example: withlock deploy -- ./script deploy\n\
     More examples and every exit status: withlock --help, or man withlock.";

/// The text after the options in `--help`: examples, then exit statuses.
/// Laid out only for the help and the man page ([`Cli::shown`]): a
/// derive attribute would lay it out on every run, a third of the
/// instructions withlock ran before its lock.
fn after_long_help() -> String {
    let width = help_layout::width();
    format!(
        "{}\n{}",
        help_layout::table("Examples", &EXAMPLES, width),
        help_layout::table("Exit status", &EXIT_STATUSES, width)
    )
}

/// Run a command while holding a named lock.
///
/// The lock is flock(2) on <DIR>/<NAME>.lock, so it also excludes flock(1)
/// on the same file, or a socket withlock listens on (tcp:, unix:,
/// abstract:). Waiting blocks in the kernel; a holder is named on conflict
/// and while waiting.
#[derive(Debug, Parser)]
#[command(
    name = "withlock",
    version,
    max_term_width = help_layout::MAX_WIDTH,
    after_help = AFTER_SHORT_HELP,
    override_usage = "withlock [OPTIONS] NAME... -- COMMAND [ARGS...]\n       \
                      withlock --list [--json] [NAME...]\n       \
                      withlock hold NAME... --until-exit PID"
)]
pub(crate) struct Cli {
    /// The locks: names, lock files or sockets, all taken or none.
    ///
    /// All are taken (or none) before the command runs. Each is a
    /// name (letters, digits, '.', '_', '-'; at most 128 bytes) for
    /// <DIR>/<NAME>.lock, a lock file path if it contains '/', or a socket
    /// lock (exclusive only): tcp:PORT, tcp:HOST:PORT, unix:PATH,
    /// abstract:NAME. NAME=shared or NAME=exclusive gives one lock its own
    /// mode. Locks are taken in one global order whatever order they are
    /// given in, so calls naming the same locks never deadlock.
    // Not required here, since --list and --generate-extras need none: a
    // run without one is answered in one line by `Cli::check_command`, and
    // the help shows it required (`Cli::shown`).
    #[arg(value_name = "NAME", num_args = 1..)]
    pub locks: Vec<String>,

    /// The command to run, after `--` (without a shell).
    // Not required here: a missing `--` is told apart and answered in one
    // line by `Cli::parse_args`.
    #[arg(value_name = "COMMAND", last = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,

    /// Where named lock files live.
    ///
    /// [default: /run/lock, or /tmp where that is missing]
    #[arg(long, value_name = "DIR", env = "WITHLOCK_DIR")]
    pub dir: Option<PathBuf>,

    /// Take the locks on a PostgreSQL server or an etcd cluster, for every
    /// machine using it.
    ///
    /// The URL is postgres://USER@HOST:PORT/DBNAME; the locks are advisory
    /// locks shared by every machine using that database. The password
    /// comes from the URL,
    /// PGPASSWORD or ~/.pgpass, and is never printed. Or
    /// etcd://[USER@]HOST:PORT[,HOST:PORT...][/PREFIX] (etcds:// for TLS,
    /// ?cacert=, ?cert=, ?key=): the locks are keys in line as
    /// `etcdctl lock` takes them; the password comes from ETCDCTL_PASSWORD
    /// or ?password-file=PATH. WITHLOCK_DIR does
    /// not apply; --dir on the command line is refused with --url and
    /// beats WITHLOCK_URL. The
    /// command gets the lock's fencing token, which grows with every grant,
    /// as WITHLOCK_FENCE (several locks: WITHLOCK_FENCES="NAME=TOKEN ...").
    #[arg(long, value_name = "URL", env = "WITHLOCK_URL", hide_env_values = true)]
    pub url: Option<String>,

    /// Whether `url` came from the command line (not `WITHLOCK_URL`).
    #[arg(skip)]
    pub url_on_command_line: bool,

    /// Take shared locks: many shared holders at once.
    ///
    /// This applies to every lock without a mode of its own (NAME=MODE).
    #[arg(short, long)]
    pub shared: bool,

    /// Take an exclusive lock (the default).
    #[arg(short = 'x', long, conflicts_with = "shared")]
    pub exclusive: bool,

    /// Let up to N holders run at once.
    ///
    /// A counting semaphore. Requests are served in arrival order like every request; use the
    /// same N for every holder of a name. For a lock on this machine,
    /// shared (-s) holders of the name count against N, and a shared
    /// request waits for the --max holders ahead of it. The command gets
    /// its place, 0 to N-1, unique among the current holders, as
    /// WITHLOCK_SLOT and WITHLOCK_SLOT_INDEX (several locks:
    /// WITHLOCK_SLOTS="NAME=SLOT ..."); a freed place goes to the next
    /// request in arrival order.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..),
        conflicts_with_all = ["shared", "exclusive"]
    )]
    pub max: Option<u32>,

    /// --max with named places, one per holder.
    ///
    /// --slots db1,db2,db3 is --max 3, and the command gets the name of
    /// its place as WITHLOCK_SLOT (db2) and its index, 0 to N-1, as
    /// WITHLOCK_SLOT_INDEX (1); several locks: WITHLOCK_SLOTS="NAME=SLOT
    /// ...". Names are separated by commas; each must be given once, and
    /// hold no space or '='. Use the same list for every holder of a name.
    #[arg(
        long,
        value_name = "NAME,...",
        value_parser = parse_slots,
        conflicts_with_all = ["shared", "exclusive", "max"]
    )]
    pub slots: Option<SlotNames>,

    /// Fail at once if the lock is held.
    #[arg(short = 'n', long)]
    pub no_wait: bool,

    /// Give up after SECONDS (fractions allowed) [default: wait forever].
    #[arg(
        short = 'w',
        long = "wait",
        value_name = "SECONDS",
        value_parser = parse_wait,
        allow_hyphen_values = true,
        conflicts_with = "no_wait"
    )]
    pub wait: Option<Duration>,

    /// Exit status when the lock is held (-n, -w 0) or the wait timed out (-w).
    #[arg(
        short = 'E',
        long,
        value_name = "N",
        default_value_t = exit_code::CONFLICT
    )]
    pub conflict_exit_code: u8,

    /// Print no messages except errors.
    ///
    /// Not the holder on conflict, not the waiting line, not who superseded
    /// the request. Refused with -v, which asks for more.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Give up (79) for a newer --supersede request.
    ///
    /// That is, one that comes while this one waits. Nothing runs then. It concerns any of the same locks, and only
    /// while this one waits: once the locks are held, nothing interrupts
    /// the command. Requests see each other within one network namespace.
    #[arg(long, conflicts_with = "list")]
    pub supersede: bool,

    /// Stop a --cancel-running holder, then run.
    ///
    /// The newest request wins, as CI's cancel-in-progress: a holder
    /// started with --cancel-running is stopped (its command gets
    /// SIGTERM, SIGKILL after --grace; it exits 82 naming this request)
    /// and older --cancel-running requests still waiting give up (79).
    /// A holder started without it is never touched. Exclusive locks
    /// only, on this machine or with --url; the holder checks that the
    /// request really waits for the lock, so only who could take the
    /// lock can cancel.
    #[arg(long, conflicts_with_all = ["list", "shared", "max", "slots"])]
    pub cancel_running: bool,

    /// How long a command gets after SIGTERM when it is stopped.
    ///
    /// When the command runs into --time-limit (exit 81), is cancelled by
    /// a newer --cancel-running request (exit 82), or a --url lock is lost
    /// while it runs (its session was ended, the server restarted, the
    /// network was cut; noticed within 8 seconds; with etcd, the lease
    /// ended or no keepalive got through for 5 seconds, noticed within 6 +
    /// 1.5 per member; exit 80), withlock says so, sends SIGTERM to the
    /// command's process group, and SIGKILL SECONDS later (fractions
    /// allowed) if it still runs. The server keeps the lock of a holder it
    /// cannot hear for 8 + SECONDS + 10 seconds (etcd: a lease of the
    /// detection bound + SECONDS + 5), so that it is not handed on while
    /// the command may still run. At most 3600.
    // Not in -h: a tuning knob, and -h must fit one screen.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_seconds,
        allow_hyphen_values = true,
        default_value = "10",
        hide_short_help = true
    )]
    pub grace: Duration,

    /// Stop the command after SECONDS.
    ///
    /// Fractions allowed, counted from the command's start. When it runs out, withlock says
    /// so, sends SIGTERM to the command's process group, SIGKILL --grace
    /// seconds later if it still runs, and exits with 81. --list shows
    /// each holder's deadline. withlock keeps the limit itself: a withlock
    /// killed with SIGKILL leaves its command running.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_seconds,
        allow_hyphen_values = true
    )]
    pub time_limit: Option<Duration>,

    /// Skip the run if one succeeded less than SECONDS ago.
    ///
    /// Fractions allowed. Checked once the lock is held, so of several
    /// runs started at once, on one machine or (with --url) on many, one
    /// runs and the others skip. A skip prints one line (unless -q) and
    /// exits 0, or the status --skip-exit-code gives. A run that exits 0
    /// records when it took the lock: beside the lock file
    /// (<lock file>.last-success), or on the server (withlock.runs, the
    /// server's clock); a failed run records nothing. One exclusive lock
    /// only: a name, a lock file or --url (no socket lock).
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = parse_seconds,
        allow_hyphen_values = true,
        conflicts_with_all = ["shared", "max", "slots"]
    )]
    pub once_per: Option<Duration>,

    /// With --once-per: the exit status of a skipped run [default: 0].
    #[arg(long, value_name = "N", requires = "once_per", hide_short_help = true)]
    pub skip_exit_code: Option<u8>,

    /// List the locks: who holds and who waits for each.
    ///
    /// The locks in DIR (with --url: on the server), or just the NAMEs
    /// given after it: state, mode, holders and waiters with their pid,
    /// user, host, command and since.
    #[arg(
        long,
        conflicts_with_all = [
            "shared", "exclusive", "max", "no_wait", "wait", "conflict_exit_code", "verbose",
            "time_limit", "slots", "once_per"
        ]
    )]
    pub list: bool,

    /// With --list: JSON for scripts instead of a table.
    #[arg(long, requires = "list")]
    pub json: bool,

    /// Say how long the lock was waited for and held, and how the command ended.
    #[arg(short, long)]
    pub verbose: bool,

    /// With `withlock hold`: keep the locks until process PID exits.
    ///
    /// `withlock hold NAME... --until-exit PID` (no command) takes the
    /// locks as a run would, then keeps them in a background process,
    /// detached from the terminal, until PID exits or `withlock release
    /// NAME` is run by the same user or root; it returns (0) once they are
    /// held. PID is usually the caller's shell: $$, or $PPID in a script.
    #[arg(
        long,
        value_name = "PID",
        value_parser = clap::value_parser!(i32).range(1..),
        hide_short_help = true,
        conflicts_with_all = ["list", "supersede", "cancel_running"]
    )]
    pub until_exit: Option<i32>,

    /// What the command line asks for: a run, a hold or a release.
    #[arg(skip)]
    pub action: Action,

    /// Write the man page and shell completions under PREFIX.
    ///
    /// The man page and bash, zsh and fish completions go under PREFIX in
    /// share/man/man1, share/bash-completion/completions,
    /// share/zsh/site-functions and share/fish/vendor_completions.d.
    // Not `exclusive`: clap counts WITHLOCK_DIR or WITHLOCK_URL from the
    // environment against that.
    #[arg(
        long,
        value_name = "PREFIX",
        hide_short_help = true,
        conflicts_with_all = [
            "locks", "command", "list", "json", "shared", "exclusive", "max", "no_wait",
            "wait", "supersede", "cancel_running", "quiet", "verbose", "time_limit",
            "slots", "once_per"
        ]
    )]
    pub generate_extras: Option<PathBuf>,
}

/// What a command line asks withlock to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Action {
    /// Run a command under the locks (or --list, --generate-extras).
    #[default]
    Run,
    /// `withlock hold NAME... --until-exit PID`: keep the locks in the
    /// background.
    Hold,
    /// `withlock release NAME...`: end this user's holds of the locks.
    Release,
}

/// Why the command line was refused.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// clap's own report (or `--help` / `--version`), printed by clap.
    Clap(clap::Error),
    /// A mistake about the command itself, as one line naming the fix.
    Command(String),
}

impl From<clap::Error> for ParseError {
    fn from(err: clap::Error) -> ParseError {
        ParseError::Clap(err)
    }
}

impl Cli {
    /// Parses the command line. `--dir` and `--url` on the command line
    /// together are a conflict; from the environment they are not, so that
    /// a WITHLOCK_DIR set for local locks does not stop `--url` working,
    /// and `--dir` on the command line beats a WITHLOCK_URL from the
    /// environment.
    pub(crate) fn parse_args() -> Result<Cli, ParseError> {
        Cli::parse_all(&std::env::args_os().collect::<Vec<_>>())
    }

    fn parse_all(args: &[OsString]) -> Result<Cli, ParseError> {
        let has_dash_dash = args.iter().any(|arg| arg == "--");
        let cli = match Cli::parse_from_args(args) {
            // A run always has `--`, so `hold` or `release` as the first
            // name without one can only be the action.
            Ok(cli) if !has_dash_dash && cli.action_word().is_some() => {
                return cli.hold_or_release();
            }
            Ok(cli) => cli,
            // Most often the command's own options, such as `make -j4`,
            // taken for ours because `--` is missing.
            Err(err) if err.use_stderr() && !has_dash_dash => {
                return Err(match with_dash_dash(args) {
                    Some(line) => ParseError::Command(goes_after(&line)),
                    None => ParseError::Clap(err),
                });
            }
            Err(err) => return Err(err.into()),
        };
        cli.check_command(args, has_dash_dash)
            .map_err(ParseError::Command)?;
        if cli.until_exit.is_some() {
            return Err(ParseError::Command(
                "--until-exit is for holds, without a command: withlock hold NAME... \
                 --until-exit PID"
                    .to_owned(),
            ));
        }
        Ok(cli)
    }

    /// `withlock hold NAME... --until-exit PID` or `withlock release
    /// NAME...`: the options of a run, the locks, and no command. A hold's
    /// `command` becomes its own command line, which its locks declare as
    /// their holder's.
    fn hold_or_release(mut self) -> Result<Cli, ParseError> {
        let Some(action) = self.action_word() else {
            return Ok(self);
        };
        let word = self.locks.remove(0);
        let mut cli = self;
        cli.action = action;
        if cli.list || cli.generate_extras.is_some() {
            return Err(ParseError::Command(format!(
                "withlock {word} takes locks, not --list or --generate-extras: drop them"
            )));
        }
        let for_a_command = [
            ("--time-limit", cli.time_limit.is_some()),
            ("--once-per", cli.once_per.is_some()),
            ("--slots", cli.slots.is_some()),
        ];
        if let Some((option, _)) = for_a_command.iter().find(|(_, given)| *given) {
            return Err(ParseError::Command(format!(
                "withlock {word} runs no command, and {option} is for a command run under the \
                 lock: drop it"
            )));
        }
        if cli.locks.is_empty() {
            return Err(ParseError::Command(match action {
                Action::Hold => "no lock name: withlock hold NAME... --until-exit PID".to_owned(),
                _ => "no lock name: withlock release NAME...".to_owned(),
            }));
        }
        match (action, cli.until_exit) {
            (Action::Hold, None) => Err(ParseError::Command(
                "withlock hold needs --until-exit PID: the process whose exit ends the hold, \
                 such as $$ (this shell) or $PPID (a script's caller)"
                    .to_owned(),
            )),
            (Action::Hold, Some(pid)) => {
                // Short, and the pid before the names: a server lock's
                // declared command has little room (withlock::pg::Identity).
                let mut line: Vec<OsString> =
                    vec!["hold".into(), "--until-exit".into(), pid.to_string().into()];
                line.extend(cli.locks.iter().map(OsString::from));
                cli.command = line;
                Ok(cli)
            }
            (_, Some(_)) => Err(ParseError::Command(
                "withlock release takes no --until-exit: withlock release NAME...".to_owned(),
            )),
            (_, None) => Ok(cli),
        }
    }

    fn parse_from_args(args: &[OsString]) -> Result<Cli, clap::Error> {
        use clap::parser::ValueSource::{CommandLine, EnvVariable};
        use clap::{CommandFactory, FromArgMatches};
        let mut command = Cli::command();
        let mut matches = match command.try_get_matches_from_mut(args) {
            Ok(matches) => matches,
            Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelp => {
                return Err(match Cli::shown().try_get_matches_from(args) {
                    Err(help) => help,
                    Ok(_) => err,
                });
            }
            Err(err) => return Err(err),
        };
        let (dir, url) = (matches.value_source("dir"), matches.value_source("url"));
        if dir == Some(CommandLine) && url == Some(CommandLine) {
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                "--dir is for locks on this machine and --url for locks on a server: drop one",
            ));
        }
        // Taking the values out, not copying the matches first: the copy
        // and its drop were 6% of the instructions of a whole run.
        let mut cli = Cli::from_arg_matches_mut(&mut matches)?;
        // The command line beats the environment: --dir with a
        // WITHLOCK_URL from the environment means a lock on this machine.
        if dir == Some(CommandLine) && url == Some(EnvVariable) {
            cli.url = None;
        }
        cli.url_on_command_line = url == Some(CommandLine);
        Ok(cli)
    }

    /// Refuses a run without a lock or a command. Without `--` every word was taken
    /// as a lock name, since the locks cannot be told from the command; the
    /// answer shows the line with `--` after the first name.
    fn check_command(&self, args: &[OsString], has_dash_dash: bool) -> Result<(), String> {
        if self.list || self.generate_extras.is_some() {
            return Ok(());
        }
        if self.locks.is_empty() {
            return Err(
                "no lock name before --: give one, such as withlock NAME -- make".to_owned(),
            );
        }
        match self.command.first() {
            Some(program) if program.is_empty() => Err(
                "the command after -- is empty (\"\"): give the program to run, \
                 such as withlock NAME -- make"
                    .to_owned(),
            ),
            Some(_) => Ok(()),
            None if has_dash_dash => Err(
                "no command after --: give the one to run, such as withlock NAME -- make"
                    .to_owned(),
            ),
            None => Err(match with_dash_dash(args) {
                Some(line) => goes_after(&line),
                None => {
                    let mut line = args.to_vec();
                    line.extend(["--".into(), "COMMAND".into()]);
                    format!("no command: it goes after --: {}", shown_line(&line))
                }
            }),
        }
    }

    /// The command line as `-h`, `--help` and the man page show it. NAME
    /// and COMMAND are optional to the parser only because `--list` and
    /// `--generate-extras` need neither (a missing one is told apart by
    /// [`Cli::parse_args`]); a run needs both, so they are shown as
    /// required, `<NAME>...`, not `[NAME]...`.
    pub(crate) fn shown() -> clap::Command {
        use clap::CommandFactory;
        Cli::command()
            .after_long_help(after_long_help())
            .mut_arg("locks", |arg| arg.required(true))
            .mut_arg("command", |arg| arg.required(true))
    }

    /// The action the first name stands for, without `--`: `hold` or
    /// `release`.
    fn action_word(&self) -> Option<Action> {
        match self.locks.first().map(String::as_str) {
            Some("hold") => Some(Action::Hold),
            Some("release") => Some(Action::Release),
            _ => None,
        }
    }

    /// How long to wait for the locks: -n, -w SECONDS, or forever.
    pub(crate) fn wait_limit(&self) -> withlock::Wait {
        match (self.no_wait, self.wait) {
            (true, _) => withlock::Wait::NoWait,
            (false, Some(limit)) => withlock::Wait::For(limit),
            (false, None) => withlock::Wait::Forever,
        }
    }

    /// How many holders may run at once: `--max N`, or the number of
    /// `--slots`; `None` for a lock of one holder (or shared ones).
    pub(crate) fn max_holders(&self) -> Option<u32> {
        match &self.slots {
            Some(names) => Some(names.len()),
            None => self.max,
        }
    }

    /// With --list, the lock names given (all positional arguments).
    pub(crate) fn list_names(&self) -> Vec<String> {
        let rest = self
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned());
        self.locks.iter().cloned().chain(rest).collect()
    }
}

/// The first command line that `args` becomes with a `--` inserted, if
/// any: `--` after the first word that can end the locks, so the answer
/// to a line without it assumes the one-lock case.
fn with_dash_dash(args: &[OsString]) -> Option<Vec<OsString>> {
    (2..=args.len()).find_map(|at| {
        let mut trial = args.to_vec();
        trial.insert(at, "--".into());
        let cli = Cli::parse_from_args(&trial).ok()?;
        let runs = !cli.list && cli.generate_extras.is_none();
        // No program is named like an option: `withlock foo -v make` means
        // -v for withlock, as it was parsed, and make as the command.
        let program = cli.command.first()?;
        let program_ok = !program.as_encoded_bytes().starts_with(b"-");
        (runs && program_ok && !cli.locks.is_empty()).then_some(trial)
    })
}

fn goes_after(line: &[OsString]) -> String {
    format!("the command goes after --: {}", shown_line(line))
}

/// A command line as the user would type it, starting with `withlock`.
fn shown_line(args: &[OsString]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let rest: Vec<&[u8]> = args.iter().skip(1).map(|arg| arg.as_bytes()).collect();
    format!("withlock {}", withlock::escape::command_line(&rest))
}

/// A number of seconds, fractions allowed: 0 or more and finite, at most
/// [`Duration::MAX`] (about 1.8e19 s). A wait whose end is too far for the
/// clock (from about 9.2e18 s) has no deadline: see [`withlock::Wait`].
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.trim().parse().unwrap_or(f64::NAN);
    if seconds.is_nan() {
        return Err(format!(
            "{text:?} is not a number of seconds, such as 10 or 0.5"
        ));
    }
    if seconds < 0.0 {
        return Err(format!("{text:?} is negative: give 0 or more seconds"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        format!(
            "{text:?} is too many seconds: at most {} (about 1.8e19)",
            Duration::MAX.as_secs()
        )
    })
}

/// The names of the places of `--slots`, in the order given: slot i is
/// named `names[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotNames(Vec<String>);

impl SlotNames {
    /// How many places there are.
    pub(crate) fn len(&self) -> u32 {
        self.0.len() as u32
    }

    /// The name of slot `index`.
    pub(crate) fn name(&self, index: u32) -> Option<&str> {
        self.0.get(index as usize).map(String::as_str)
    }
}

/// `--slots a,b,c`: one or more names, none empty, none twice, none with
/// a space, a control character or `=` (they go into WITHLOCK_SLOTS).
fn parse_slots(text: &str) -> Result<SlotNames, String> {
    let names: Vec<String> = text.split(',').map(str::to_owned).collect();
    let fix = "such as --slots db1,db2,db3";
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(format!(
                "--slots {text:?}: name {} is empty: give every place a name, {fix}",
                i + 1
            ));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '=')
        {
            return Err(format!(
                "--slots {text:?}: the name {name:?} holds a space, a control character or '=': \
                 give plain names, {fix}"
            ));
        }
        if names[..i].contains(name) {
            return Err(format!(
                "--slots {text:?}: the name {name:?} is given twice: each place needs a name of \
                 its own, {fix}"
            ));
        }
    }
    Ok(SlotNames(names))
}

/// `-w`: as [`parse_seconds`], saying how to wait forever when too large.
fn parse_wait(text: &str) -> Result<Duration, String> {
    parse_seconds(text).map_err(|err| {
        if text
            .trim()
            .parse::<f64>()
            .is_ok_and(|s| s > 0.0 && !s.is_nan())
        {
            format!("{err}; leave out -w to wait forever")
        } else {
            err
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
        Cli::shown().debug_assert();
    }

    #[test]
    fn seconds_accept_fractions_and_refuse_the_rest() {
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("3"), Ok(Duration::from_secs(3)));
        for bad in ["-1", "abc", "NaN", "inf", "", "1e400", "-inf", "1e20"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
        // Up to Duration::MAX: a deadline the clock cannot hold waits forever.
        assert_eq!(
            parse_seconds("1e19"),
            Ok(Duration::from_secs(10_000_000_000_000_000_000))
        );
        assert!(
            parse_wait("inf")
                .unwrap_err()
                .contains("leave out -w to wait forever")
        );
        assert!(parse_wait("-1").unwrap_err().contains("negative"));
    }

    #[test]
    fn the_grace_defaults_to_the_librarys_and_the_help_says_its_bounds() {
        use withlock::pg::heartbeat::{DETECTION_BOUND, SERVER_MARGIN, server_bound};
        let cli = Cli::parse_from(["withlock", "x", "--", "true"]);
        assert_eq!(cli.grace, withlock::pg::heartbeat::DEFAULT_GRACE);
        assert_eq!(DETECTION_BOUND, Duration::from_secs(8));
        assert_eq!(SERVER_MARGIN, Duration::from_secs(10));
        assert_eq!(
            server_bound(cli.grace),
            DETECTION_BOUND + cli.grace + SERVER_MARGIN
        );
        let cli = Cli::parse_from(["withlock", "--grace", "0.5", "x", "--", "true"]);
        assert_eq!(cli.grace, Duration::from_millis(500));
    }

    #[test]
    fn the_command_keeps_its_own_options() {
        let cli = Cli::parse_from(["withlock", "-n", "x", "--", "ls", "-l", "--", "-n"]);
        assert!(cli.no_wait);
        assert_eq!(cli.command, ["ls", "-l", "--", "-n"]);
    }

    #[test]
    fn several_locks_come_before_the_command_after_dashes() {
        let cli = Cli::parse_from(["withlock", "a", "b=shared", "--", "cmd", "x"]);
        assert_eq!(cli.locks, ["a", "b=shared"]);
        assert_eq!(cli.command, ["cmd", "x"]);
        // Without `--` the command cannot be told from the locks.
        assert!(parse(&["withlock", "a", "b", "cmd"]).is_err());
        assert!(parse(&["withlock", "--", "cmd"]).is_err());
        assert!(Cli::try_parse_from(["withlock", "--list", "--supersede"]).is_err());
    }

    #[test]
    fn list_takes_names_and_refuses_lock_options() {
        let cli = Cli::parse_from(["withlock", "--list", "--json", "a", "b"]);
        assert_eq!(cli.list_names(), ["a", "b"]);
        assert!(cli.json);
        assert!(
            Cli::parse_from(["withlock", "--list"])
                .list_names()
                .is_empty()
        );
        assert!(Cli::try_parse_from(["withlock", "--list", "-n"]).is_err());
        assert!(Cli::try_parse_from(["withlock", "--json", "x", "--", "true"]).is_err());
        assert!(parse(&["withlock", "x"]).is_err());
    }

    fn parse(args: &[&str]) -> Result<Cli, ParseError> {
        Cli::parse_all(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    fn command_error(args: &[&str]) -> String {
        match parse(args) {
            Err(ParseError::Command(line)) => line,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn a_missing_dash_dash_is_answered_with_the_corrected_line() {
        assert_eq!(
            command_error(&["withlock", "foo", "echo", "hi"]),
            "the command goes after --: withlock foo -- echo hi"
        );
        // Options before the name keep their values; the command keeps its
        // own options, even those that look like ours.
        assert_eq!(
            command_error(&["withlock", "-w", "5", "foo", "sleep", "5", "-q"]),
            "the command goes after --: withlock -w 5 foo -- sleep 5 -q"
        );
        assert_eq!(
            command_error(&["withlock", "foo", "make", "-j4"]),
            "the command goes after --: withlock foo -- make -j4"
        );
        // An option of ours before the command stays ours.
        assert_eq!(
            command_error(&["withlock", "foo", "-v", "make"]),
            "the command goes after --: withlock foo -v -- make"
        );
        assert_eq!(
            command_error(&["withlock", "foo", "sh", "-c", "a b"]),
            "the command goes after --: withlock foo -- sh -c 'a b'"
        );
        assert_eq!(
            command_error(&["withlock", "foo"]),
            "no command: it goes after --: withlock foo -- COMMAND"
        );
        assert!(command_error(&["withlock", "a", "b", "--"]).starts_with("no command after --"));
        assert!(command_error(&["withlock", "a", "--", ""]).contains("is empty"));
        assert!(command_error(&["withlock", "-n", "--", "make"]).starts_with("no lock name"));
    }
}
