//! Telling a session that runs through a pooler sharing server sessions
//! (pgbouncer in transaction or statement mode, or in session mode without
//! a `server_reset_query`) from a session of its own, when it opens.
//!
//! Behind such a pooler, a session-level advisory lock stays on a server
//! session that the pooler then lends to other clients: one of them could
//! take the "same" lock again (advisory locks are re-entrant for a
//! session), and the unlock may reach another server session. Poolers
//! cannot be asked (pgbouncer answers `SHOW pool_mode` only on its admin
//! console), so the session is watched instead:
//!
//! 1. **Marker.** The first setup statement reads the setting
//!    `withlock.session`, then sets it to a token unique to this session.
//!    A fresh server session has none. A pooler that resets server
//!    sessions between clients (`DISCARD ALL`) clears it. Found set, the
//!    server session was used by an earlier withlock client and handed on
//!    as it was: refused.
//! 2. **Same session.** The second setup statement reads the backend pid
//!    and the marker again: another pid, or another marker, means the two
//!    statements ran in different server sessions: refused.
//! 3. **Probe.** A quiet transaction-mode pool gives the same server
//!    session back to the same client, so 1 and 2 can miss the first
//!    withlock client of a pool. When something other than the client set
//!    `application_name` (pgbouncer sets it with `SET` on the server
//!    session; a direct session has it from the startup packet, source
//!    `client`), a second short session is opened: if it lands in the
//!    first one's server session (same marker), the pool shares sessions:
//!    refused. A session-mode pool cannot hand it over; if it makes the
//!    probe wait for a free server session, that is no sharing either, and
//!    the probe is given up after [`PROBE_BOUND`].
//!
//! A direct session costs nothing extra: 1 and 2 ride on the two setup
//! round trips. A busy transaction-mode pool may still slip through 1–3
//! on a given connection (another client can take the freed server session
//! between two statements, or hand the probe another one); 2 then fires on
//! most connections.

use std::time::Duration;

/// The custom setting that marks a server session as a withlock one.
pub(crate) const MARKER: &str = "withlock.session";

/// How long the probe session may take.
pub(crate) const PROBE_BOUND: Duration = Duration::from_secs(2);

/// What one statement saw of its server session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// `pg_backend_pid()`.
    pub pid: i32,
    /// The marker setting, if the server session has one.
    pub marker: Option<String>,
}

/// What the two setup statements saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observation {
    /// The first statement's backend pid.
    pub pid: i32,
    /// The marker before the first statement set it.
    pub inherited: Option<String>,
    /// Where `application_name` was set from (`pg_settings.source`).
    pub application_name_source: Option<String>,
    /// The marker the first statement set.
    pub token: String,
    /// What the second statement saw.
    pub later: Seen,
}

/// Why the session looks shared, from the setup statements alone.
pub(crate) fn evidence(seen: &Observation) -> Option<String> {
    if let Some(earlier) = seen.inherited.as_deref().filter(|m| !m.is_empty()) {
        return Some(format!(
            "its server session (backend pid {}) still carried the marker of an earlier \
             withlock session ({earlier}), so it is handed from client to client without a reset",
            seen.pid
        ));
    }
    if seen.later.pid != seen.pid {
        return Some(format!(
            "two statements in a row ran in different server sessions (backend pid {}, then {})",
            seen.pid, seen.later.pid
        ));
    }
    if seen.later.marker.as_deref() != Some(seen.token.as_str()) {
        return Some(format!(
            "the server session (backend pid {}) lost its settings between two statements",
            seen.pid
        ));
    }
    None
}

/// Whether to open a probe session: something between the client and the
/// server set `application_name`.
pub(crate) fn worth_probing(seen: &Observation) -> bool {
    seen.application_name_source.as_deref() != Some("client")
}

/// Why the session looks shared, from what a probe session saw.
pub(crate) fn probe_evidence(seen: &Observation, probe: &Seen) -> Option<String> {
    (probe.marker.as_deref() == Some(seen.token.as_str())).then(|| {
        format!(
            "a second connection was given the first one's server session (backend pid {})",
            probe.pid
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct() -> Observation {
        Observation {
            pid: 100,
            inherited: None,
            application_name_source: Some("client".into()),
            token: "1.0.5".into(),
            later: Seen {
                pid: 100,
                marker: Some("1.0.5".into()),
            },
        }
    }

    #[test]
    fn a_direct_session_is_accepted_without_a_probe() {
        assert_eq!(evidence(&direct()), None);
        assert!(!worth_probing(&direct()));
    }

    #[test]
    fn a_session_reset_by_discard_all_is_accepted() {
        // pgbouncer in session mode: RESET ALL leaves the marker empty.
        let seen = Observation {
            inherited: Some(String::new()),
            application_name_source: Some("session".into()),
            ..direct()
        };
        assert_eq!(evidence(&seen), None);
        assert!(worth_probing(&seen));
    }

    #[test]
    fn an_inherited_marker_is_refused() {
        let seen = Observation {
            inherited: Some("7.3.1".into()),
            ..direct()
        };
        let why = evidence(&seen).unwrap();
        assert!(why.contains("earlier withlock session"), "{why}");
    }

    #[test]
    fn a_changed_backend_is_refused() {
        let seen = Observation {
            later: Seen {
                pid: 101,
                marker: None,
            },
            ..direct()
        };
        assert!(evidence(&seen).unwrap().contains("pid 100, then 101"));
    }

    #[test]
    fn a_lost_marker_is_refused() {
        let seen = Observation {
            later: Seen {
                pid: 100,
                marker: Some(String::new()),
            },
            ..direct()
        };
        assert!(evidence(&seen).unwrap().contains("lost its settings"));
    }

    #[test]
    fn a_probe_in_the_same_server_session_is_refused() {
        let seen = direct();
        let shared = Seen {
            pid: 100,
            marker: Some("1.0.5".into()),
        };
        assert!(probe_evidence(&seen, &shared).is_some());
        let own = Seen {
            pid: 200,
            marker: None,
        };
        assert_eq!(probe_evidence(&seen, &own), None);
    }
}
