//! The agent protocol, shared by the agent and the coordinator's client: the generated gRPC
//! messages ([`pb`]), their conversions into our own types ([`convert`]), the kinds of failure an
//! order can meet ([`error`]), the caller's deadline ([`deadline`]), which swarm a join token
//! leads into ([`join`]), and the TLS identity
//! both sides present ([`tls`], read from the swarm's node certificates, decrypted with the unlock
//! key when the swarm is autolocked ([`locked`]); [`auth`] says who a certificate names).

pub mod auth;
pub mod convert;
pub mod deadline;
pub mod error;
pub mod join;
pub mod locked;
pub mod pb;
pub mod tls;
