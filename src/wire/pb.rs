//! The generated gRPC messages, client and server (proto/agent.proto).
#![allow(missing_docs, clippy::all)]

tonic::include_proto!("swarm_upgrade.agent.v1");
