//! The domain model: this project's own types for versions, packages and the observed cluster.
//! Nothing here knows about Docker's API models, gRPC or any runtime.

pub mod alerts;
pub mod cluster;
pub mod constraint;
pub mod convergence;
pub mod hooks;
pub mod packages;
pub mod plan;
pub mod report;
pub mod run_id;
pub mod scope;
pub mod swarm_backup;
pub mod target;
pub mod unlock_key;
pub mod version;

pub use cluster::*;
pub use packages::{PackageSet, is_package_name};
pub use report::*;
pub use run_id::{RunIdError, check_run_id, new_run_id};
pub use target::{Target, TargetError};
pub use unlock_key::{UnlockKey, UnlockKeyError};
pub use version::{DebVersion, EngineVersion, VersionError};

#[cfg(test)]
pub(crate) mod testing;
