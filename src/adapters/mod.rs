//! Adapters: the ports implemented over real things. Each converts foreign models into the
//! project's own types at its edge.

pub mod agent_client;
pub mod apt;
pub mod docker;
pub mod engine;
pub mod prometheus;
pub mod systemd;
pub mod webhook;
