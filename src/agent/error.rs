//! Why the agent could not start, or stopped serving: each says what to do.

use crate::wire::auth::AuthError;

/// Why the agent could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The fencing record is not one: guessing 0 would undo fencing.
    #[error("{path}: not a fence record ({why}); remove it only if no run is in progress")]
    FenceRecord {
        /// The file.
        path: String,
        /// What the parser said.
        why: String,
    },
    /// A file or directory of the agent's state cannot be read or made.
    #[error("cannot {what} {path}: {why} (agent.state_dir)")]
    State {
        /// `read` or `create`.
        what: &'static str,
        /// The file or directory.
        path: String,
        /// The system's words.
        why: String,
    },
    /// The node's TLS material.
    #[error(transparent)]
    Tls(#[from] AuthError),
    /// The local engine's swarm state (plaintext mode reads the node's identity from it).
    #[error("cannot read the local engine's swarm state: {0}")]
    Engine(String),
    /// The agent's address is not this node's, or its port is taken or not allowed.
    #[error(
        "cannot listen on {addr}: {why}; is another agent running, or is agent.listen not an address of this node? (agent.listen, agent.port)"
    )]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The system's words.
        why: String,
    },
    /// The gRPC server stopped with an error.
    #[error("the agent's server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

impl AgentError {
    /// A listen failure on `addr`.
    pub(crate) fn listen(addr: std::net::SocketAddr, e: std::io::Error) -> Self {
        AgentError::Listen { addr, why: e.to_string() }
    }
}
