//! `Client`: etcd's v3 API through its gRPC-JSON gateway, which every etcd
//! 3.4 and 3.5 member serves on its client port (`POST /v3/kv/txn` and so
//! on, HTTP/1.1 with JSON bodies; keys and values in base64, 64-bit
//! integers as strings). A blocking HTTP client (ureq, rustls with ring),
//! so no protoc, no async runtime and no system library.
//!
//! - **Endpoints**: each call goes to the member that answered last; one
//!   that cannot be reached, or has no leader, is left for the next, in
//!   the URL's order. Only when every member fails does the call fail,
//!   as [`EtcdError::Unreachable`] or [`EtcdError::NoQuorum`].
//! - **Authentication**: with a user, `auth/authenticate` gives a token
//!   sent in the `Authorization` header; a token the cluster no longer
//!   knows (expired, or the member restarted) is renewed once per call.
//! - **Streams** (`watch`): one HTTP request whose chunked response is a
//!   series of JSON messages ([`Client::stream`]).

use std::io::BufReader;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::etcd::error::EtcdError;
use crate::etcd::target::Target;

/// How long one call may take on one member before the next is tried.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a member may take to say whether it has a leader.
pub(crate) const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// gRPC status codes the gateway reports (`{"code": N, ...}`).
const GRPC_INVALID_ARGUMENT: i64 = 3;
const GRPC_DEADLINE_EXCEEDED: i64 = 4;
const GRPC_PERMISSION_DENIED: i64 = 7;
const GRPC_UNAVAILABLE: i64 = 14;
const GRPC_UNAUTHENTICATED: i64 = 16;

/// A connection to an etcd cluster (see the module docs).
pub(crate) struct Client {
    target: Target,
    agent: ureq::Agent,
    /// For streams (a watch) alone: a stream holds its connection while
    /// it lasts, and taking it from `agent`'s pool would leave the calls
    /// that follow an event (the handoff) to open a new one.
    stream_agent: ureq::Agent,
    /// The endpoint to try first: the one that answered last.
    current: AtomicUsize,
    token: Mutex<Option<String>>,
}

/// Why one member did not serve a call.
enum Failure {
    /// Try the next member: it could not be reached or has no leader.
    Next(EtcdError),
    /// The answer stands for the whole cluster.
    Final(EtcdError),
    /// The token is no longer valid: authenticate again.
    Token,
}

impl Client {
    /// A client for `target`, authenticated if it names a user.
    pub(crate) fn connect(target: &Target) -> Result<Arc<Client>, EtcdError> {
        let tls = crate::etcd::tls::config(target)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent("withlock")
            .build();
        let client = Client {
            target: target.clone(),
            stream_agent: ureq::Agent::new_with_config(config.clone()),
            agent: ureq::Agent::new_with_config(config),
            current: AtomicUsize::new(0),
            token: Mutex::new(None),
        };
        client.authenticate()?;
        Ok(Arc::new(client))
    }

    /// The cluster as messages name it.
    pub(crate) fn cluster(&self) -> &str {
        self.target.cluster()
    }

    /// Calls `path` (as `/v3/kv/range`) with `body`, trying each member in
    /// turn; `what` says what for messages.
    pub(crate) fn call(
        &self,
        path: &str,
        body: &Value,
        what: &'static str,
    ) -> Result<Value, EtcdError> {
        self.call_within(path, body, what, CALL_TIMEOUT)
    }

    /// As [`Client::call`], waiting at most `timeout` for each member.
    pub(crate) fn call_within(
        &self,
        path: &str,
        body: &Value,
        what: &'static str,
        timeout: Duration,
    ) -> Result<Value, EtcdError> {
        let mut renewed = false;
        loop {
            match self.each_member(|endpoint| self.post(endpoint, path, body, what, timeout)) {
                Err(Failure::Token) if !renewed && self.target.user.is_some() => {
                    renewed = true;
                    self.authenticate()?;
                }
                Err(Failure::Token) => return Err(self.needs_user()),
                Err(Failure::Next(error) | Failure::Final(error)) => return Err(error),
                Ok(reply) => return Ok(reply),
            }
        }
    }

    /// A stream of messages from `path` (a watch), read with at most
    /// `timeout` for the whole stream; None once it ended.
    pub(crate) fn stream(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Messages, EtcdError> {
        let opened = self.each_member(|endpoint| {
            let response = self
                .request_with(&self.stream_agent, endpoint, path)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send(body.to_string())
                .map_err(|e| self.transport_failure(endpoint, e))?;
            if response.status() != 200 {
                let mut response = response;
                let text = response.body_mut().read_to_string().unwrap_or_default();
                return Err(self.status_failure(&text, "watching the lock"));
            }
            Ok(response.into_body().into_reader())
        });
        match opened {
            Ok(reader) => Ok(Messages {
                inner: Box::new(
                    serde_json::Deserializer::from_reader(BufReader::new(reader))
                        .into_iter::<Value>(),
                ),
            }),
            Err(Failure::Next(error) | Failure::Final(error)) => Err(error),
            Err(Failure::Token) => Err(self.needs_user()),
        }
    }

    /// Runs `attempt` on each member, from the one that answered last,
    /// until one serves; the last failure if none does.
    fn each_member<T>(
        &self,
        mut attempt: impl FnMut(&str) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let count = self.target.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % count;
        let mut last = None;
        for step in 0..count {
            let index = (first + step) % count;
            match attempt(&self.target.endpoints[index]) {
                Ok(value) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                // What says most about the cluster wins: a member without
                // a leader over a TLS mismatch over one not reached.
                Err(Failure::Next(error)) => {
                    if last.as_ref().is_none_or(|l| weight(&error) >= weight(l)) {
                        last = Some(error);
                    }
                }
                Err(other) => return Err(other),
            }
        }
        Err(Failure::Next(
            last.expect("a target has at least one endpoint"),
        ))
    }

    fn request(
        &self,
        endpoint: &str,
        path: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        self.request_with(&self.agent, endpoint, path)
    }

    fn request_with(
        &self,
        agent: &ureq::Agent,
        endpoint: &str,
        path: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let scheme = if self.target.tls { "https" } else { "http" };
        let mut request = agent
            .post(format!("{scheme}://{endpoint}{path}"))
            .content_type("application/json");
        if let Some(token) = self
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            request = request.header("Authorization", token);
        }
        request
    }

    fn post(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        what: &'static str,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let mut response = self
            .request(endpoint, path)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body.to_string())
            .map_err(|e| self.transport_failure(endpoint, e))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_failure(endpoint, e))?;
        if status != 200 {
            return Err(self.status_failure(&text, what));
        }
        let reply: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::Final(self.failed(what, format!("an answer that is not JSON ({e})")))
        })?;
        // A streamed call (lease keepalive) wraps its one answer.
        if let Some(error) = reply.get("error") {
            return Err(self.status_failure(&error.to_string(), what));
        }
        Ok(reply.get("result").cloned().unwrap_or(reply))
    }

    fn transport_failure(&self, endpoint: &str, error: ureq::Error) -> Failure {
        let cluster = self.cluster().to_owned();
        match error {
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
                Failure::Final(EtcdError::Tls {
                    cluster,
                    cause: error.to_string(),
                })
            }
            ureq::Error::Io(e)
                if self.target.tls && e.kind() == std::io::ErrorKind::InvalidData =>
            {
                Failure::Final(EtcdError::Tls {
                    cluster,
                    cause: e.to_string(),
                })
            }
            // Connected, then closed without an answer: a TLS member that
            // wants TLS or a client certificate does that. Another member
            // may still serve; if none does, this is the error.
            ureq::Error::Io(e) if closed_unanswered(&e) => Failure::Next(EtcdError::Tls {
                cluster,
                cause: if self.target.tls {
                    format!(
                        "the member closed the connection ({e}): it may demand a client \
                         certificate (give ?cert=PATH&key=PATH)"
                    )
                } else {
                    format!(
                        "the member closed the connection without an answer ({e}): if the \
                         cluster serves TLS, use etcds://"
                    )
                },
            }),
            ureq::Error::Timeout(_) if self.has_no_leader(endpoint) => {
                Failure::Next(EtcdError::NoQuorum {
                    cluster,
                    cause: format!("{endpoint} answers but has no leader"),
                })
            }
            ureq::Error::Timeout(_) => Failure::Next(EtcdError::Unreachable {
                cluster,
                cause: format!("no answer from {endpoint} in time"),
            }),
            other => Failure::Next(EtcdError::Unreachable {
                cluster,
                cause: other.to_string(),
            }),
        }
    }

    /// After a call timed out: true when `endpoint` still answers a status
    /// request (served without a leader) and says it knows no leader.
    /// Asked directly, not through [`Client::post`]: a status request that
    /// times out too must not ask again, or a silent member (a partition)
    /// would keep the caller asking forever, and a holder's keepalive would
    /// never notice the loss.
    fn has_no_leader(&self, endpoint: &str) -> bool {
        let Ok(mut response) = self
            .request(endpoint, "/v3/maintenance/status")
            .config()
            .timeout_global(Some(STATUS_TIMEOUT))
            .build()
            .send("{}")
        else {
            return false;
        };
        let Ok(text) = response.body_mut().read_to_string() else {
            return false;
        };
        serde_json::from_str::<Value>(&text).is_ok_and(|status| int(&status["leader"]) == 0)
    }

    /// A gateway error (`{"error": ..., "code": N, "message": ...}`) or
    /// something else that is not an answer.
    fn status_failure(&self, text: &str, what: &'static str) -> Failure {
        let cluster = self.cluster().to_owned();
        let Ok(error) = serde_json::from_str::<Value>(text) else {
            if text.contains("HTTPS server") {
                return Failure::Final(EtcdError::Tls {
                    cluster,
                    cause: "the cluster serves TLS".into(),
                });
            }
            return Failure::Final(self.failed(what, first_line(text)));
        };
        let code = int(&error["code"]);
        let message = error["message"]
            .as_str()
            .or(error["error"].as_str())
            .unwrap_or_default()
            .to_owned();
        match code {
            GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED => Failure::Next(EtcdError::NoQuorum {
                cluster,
                cause: message,
            }),
            GRPC_UNAUTHENTICATED => Failure::Token,
            GRPC_INVALID_ARGUMENT if message.contains("user name is empty") => Failure::Token,
            GRPC_INVALID_ARGUMENT if message.contains("invalid auth token") => Failure::Token,
            GRPC_PERMISSION_DENIED => Failure::Final(EtcdError::PermissionDenied {
                cluster,
                what,
                prefix: self.target.key_space(),
            }),
            _ => Failure::Final(self.failed(what, message)),
        }
    }

    fn failed(&self, what: &'static str, cause: String) -> EtcdError {
        EtcdError::Failed {
            cluster: self.cluster().to_owned(),
            what,
            cause: crate::escape::text(&cause),
        }
    }

    fn needs_user(&self) -> EtcdError {
        EtcdError::NeedsUser {
            cluster: self.cluster().to_owned(),
        }
    }

    /// Gets a token for the URL's user, if it names one.
    fn authenticate(&self) -> Result<(), EtcdError> {
        let (Some(user), Some(password)) = (&self.target.user, &self.target.password) else {
            return Ok(());
        };
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let body = json!({"name": user, "password": password.0});
        let answer = self.each_member(|endpoint| {
            self.post(
                endpoint,
                "/v3/auth/authenticate",
                &body,
                "logging in",
                CALL_TIMEOUT,
            )
        });
        let reply = match answer {
            Ok(reply) => reply,
            Err(Failure::Final(EtcdError::Failed { cause, .. }))
                if cause.contains("authentication is not enabled") =>
            {
                // A cluster without auth takes every client: no token.
                return Ok(());
            }
            Err(Failure::Final(EtcdError::Failed { cause, .. }))
                if cause.contains("authentication failed") =>
            {
                return Err(EtcdError::BadCredentials {
                    cluster: self.cluster().to_owned(),
                    user: crate::escape::text(user),
                });
            }
            Err(Failure::Next(error) | Failure::Final(error)) => return Err(error),
            Err(Failure::Token) => return Err(self.needs_user()),
        };
        let token = reply["token"].as_str().map(str::to_owned);
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = token;
        Ok(())
    }
}

/// The messages of a stream ([`Client::stream`]).
pub(crate) struct Messages {
    inner: Box<dyn Iterator<Item = serde_json::Result<Value>> + Send>,
}

impl Messages {
    /// The next message; Err when the stream broke or timed out, None
    /// when it ended.
    pub(crate) fn next_message(&mut self) -> Option<Result<Value, String>> {
        self.inner.next().map(|m| m.map_err(|e| e.to_string()))
    }
}

/// A key or value as the gateway carries it: base64.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// A key or value from base64; empty if it is not.
pub(crate) fn unb64(value: &Value) -> Vec<u8> {
    value
        .as_str()
        .and_then(|s| STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// The end of the range of every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return b64(end);
        }
    }
    // All 0xff: every key after it (etcd's "\0").
    b64([0])
}

/// A 64-bit integer as the gateway writes it: a string, or missing for 0.
pub(crate) fn int(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// How much a member's failure says about the cluster.
fn weight(error: &EtcdError) -> u8 {
    match error {
        EtcdError::NoQuorum { .. } => 2,
        EtcdError::Tls { .. } => 1,
        _ => 0,
    }
}

/// An I/O error of a connection the member closed or reset.
fn closed_unanswered(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        error.kind(),
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    ) || error.to_string().contains("Peer disconnected")
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("an empty answer").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_cover_the_prefix() {
        assert_eq!(prefix_end("a/"), b64("a0"));
        assert_eq!(STANDARD.decode(prefix_end("x\u{7f}")).unwrap(), b"x\x80");
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(int(&Value::Null), 0);
        assert_eq!(unb64(&json!(b64("hi"))), b"hi");
    }
}
