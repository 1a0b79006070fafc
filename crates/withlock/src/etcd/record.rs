//! The holder record: the value of a withlock key, JSON, which every
//! client that may read the lock's keys can read:
//!
//! ```json
//! {"withlock":1,"pid":4711,"user":"alice","host":"ci-3","since":1718013784123,
//!  "command":["./deploy","two words"],"mode":"exclusive","max":null,
//!  "deadline":null,"slot":null}
//! ```
//!
//! `since` is milliseconds since the epoch on the holder's clock (when it
//! asked, or once granted after waiting, when it was granted); `max` is N
//! for a `--max N` request; `deadline`, in the same unit, when its
//! `--time-limit` runs out; `slot` the place (0 to N-1) a `--max N`
//! holder claimed. Nothing in it is a secret: no URL, no
//! password, no environment. Everything is what the client declares: any
//! etcd user that may write the lock's keys can declare anything (etcd's
//! permissions say who can).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::etcd::client::{Client, b64};
use crate::etcd::error::EtcdError;
use crate::etcd::lease::Lease;
use crate::holder::Holder;
use crate::request::Mode;

/// What a withlock key's value says about its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The client's process id, on its own machine.
    pub pid: i32,
    /// The client's user name.
    pub user: String,
    /// The client's host name.
    pub host: String,
    /// When it asked, or was granted after waiting.
    pub since: SystemTime,
    /// The command it runs under the lock, every argument whole.
    pub command: Vec<String>,
    /// How it takes the lock.
    pub mode: Mode,
    /// N for a `--max N` request.
    pub max: Option<u32>,
    /// When its time limit (`--time-limit`) runs out, if it announced one.
    pub deadline: Option<SystemTime>,
    /// Which of the N places of `--max N` it holds, once it claimed one.
    pub slot: Option<u32>,
}

impl Record {
    /// This process, about to run `command`.
    pub fn this_process(command: Vec<String>, mode: Mode, max: Option<u32>) -> Record {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        Record {
            pid: std::process::id() as i32,
            user: crate::ownership::user_name(uid),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "?".to_owned()),
            since: SystemTime::now(),
            command,
            mode,
            max,
            deadline: None,
            slot: None,
        }
    }

    /// The same record, granted now: `since` is this moment.
    pub fn granted_now(&self) -> Record {
        Record {
            since: SystemTime::now(),
            ..self.clone()
        }
    }

    /// The value to write.
    pub fn to_json(&self) -> String {
        json!({
            "withlock": 1,
            "pid": self.pid,
            "user": self.user,
            "host": self.host,
            "since": millis(self.since),
            "command": self.command,
            "mode": self.mode.to_string(),
            "max": self.max,
            "deadline": self.deadline.map(millis),
            "slot": self.slot,
        })
        .to_string()
    }

    /// A key's value read back; None for a value that is not withlock's
    /// (an `etcdctl lock` key has an empty one).
    pub fn parse(value: &[u8]) -> Option<Record> {
        let value: Value = serde_json::from_slice(value).ok()?;
        if value.get("withlock")?.as_i64()? != 1 {
            return None;
        }
        let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Record {
            pid: value.get("pid")?.as_i64()?.try_into().ok()?,
            user: text("user")?,
            host: text("host")?,
            since: UNIX_EPOCH + Duration::from_millis(value.get("since")?.as_u64()?),
            command: value
                .get("command")?
                .as_array()?
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
            mode: match value.get("mode")?.as_str()? {
                "shared" => Mode::Shared,
                _ => Mode::Exclusive,
            },
            max: value
                .get("max")
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok()),
            deadline: value
                .get("deadline")
                .and_then(Value::as_u64)
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
            slot: value
                .get("slot")
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok()),
        })
    }

    /// The generic view of the client, for messages and listings.
    pub fn to_holder(&self) -> Holder {
        Holder {
            pid: self.pid,
            mode: self.mode,
            uid: None,
            user: Some(self.user.clone()),
            host: Some(self.host.clone()),
            command: Some(self.command.iter().map(|a| a.as_bytes().to_vec()).collect()),
            command_truncated: false,
            session: None,
            max: self.max.is_some(),
            slot: self.slot,
            deadline: self.deadline,
            since: Some(self.since),
            started: None,
            running: true,
        }
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

impl Record {
    /// Writes this record as the value of `key`, with `lease`.
    pub(crate) fn put(
        &self,
        client: &Client,
        key: &str,
        lease: &Lease,
        what: &'static str,
    ) -> Result<(), EtcdError> {
        let put = json!({"key": b64(key), "value": b64(self.to_json()),
                         "lease": lease.id().to_string()});
        client.call("/v3/kv/put", &put, what).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_wrote_and_nothing_else() {
        let mut record = Record::this_process(
            vec!["sh".into(), "-c".into(), "echo 'a b' ".repeat(20)],
            Mode::Shared,
            Some(3),
        );
        record.since = UNIX_EPOCH + Duration::from_millis(1_718_013_784_123);
        record.deadline = Some(record.since + Duration::from_secs(60));
        record.slot = Some(2);
        let back = Record::parse(record.to_json().as_bytes()).unwrap();
        assert_eq!(back, record);
        let holder = back.to_holder();
        assert!(holder.max && holder.mode == Mode::Shared);
        assert_eq!(
            holder.command_line().unwrap(),
            record.to_holder().command_line().unwrap()
        );
        for foreign in [
            &b""[..],
            b"x",
            b"{}",
            br#"{"withlock":2}"#,
            br#"{"withlock":1}"#,
        ] {
            assert_eq!(Record::parse(foreign), None);
        }
    }
}
