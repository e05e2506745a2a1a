//! The plugins Docker's repository ships beside the engine, as small stand-ins with the same
//! names, versions and dependencies: `docker-buildx-plugin` and `docker-compose-plugin` (Docker
//! CLI plugins, with their own version numbers) and `docker-ce-rootless-extras` (versioned with
//! the engine, depending on docker-ce). Each answers `docker buildx version` (or compose) with
//! its version; the upgrade's tests need their packages, not their features.

use std::path::Path;

use anyhow::Result;

use super::Staged;

/// docker-buildx-plugin's versions in the lab, as trixie names them: (old, new).
pub const BUILDX: (&str, &str) = ("0.17.1-1~debian.13~trixie", "0.29.1-1~debian.13~trixie");
/// docker-compose-plugin's versions in the lab, as trixie names them: (old, new).
pub const COMPOSE: (&str, &str) = ("2.29.7-1~debian.13~trixie", "2.40.3-1~debian.13~trixie");

/// Every CLI plugin package at every version, as trixie names it.
pub const CLI_PLUGINS: [(&str, &str); 4] = [
    ("docker-buildx-plugin", BUILDX.0),
    ("docker-buildx-plugin", BUILDX.1),
    ("docker-compose-plugin", COMPOSE.0),
    ("docker-compose-plugin", COMPOSE.1),
];

/// A Docker CLI plugin package: its binary in Docker's plugin directory answers the CLI's
/// metadata call and `version`.
pub fn cli_plugin(package: &str, version: &str, stage: &Path, pool: &Path) -> Result<()> {
    let command = package.trim_start_matches("docker-").trim_end_matches("-plugin");
    let upstream = version.split('-').next().unwrap_or(version);
    let s = Staged::new(stage, &format!("{package}-{version}"))?;
    let script = format!(
        r#"#!/bin/sh
# swarm-upgrade lab stand-in for Docker's {package} {version}.
if [ "$1" = docker-cli-plugin-metadata ]; then
	echo '{{"SchemaVersion":"0.1.0","Vendor":"swarm-upgrade lab","Version":"v{upstream}","ShortDescription":"{command} (lab stand-in)"}}'
	exit 0
fi
echo "{command} v{upstream} (swarm-upgrade lab stand-in)"
"#
    );
    s.write(&format!("usr/libexec/docker/cli-plugins/docker-{command}"), &script, 0o755)?;
    let fields = format!(
        "Section: admin\nPriority: optional\nDepends: libc6 (>= 2.34)\nEnhances: docker-ce-cli\nHomepage: https://www.docker.com\n\
Description: Docker {command} plugin (swarm-upgrade lab stand-in)\n A stand-in with the name, version and dependencies of Docker's {package}.\n"
    );
    s.build(&fields, pool, package, version)
}

/// docker-ce-rootless-extras at an engine version: its scripts, depending on docker-ce.
pub fn rootless_extras(version: &str, stage: &Path, pool: &Path) -> Result<()> {
    let package = "docker-ce-rootless-extras";
    let s = Staged::new(stage, &format!("{package}-{version}"))?;
    for script in ["dockerd-rootless.sh", "dockerd-rootless-setuptool.sh"] {
        let text = format!(
            "#!/bin/sh\necho \"{script} from {package} {version} (swarm-upgrade lab stand-in)\"\n"
        );
        s.write(&format!("usr/bin/{script}"), &text, 0o755)?;
    }
    let fields = "Section: admin\nPriority: optional\nDepends: docker-ce\nHomepage: https://www.docker.com\n\
Description: Rootless support for Docker (swarm-upgrade lab stand-in)\n A stand-in with the name, version and dependencies of Docker's docker-ce-rootless-extras.\n";
    s.build(fields, pool, package, version)
}
