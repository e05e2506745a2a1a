//! swarm-upgrade: upgrades the Docker Engine on every node of a Docker Swarm, one node at a time,
//! with zero downtime for the services running on it.
//!
//! Layers, lowest first (a module imports only from layers below its own; `tests/layers.rs`
//! fails on an upward import or a cycle): [`model`] (domain types, the plan's shapes included) ←
//! [`config`] ← the pure decisions [`planner`] ← [`machine`] ← [`run`] ← [`lock`] ← the seams
//! ([`ports`]) and plain services ([`report`], [`events`], [`metrics`], [`journal`],
//! [`sd_notify`]) ← [`telemetry`] and the agent protocol ([`wire`]) ← [`adapters`] ← the
//! [`coordinator`] and the [`agent`] ← [`cli`]. The pure modules and [`model`] import no runtime,
//! Docker, D-Bus, process or gRPC crate.
#![deny(missing_docs)]

pub mod adapters;
pub mod agent;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod events;
pub mod journal;
pub mod lock;
pub mod machine;
pub mod metrics;
pub mod model;
pub mod planner;
pub mod ports;
pub mod report;
pub mod run;
pub mod sd_notify;
pub mod store_layout;
pub mod telemetry;
pub mod wire;
