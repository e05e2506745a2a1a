//! What can go wrong with an order on a node, as the coordinator must treat it, and how each kind
//! crosses the wire: its own gRPC code, and its kind in the `swarm-upgrade-error` metadata so the
//! client gets back exactly what the agent said (a transport failure has no such metadata).

use tonic::{Code, Status};

/// The metadata key that carries a [`NodeError`]'s kind.
pub(crate) const KIND_KEY: &str = "swarm-upgrade-error";

/// An order's failure on a node, by what the coordinator must do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// Something on the node is busy (apt's lock held by another apt): the order did not get
    /// through; the same order, repeated later, is carried out again (orders are exact and
    /// idempotent).
    #[error("busy: {0}")]
    Busy(String),
    /// The order was carried out and failed (a broken package, an engine that does not start):
    /// retrying will not help; the node is rolled back or the run halts.
    #[error("{0}")]
    Failed(String),
    /// The order itself is wrong (a version apt cannot take, a missing fence): a bad input or a
    /// bug; nothing was done.
    #[error("invalid order: {0}")]
    Invalid(String),
    /// The order's fencing token is older than the newest one seen: its coordinator has lost the
    /// lock and must stop.
    #[error("{0}")]
    Stale(String),
    /// The caller is not a manager of this node's swarm.
    #[error("{0}")]
    Unauthorized(String),
}

impl NodeError {
    /// The kind as a short name: a metric label and the wire's metadata value.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Busy(_) => "busy",
            NodeError::Failed(_) => "failed",
            NodeError::Invalid(_) => "invalid",
            NodeError::Stale(_) => "stale",
            NodeError::Unauthorized(_) => "unauthorized",
        }
    }

    fn code(&self) -> Code {
        match self {
            NodeError::Busy(_) => Code::Unavailable,
            NodeError::Failed(_) => Code::Aborted,
            NodeError::Invalid(_) => Code::InvalidArgument,
            NodeError::Stale(_) => Code::FailedPrecondition,
            NodeError::Unauthorized(_) => Code::PermissionDenied,
        }
    }

    /// The error as the client reads it back from a status, when the status is one (`None`: a
    /// transport failure, or an agent that names no kind).
    pub(crate) fn from_status(status: &Status) -> Option<NodeError> {
        let kind = status.metadata().get(KIND_KEY)?.to_str().ok()?;
        let text = status.message().to_string();
        Some(match kind {
            "busy" => NodeError::Busy(text),
            "failed" => NodeError::Failed(text),
            "invalid" => NodeError::Invalid(text),
            "stale" => NodeError::Stale(text),
            "unauthorized" => NodeError::Unauthorized(text),
            _ => return None,
        })
    }

    /// The words without the kind's prefix (what goes into a status message).
    fn text(&self) -> &str {
        match self {
            NodeError::Busy(t)
            | NodeError::Failed(t)
            | NodeError::Invalid(t)
            | NodeError::Stale(t)
            | NodeError::Unauthorized(t) => t,
        }
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let mut status = Status::new(e.code(), e.text());
        status
            .metadata_mut()
            .insert(KIND_KEY, tonic::metadata::MetadataValue::from_static(e.kind()));
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code_and_comes_back_whole() {
        let all = [
            NodeError::Busy("apt's lock".into()),
            NodeError::Failed("broken".into()),
            NodeError::Invalid("bad version".into()),
            NodeError::Stale("token 3".into()),
            NodeError::Unauthorized("a worker".into()),
        ];
        let codes: std::collections::BTreeSet<i32> = all.iter().map(|e| e.code() as i32).collect();
        assert_eq!(codes.len(), all.len(), "distinct codes");
        for e in all {
            let status = Status::from(e.clone());
            assert_eq!(NodeError::from_status(&status), Some(e));
        }
        assert_eq!(
            NodeError::from_status(&Status::unavailable("connection refused")),
            None,
            "a transport failure names no kind"
        );
    }
}
