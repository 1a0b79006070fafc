//! Where a session's password comes from, in libpq's order: the
//! connection string, `PGPASSWORD`, then the password file (read in
//! `pgpass.rs`); and whether a failed login is worth a word about where
//! no password was found. The password is never part of a message.

use std::path::Path;

use postgres::Config;

use crate::pg::endpoint::Endpoint;
use crate::pg::environment::Environment;
use crate::pg::pgpass::{self, Lookup, Outcome};

/// Sets the password from `PGPASSWORD` or the password file when the
/// string gives none; returns what to say if the server then refuses.
pub(crate) fn complete_password(
    config: &mut Config,
    endpoint: &Endpoint,
    passfile: Option<&Path>,
    env: &Environment,
) -> Option<String> {
    if config.get_password().is_some_and(|p| !p.is_empty()) {
        return None;
    }
    if let Some(password) = env.var("PGPASSWORD") {
        config.password(password);
        return None;
    }
    let path = passfile
        .map(Path::to_owned)
        .or_else(|| env.home().map(|home| home.join(".pgpass")))?;
    let port = endpoint.port.to_string();
    let lookup = Lookup {
        host: &endpoint.pgpass_host,
        port: &port,
        database: config.get_dbname().unwrap_or_default(),
        user: config.get_user().unwrap_or_default(),
    };
    match pgpass::password(&path, lookup) {
        Outcome::Found(password) => {
            config.password(password);
            None
        }
        Outcome::NotFound => Some(format!(
            "no password was given: none in the URL or PGPASSWORD, and no entry in {} for \
             {}:{}:{}:{}",
            path.display(),
            lookup.host,
            lookup.port,
            lookup.database,
            lookup.user
        )),
        Outcome::Ignored(why) => Some(why),
    }
}

/// Whether the server refused the login or wanted a password it did not
/// get: then the password hint is worth showing.
pub(crate) fn is_password_problem(error: &postgres::Error) -> bool {
    if error
        .code()
        .is_some_and(|code| code.code().starts_with("28"))
    {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.to_string() == "password missing" {
            return true;
        }
        source = cause.source();
    }
    false
}
