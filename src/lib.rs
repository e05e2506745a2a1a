//! swarm-upgrade: upgrades the Docker Engine on every node of a Docker Swarm, one node at a time,
//! with zero downtime for the services running on it.
//!
//! Dependency direction: the binary calls [`cli`], which drives the [`coordinator`] (or the
//! [`agent`]); the coordinator decides with the pure [`planner`], [`machine`], [`lock`] and [`run`]
//! modules and acts through the small traits in [`ports`], which adapters implement. The pure
//! modules and [`model`] import no runtime, Docker, D-Bus, process or gRPC crate.
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
pub mod telemetry;
