//! swarm-upgrade's own tooling, not shipped: the lab (a real swarm on one machine, five nodes unless asked, an
//! apt repository shaped like Docker's, a balancer), the load generator, the naive baseline and the
//! demo. `cargo xtask --help` lists the commands.

pub mod balancer;
pub mod cache;
pub mod cost;
pub mod debian;
pub mod demo;
pub mod engine;
pub mod fleet;
pub mod host;
pub mod http;
pub mod images;
pub mod lab;
pub mod load;
pub mod naive;
pub mod prometheus;
pub mod repo;
pub mod scenario;
mod slots;
pub mod topology;
pub mod web;
pub mod workload;
