//! apt and dpkg, run as subprocesses with machine-readable output (no libapt-pkg bindings, which
//! would tie the package to one Debian release's libapt-pkg). The runner that executes these
//! through duct (`runner`) is blocking; the agent calls it for its reports and, for
//! installs, inside a transient unit (`command::in_transient_unit`).

pub mod command;
pub mod parse;
pub mod runner;

#[cfg(test)]
mod target_tests;
