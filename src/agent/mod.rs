//! The node agent: its gRPC service (authorized, fenced, idempotent) over a node backend; the
//! real host backend (`host`) and the `swarm-upgrade agent` command (`run`). The protocol and
//! the TLS identity are [`crate::wire`]'s.

pub mod backup;
mod durable;
pub mod error;
pub mod hooks;
pub mod host;
mod mask;
mod restarted;
pub mod run;
pub mod service;

use serde::{Deserialize, Serialize};

/// Refuses orders carrying a fencing token older than the newest one seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    highest: u64,
}

/// How far above the newest token seen an order's token may be. Tokens grow by one per lock
/// taken (a run, a resume), so a real jump this large means a bug or a hostile caller, whose one
/// order would otherwise make every real coordinator stale from then on.
pub const MAX_TOKEN_STEP: u64 = 10_000;

/// Why an order's fencing token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    /// An order from a coordinator that has lost the lock.
    #[error(
        "stale fencing token {got}: a coordinator holding token {highest} has taken over; this order is refused"
    )]
    Stale {
        /// The order's token.
        got: u64,
        /// The newest token seen.
        highest: u64,
    },
    /// A token implausibly far ahead.
    #[error(
        "fencing token {got} is more than {MAX_TOKEN_STEP} above the newest this agent has seen ({highest}): refused as implausible; if the swarm's lock really moved that far, remove the agent's fence.json (agent.state_dir) on this node"
    )]
    TooFar {
        /// The order's token.
        got: u64,
        /// The newest token seen.
        highest: u64,
    },
}

impl Fence {
    /// Admits an order with `token` (remembering it), or refuses it as stale or implausible. An
    /// agent that has seen no token yet admits any.
    pub fn admit(&mut self, token: u64) -> Result<(), FenceError> {
        let highest = self.highest;
        if token < highest {
            return Err(FenceError::Stale { got: token, highest });
        }
        if highest > 0 && token - highest > MAX_TOKEN_STEP {
            return Err(FenceError::TooFar { got: token, highest });
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
        assert_eq!(e, FenceError::Stale { got: 3, highest: 4 });
        assert!(e.to_string().contains("refused"));
    }

    #[test]
    fn a_token_cannot_jump_arbitrarily_far() {
        let mut f = Fence::default();
        assert!(f.admit(u64::MAX / 2).is_ok(), "a fresh agent has nothing to compare with");
        let mut f = Fence::default();
        f.admit(7).unwrap();
        assert!(f.admit(7 + MAX_TOKEN_STEP).is_ok());
        let e = f.admit(u64::MAX).unwrap_err();
        assert_eq!(e, FenceError::TooFar { got: u64::MAX, highest: 7 + MAX_TOKEN_STEP });
        assert!(e.to_string().contains("fence.json"), "{e}");
        assert!(f.admit(7 + 2 * MAX_TOKEN_STEP).is_ok(), "the refused token was not remembered");
    }
}
