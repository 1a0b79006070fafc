//! The environment a connection string is completed from, as libpq
//! completes it: the `PG*` variables, the home directory and the user's
//! name (see [`crate::pg::connection`] for what each fills in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The environment a connection string is completed from: the `PG*`
/// variables, the home directory (`~/.pgpass`, `~/.postgresql`) and the
/// user name. [`Environment::current`] is this process's; tests build
/// their own.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
    os_user: Option<String>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vars: BTreeMap<&str, &str> = self
            .vars
            .iter()
            .map(|(name, value)| match name.as_str() {
                "PGPASSWORD" => (name.as_str(), "<redacted>"),
                _ => (name.as_str(), value.as_str()),
            })
            .collect();
        f.debug_struct("Environment")
            .field("vars", &vars)
            .field("home", &self.home)
            .field("os_user", &self.os_user)
            .finish()
    }
}

impl Environment {
    /// This process's: its `PG*` variables, `$HOME` (else the home
    /// directory of the effective user, as libpq) and that user's name.
    pub fn current() -> Environment {
        let vars = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(name, _)| name.starts_with("PG"))
            .collect();
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten();
        let home = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .or_else(|| user.as_ref().map(|user| user.dir.clone()));
        Environment {
            vars,
            home,
            os_user: user.map(|user| user.name),
        }
    }

    /// An environment with nothing in it.
    pub fn empty() -> Environment {
        Environment::default()
    }

    /// The same with the variable `name` set to `value`.
    pub fn with_var(mut self, name: &str, value: &str) -> Environment {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The same with `dir` as the home directory.
    pub fn with_home(mut self, dir: impl Into<PathBuf>) -> Environment {
        self.home = Some(dir.into());
        self
    }

    /// The same with `name` as the user's name.
    pub fn with_os_user(mut self, name: &str) -> Environment {
        self.os_user = Some(name.to_owned());
        self
    }

    /// A variable, unless unset or empty (libpq treats both alike).
    pub(crate) fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The home directory, if known.
    pub(crate) fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// The user's name, if known.
    pub(crate) fn os_user(&self) -> Option<&str> {
        self.os_user.as_deref()
    }
}
