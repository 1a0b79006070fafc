//! Lock names and how they map to lock files.
//!
//! A name is a short word (letters, digits, `.`, `_`, `-`, not starting with
//! `.`, at most 128 bytes) that maps to `<dir>/<name>.lock`. The rules keep a
//! name from escaping its directory or hiding as a dot-file, and keep the
//! file name well under NAME_MAX (255) once `.lock` is added.

use crate::error::{Error, Result};

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// The suffix added to a name to make its lock file's name.
pub const LOCK_FILE_SUFFIX: &str = ".lock";

/// A lock name that has passed the naming rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockName(String);

impl LockName {
    /// Checks `name` against the naming rules.
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("a name cannot be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("a name is at most 128 bytes; use a shorter name"));
        }
        if name.starts_with('.') {
            return Err(invalid(
                "a name cannot start with '.'; drop the leading dot",
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !name.chars().all(allowed) {
            return Err(invalid(
                "use only letters, digits, '.', '_' and '-' (or give a path containing '/')",
            ));
        }
        Ok(LockName(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lock file's name inside the lock directory: `<name>.lock`.
    pub fn file_name(&self) -> String {
        format!("{}{LOCK_FILE_SUFFIX}", self.0)
    }
}

impl std::fmt::Display for LockName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["deploy", "build-1", "a.b_c", "X", &"n".repeat(128)] {
            assert_eq!(LockName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_everything_else() {
        let too_long = "n".repeat(129);
        for bad in [
            "", ".hidden", "a b", "a/b", "..", "é", "a\nb", "a*", &too_long,
        ] {
            let err = LockName::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn file_name_adds_the_suffix() {
        assert_eq!(LockName::new("deploy").unwrap().file_name(), "deploy.lock");
    }
}
