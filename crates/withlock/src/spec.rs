//! The lock spec grammar: what a spec such as `deploy`, `./x.lock`,
//! `tcp:4711` or `artifacts=shared` names, decided here and nowhere else.
//!
//! ```text
//! spec   = lock [ "=" mode ]          mode = "shared" | "exclusive"
//! lock   = socket | path | name
//! socket = "tcp:" … | "unix:" … | "abstract:" …   (see SocketAddress)
//! path   = any text containing '/'
//! name   = withlock's naming rules (LockName)
//! ```
//!
//! The parts are told apart by their form alone, in this order:
//!
//! - **Mode.** A spec that ends in `=shared` or `=exclusive` always has it
//!   read as its mode; a path or socket that itself ends so is written with
//!   a mode after it (`./x=shared=exclusive`). Any other word after `=`
//!   is refused when the spec is a name, since a name cannot contain `=`;
//!   a path or socket keeps its `=` (`./a=b` is a path).
//! - **Socket.** A `tcp:`, `unix:` or `abstract:` prefix makes a socket
//!   lock before any path or name rule applies (`unix:/run/x.sock` is a
//!   socket though it contains '/'; a lock file whose path starts so is
//!   reachable as `./tcp:…`). A name cannot contain ':', so no valid
//!   name is taken over by a prefix.
//! - **Path.** Anything else containing '/' is a lock file path.
//! - **Name.** The rest is a lock name, checked against the naming rules.
//!
//! With a server (`--url`), a lock is a name on the server
//! ([`LockSpec::parse_on_server`]): a path or socket exists only on this
//! machine, and taking it on the server instead would be a silent change of
//! meaning, so it is refused before its own rules are checked.
//!
//! This module only reads specs; each kind of lock makes its lock from what
//! it names ([`crate::AnyLock::at`], [`crate::FileLock::at`]).
//!
//! Being the one grammar, this is the one core module besides the
//! registration in `any_lock.rs` that names a kind of lock: a spec's form
//! decides its kind, so the socket prefixes and [`SocketAddress`] are read
//! here (a kind with a spec form of its own adds it here; a kind taken on
//! a server by URL needs nothing here).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::name::LockName;
use crate::request::Mode;
use crate::socket::socket_spec::{self, SocketAddress};

/// A parsed lock spec: the lock it names and the mode it gives itself.
/// `T` is what the lock part names: a [`LockTarget`] on this machine, or a
/// [`LockName`] on a server ([`LockSpec::parse_on_server`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSpec<T = LockTarget> {
    /// The lock part as given, without its mode: the lock's label in
    /// messages.
    pub label: String,
    /// What the lock part names.
    pub target: T,
    /// The mode the spec gives itself (`=shared`, `=exclusive`), if any.
    pub mode: Option<Mode>,
}

/// What a lock spec names on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTarget {
    /// A lock file: a name in the lock directory, or a path.
    File(FileTarget),
    /// A socket (`tcp:`, `unix:`, `abstract:`).
    Socket(SocketAddress),
}

/// What a file lock's spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileTarget {
    /// A lock name: the file `<dir>/<name>.lock`.
    Name(LockName),
    /// A lock file path, shared with flock(1) on that path. Its file name
    /// is checked when the lock is made ([`crate::FileLock::at_path`]).
    Path(PathBuf),
}

impl LockSpec {
    /// Reads `spec` as a lock on this machine, with its own mode if it
    /// gives one.
    pub fn parse(spec: &str) -> Result<LockSpec> {
        let (label, mode) = split_mode(spec)?;
        Ok(LockSpec {
            label: label.to_owned(),
            target: LockTarget::parse(label)?,
            mode,
        })
    }

    /// Reads `spec` as a lock name on a server, with its own mode if it
    /// gives one; a path or socket spec is refused with
    /// [`Error::Unsupported`] (see the module docs).
    pub fn parse_on_server(spec: &str) -> Result<LockSpec<LockName>> {
        let (label, mode) = split_mode(spec)?;
        if !is_name(label) {
            return Err(Error::Unsupported {
                lock: crate::escape::text(label),
                reason: "with --url, locks are names on the server, not paths or sockets; \
                         drop --url to lock it on this machine"
                    .into(),
            });
        }
        Ok(LockSpec {
            label: label.to_owned(),
            target: LockName::new(label)?,
            mode,
        })
    }
}

impl LockTarget {
    /// Reads `text` (a spec without a mode) as a socket, a path or a name.
    pub fn parse(text: &str) -> Result<LockTarget> {
        match SocketAddress::parse(text) {
            Some(address) => Ok(LockTarget::Socket(address?)),
            None => FileTarget::parse(text).map(LockTarget::File),
        }
    }
}

impl FileTarget {
    /// Reads `text` as a path or a name, for callers that take only file
    /// locks: a socket spec is not recognised and fails the naming rules
    /// (':' is not allowed in a name).
    pub fn parse(text: &str) -> Result<FileTarget> {
        if is_path(text) {
            Ok(FileTarget::Path(PathBuf::from(text)))
        } else {
            LockName::new(text).map(FileTarget::Name)
        }
    }
}

/// The lock part of `spec` and the mode it gives itself, if any:
/// `artifacts=shared` is `("artifacts", Some(Mode::Shared))`. A name with
/// any other word after `=` is refused with [`Error::InvalidName`].
fn split_mode(spec: &str) -> Result<(&str, Option<Mode>)> {
    let Some((lock, word)) = spec.rsplit_once('=') else {
        return Ok((spec, None));
    };
    match word {
        "shared" => Ok((lock, Some(Mode::Shared))),
        "exclusive" => Ok((lock, Some(Mode::Exclusive))),
        // A lock name cannot contain '=': say what '=' means.
        _ if is_name(spec) => Err(Error::InvalidName {
            name: spec.to_owned(),
            reason: "a lock's own mode follows '=' and is shared or exclusive, \
                     as in artifacts=shared",
        }),
        _ => Ok((spec, None)),
    }
}

/// True when `text`'s form makes it a name (whether or not the naming
/// rules accept it): neither a socket spec nor a path.
fn is_name(text: &str) -> bool {
    !socket_spec::is_socket_spec(text) && !is_path(text)
}

/// True when `text`'s form makes it a lock file path (a socket spec is
/// told apart first).
fn is_path(text: &str) -> bool {
    text.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> LockTarget {
        LockTarget::File(FileTarget::Name(LockName::new(text).unwrap()))
    }

    fn path(text: &str) -> LockTarget {
        LockTarget::File(FileTarget::Path(PathBuf::from(text)))
    }

    fn socket(text: &str) -> LockTarget {
        LockTarget::Socket(SocketAddress::parse(text).unwrap().unwrap())
    }

    /// The label, target and mode `spec` parses to.
    fn parsed(spec: &str) -> (String, LockTarget, Option<Mode>) {
        let spec = LockSpec::parse(spec).unwrap();
        (spec.label, spec.target, spec.mode)
    }

    fn invalid_name(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidName { name, .. }) => name,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_name_a_path_and_sockets() {
        assert_eq!(parsed("deploy"), ("deploy".into(), name("deploy"), None));
        assert_eq!(
            parsed("./x.lock"),
            ("./x.lock".into(), path("./x.lock"), None)
        );
        assert_eq!(parsed("/abs/x"), ("/abs/x".into(), path("/abs/x"), None));
        for spec in ["tcp:4711", "unix:/run/x.sock", "unix:rel", "abstract:x"] {
            assert_eq!(parsed(spec), (spec.into(), socket(spec), None), "{spec}");
        }
    }

    #[test]
    fn a_mode_after_the_last_equals_sign() {
        let shared = Some(Mode::Shared);
        let exclusive = Some(Mode::Exclusive);
        assert_eq!(parsed("a=shared"), ("a".into(), name("a"), shared));
        assert_eq!(parsed("a=exclusive"), ("a".into(), name("a"), exclusive));
        assert_eq!(
            parsed("./x=shared=exclusive"),
            ("./x=shared".into(), path("./x=shared"), exclusive)
        );
        assert_eq!(
            parsed("tcp:4711=shared"),
            ("tcp:4711".into(), socket("tcp:4711"), shared)
        );
        assert_eq!(parsed("./x=shared").1, path("./x"));
    }

    #[test]
    fn a_path_or_socket_keeps_an_equals_sign_that_is_no_mode() {
        assert_eq!(parsed("./a=b"), ("./a=b".into(), path("./a=b"), None));
        assert_eq!(parsed("a=b/c"), ("a=b/c".into(), path("a=b/c"), None));
        assert_eq!(parsed("abstract:a=b").1, socket("abstract:a=b"));
        assert_eq!(parsed("unix:/x=y").1, socket("unix:/x=y"));
    }

    #[test]
    fn a_name_with_an_equals_sign_is_refused_whole() {
        for spec in ["x=bogus", "x=", "x=Shared", "a=b=c", "="] {
            assert_eq!(invalid_name(LockSpec::parse(spec)), spec);
        }
        // The mode is read, then the empty lock part fails the naming rules.
        assert_eq!(invalid_name(LockSpec::parse("=shared")), "");
    }

    #[test]
    fn paths_may_hold_colons_and_names_may_not() {
        assert_eq!(parsed("./tcp:4711").1, path("./tcp:4711"));
        assert_eq!(parsed("a:b/c").1, path("a:b/c"));
        for spec in ["x:1", "TCP:4711", "udp:53"] {
            assert_eq!(invalid_name(LockSpec::parse(spec)), spec);
        }
        // A prefix's word without its colon is an ordinary name.
        assert_eq!(parsed("tcp").1, name("tcp"));
    }

    #[test]
    fn a_socket_prefix_wins_and_checks_its_own_rules() {
        for spec in [
            "tcp:",
            "tcp:0",
            "tcp:x",
            "tcp:1.2.3.4:",
            "unix:",
            "abstract:",
        ] {
            assert_eq!(invalid_name(LockSpec::parse(spec)), spec);
        }
        // The mode is split off first, so the port is read without it.
        assert_eq!(invalid_name(LockSpec::parse("tcp:=shared")), "tcp:");
        assert_eq!(
            invalid_name(LockSpec::parse("tcp:4711=bogus")),
            "tcp:4711=bogus"
        );
    }

    #[test]
    fn empty_and_invalid_names_fail_the_naming_rules() {
        for spec in ["", ".hidden", "two words", "é"] {
            assert_eq!(invalid_name(LockSpec::parse(spec)), spec);
        }
    }

    #[test]
    fn on_a_server_only_names_are_locks() {
        let spec = LockSpec::parse_on_server("build=shared").unwrap();
        assert_eq!(spec.target.as_str(), "build");
        assert_eq!(spec.mode, Some(Mode::Shared));
        // Refused by form, before a path's or socket's own rules.
        for spec in ["./x", "/", "tcp:0", "tcp:4711=shared", "unix:", "./x=bogus"] {
            assert!(
                matches!(
                    LockSpec::parse_on_server(spec),
                    Err(Error::Unsupported { .. })
                ),
                "{spec}"
            );
        }
        for spec in ["x=bogus", "", ".x", "x:1"] {
            assert_eq!(invalid_name(LockSpec::parse_on_server(spec)), spec);
        }
    }

    #[test]
    fn file_targets_do_not_know_sockets() {
        assert_eq!(
            LockTarget::File(FileTarget::parse("./tcp:1").unwrap()),
            path("./tcp:1")
        );
        assert_eq!(invalid_name(FileTarget::parse("tcp:4711")), "tcp:4711");
        assert_eq!(invalid_name(FileTarget::parse("x=shared")), "x=shared");
    }
}
