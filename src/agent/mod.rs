//! The node agent: its gRPC service (authorized, fenced, idempotent) over a node backend; the
//! real host backend (`host`) and the `swarm-upgrade agent` command (`run`). The protocol and
//! the TLS identity are [`crate::wire`]'s.

pub mod error;
pub mod host;
pub mod run;
pub mod service;

use serde::{Deserialize, Serialize};

/// Refuses orders carrying a fencing token older than the newest one seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    highest: u64,
}

/// An order from a coordinator that has lost the lock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "stale fencing token {got}: a coordinator holding token {highest} has taken over; this order is refused"
)]
pub struct StaleToken {
    /// The order's token.
    pub got: u64,
    /// The newest token seen.
    pub highest: u64,
}

impl Fence {
    /// Admits an order with `token` (remembering it), or refuses it as stale.
    pub fn admit(&mut self, token: u64) -> Result<(), StaleToken> {
        if token < self.highest {
            return Err(StaleToken { got: token, highest: self.highest });
        }
        self.highest = token;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_and_equal_tokens_pass_older_ones_are_refused() {
        let mut f = Fence::default();
        assert!(f.admit(3).is_ok());
        assert!(f.admit(3).is_ok(), "a retry of the same order is fine");
        assert!(f.admit(4).is_ok());
        let e = f.admit(3).unwrap_err();
        assert_eq!(e, StaleToken { got: 3, highest: 4 });
        assert!(e.to_string().contains("refused"));
    }
}
