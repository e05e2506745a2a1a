//! The cluster-wide lock, as pure rules over the document kept in the swarm's Raft store.
//!
//! The store offers compare-and-swap on a version index ([`crate::ports::StateStore`]); these rules
//! say what a holder may write. The fencing token grows with every acquisition and is never reused,
//! so agents can refuse orders from a coordinator that lost the lock.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::DebVersion;
use crate::run::RunRecord;

/// The lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Who holds it (`hostname/pid`).
    pub holder: String,
    /// The run it protects.
    pub run_id: String,
    /// Monotonic fencing token.
    pub token: u64,
    /// When it was taken.
    pub acquired_at: Timestamp,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
    /// The run's target.
    pub target: DebVersion,
}

/// The layout of the store document this build reads and writes. 1: the first layout, which
/// had no `schema` key; 2: the key added, and the optional `halt` of a finished run.
pub const SCHEMA: u32 = 2;

/// Everything swarm-upgrade keeps in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreDoc {
    /// The document's layout ([`SCHEMA`] once written by this build).
    pub schema: u32,
    /// The lock, if held (possibly expired).
    pub lock: Option<Lock>,
    /// The last fencing token ever issued.
    pub last_token: u64,
    /// The current or last run.
    pub run: Option<RunRecord>,
}

impl Default for StoreDoc {
    fn default() -> Self {
        StoreDoc { schema: SCHEMA, lock: None, last_token: 0, run: None }
    }
}

/// A stored document this build cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A newer swarm-upgrade wrote it: overwriting it would lose what that one keeps.
    #[error(
        "the stored state has layout {found}, newer than this swarm-upgrade's {SCHEMA}: a newer swarm-upgrade wrote it; upgrade the swarm-upgrade package on this manager to run or resume from here"
    )]
    Newer {
        /// The document's layout.
        found: u32,
    },
    /// Not a document of ours.
    #[error("not swarm-upgrade's state: {0}")]
    Malformed(String),
}

impl StoreDoc {
    /// Reads a stored document of any layout up to [`SCHEMA`], upgraded to this one.
    pub fn from_json(text: &str) -> Result<StoreDoc, SchemaError> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SchemaError::Malformed(e.to_string()))?;
        let object =
            value.as_object_mut().ok_or_else(|| SchemaError::Malformed("not an object".into()))?;
        let found = match object.get("schema") {
            None => 1,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| SchemaError::Malformed(format!("schema {v} is not a number")))?,
        };
        if found > SCHEMA {
            return Err(SchemaError::Newer { found });
        }
        if found == 0 {
            return Err(SchemaError::Malformed("schema 0 is no layout".into()));
        }
        // 1 -> 2: the key is new, and `halt` is optional. Later layouts add their steps here,
        // oldest first.
        object.insert("schema".into(), SCHEMA.into());
        serde_json::from_value(value).map_err(|e| SchemaError::Malformed(e.to_string()))
    }
}

/// Why a lock operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Someone else holds an unexpired lock.
    #[error(
        "locked by {holder} since {since} (run {run_id}, lease until {until}); wait for it, or if that coordinator is gone for good, `swarm-upgrade unlock --force`"
    )]
    Held {
        /// The holder.
        holder: String,
        /// Run ID.
        run_id: String,
        /// Acquired at.
        since: Timestamp,
        /// Lease end.
        until: Timestamp,
    },
    /// The caller's token is no longer the lock's.
    #[error(
        "the lock was lost (our fencing token {ours} is not the current one); another coordinator may have taken over: stop and check `swarm-upgrade status`"
    )]
    Lost {
        /// The caller's token.
        ours: u64,
    },
}

/// How much earlier than its expiry a holder stops trusting its lease (clock skew between managers).
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

impl Lock {
    /// Whether the lease has run out at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Whether its holder may still act at `now` (the lease minus the margin).
    pub fn usable(&self, now: Timestamp) -> bool {
        plus(now, LEASE_MARGIN) < self.expires_at
    }
}

impl StoreDoc {
    /// Takes the lock if free or expired; returns the new fencing token. A lock this same holder
    /// already took for this run (its write landed but the answer was lost in a leader election,
    /// and the write is being retried) is returned as it is.
    pub fn acquire(
        &mut self,
        holder: &str,
        run_id: &str,
        target: &DebVersion,
        lease: Duration,
        now: Timestamp,
    ) -> Result<u64, LockError> {
        if let Some(l) = self
            .lock
            .as_ref()
            .filter(|l| l.holder == holder && l.run_id == run_id && !l.expired(now))
        {
            return Ok(l.token);
        }
        self.check_free(now)?;
        let token = self.last_token + 1;
        self.last_token = token;
        self.lock = Some(Lock {
            holder: holder.to_string(),
            run_id: run_id.to_string(),
            token,
            acquired_at: now,
            expires_at: plus(now, lease),
            target: target.clone(),
        });
        Ok(token)
    }

    /// Refuses when someone holds an unexpired lock (what `acquire` checks first).
    pub(crate) fn check_free(&self, now: Timestamp) -> Result<(), LockError> {
        match &self.lock {
            Some(l) if !l.expired(now) => Err(LockError::Held {
                holder: l.holder.clone(),
                run_id: l.run_id.clone(),
                since: l.acquired_at,
                until: l.expires_at,
            }),
            _ => Ok(()),
        }
    }

    /// Checks that `token` still holds the lock.
    pub fn check(&self, token: u64, now: Timestamp) -> Result<&Lock, LockError> {
        match &self.lock {
            Some(l) if l.token == token && !l.expired(now) => Ok(l),
            _ => Err(LockError::Lost { ours: token }),
        }
    }

    /// Extends the lease of the holder of `token`.
    pub fn renew(&mut self, token: u64, lease: Duration, now: Timestamp) -> Result<(), LockError> {
        self.check(token, now)?;
        let l = self.lock.as_mut().expect("checked above");
        l.expires_at = plus(now, lease);
        Ok(())
    }

    /// Releases the lock held with `token`; releasing a lock already gone is fine.
    pub fn release(&mut self, token: u64) {
        if self.lock.as_ref().is_some_and(|l| l.token == token) {
            self.lock = None;
        }
    }

    /// Breaks any lock (operator's `unlock --force`); returns what was broken. The token counter stays.
    pub(crate) fn break_lock(&mut self) -> Option<Lock> {
        self.lock.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_of_the_first_layout_is_read_and_upgraded() {
        let v1 = include_str!("../tests/fixtures/store/v1-interrupted.json");
        assert!(!v1.contains("schema"), "the fixture is of layout 1");
        let doc = StoreDoc::from_json(v1).unwrap();
        assert_eq!(doc.schema, SCHEMA);
        assert_eq!(doc.lock.as_ref().map(|l| l.token), Some(1));
        let run = doc.run.as_ref().unwrap();
        assert_eq!((run.nodes.len(), run.nodes[0].phase), (5, crate::machine::Phase::Done));
        let again = serde_json::to_string(&doc).unwrap();
        assert_eq!(StoreDoc::from_json(&again).unwrap(), doc, "written back, it reads the same");
    }

    #[test]
    fn a_newer_layout_or_a_foreign_document_is_refused() {
        let newer =
            format!(r#"{{"schema": {}, "lock": null, "last_token": 3, "run": null}}"#, SCHEMA + 1);
        assert_eq!(StoreDoc::from_json(&newer), Err(SchemaError::Newer { found: SCHEMA + 1 }));
        assert!(
            StoreDoc::from_json(&newer)
                .unwrap_err()
                .to_string()
                .contains("upgrade the swarm-upgrade package")
        );
        assert!(matches!(StoreDoc::from_json("[1]"), Err(SchemaError::Malformed(_))));
        assert!(matches!(
            StoreDoc::from_json(r#"{"schema": "two"}"#),
            Err(SchemaError::Malformed(_))
        ));
        assert_eq!(StoreDoc::default().schema, SCHEMA, "a new document is written in this layout");
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn v() -> DebVersion {
        "5:28.5.2-1~debian.13~trixie".parse().unwrap()
    }

    #[test]
    fn held_lock_refuses_and_names_its_holder() {
        let mut d = StoreDoc::default();
        assert_eq!(d.acquire("manager1/10", "r1", &v(), Duration::from_secs(60), t(0)), Ok(1));
        let e = d.acquire("manager2/20", "r2", &v(), Duration::from_secs(60), t(30)).unwrap_err();
        assert!(e.to_string().starts_with("locked by manager1/10 since "), "{e}");
    }

    #[test]
    fn a_retried_acquire_by_the_same_holder_gets_the_same_token() {
        let mut d = StoreDoc::default();
        assert_eq!(d.acquire("manager1/10", "r1", &v(), Duration::from_secs(60), t(0)), Ok(1));
        assert_eq!(d.acquire("manager1/10", "r1", &v(), Duration::from_secs(60), t(1)), Ok(1));
        assert!(
            d.acquire("manager1/10", "r2", &v(), Duration::from_secs(60), t(1)).is_err(),
            "another run of the same process"
        );
        assert!(
            d.acquire("manager1/11", "r1", &v(), Duration::from_secs(60), t(1)).is_err(),
            "another process"
        );
        assert_eq!(
            d.acquire("manager1/10", "r1", &v(), Duration::from_secs(60), t(60)),
            Ok(2),
            "expired: a new token"
        );
    }

    #[test]
    fn take_over_after_expiry_gets_a_new_token() {
        let mut d = StoreDoc::default();
        d.acquire("a", "r1", &v(), Duration::from_secs(60), t(0)).unwrap();
        assert_eq!(d.acquire("b", "r1", &v(), Duration::from_secs(60), t(60)), Ok(2));
        assert_eq!(d.renew(1, Duration::from_secs(60), t(61)), Err(LockError::Lost { ours: 1 }));
        assert!(d.renew(2, Duration::from_secs(60), t(61)).is_ok());
        assert_eq!(d.lock.as_ref().unwrap().expires_at, t(121));
    }

    #[test]
    fn tokens_are_never_reused_after_release_or_break() {
        let mut d = StoreDoc::default();
        let a = d.acquire("a", "r1", &v(), Duration::from_secs(60), t(0)).unwrap();
        d.release(a);
        let b = d.acquire("b", "r2", &v(), Duration::from_secs(60), t(1)).unwrap();
        assert!(d.break_lock().is_some());
        let c = d.acquire("c", "r3", &v(), Duration::from_secs(60), t(2)).unwrap();
        assert!(a < b && b < c);
        d.release(b);
        assert!(d.lock.is_some(), "a stale token cannot release the current lock");
    }

    #[test]
    fn lease_is_unusable_within_the_margin() {
        let mut d = StoreDoc::default();
        d.acquire("a", "r", &v(), Duration::from_secs(60), t(0)).unwrap();
        let l = d.lock.as_ref().unwrap();
        assert!(l.usable(t(54)));
        assert!(!l.usable(t(55)));
        assert!(!l.expired(t(59)));
        assert!(l.expired(t(60)));
    }
}
