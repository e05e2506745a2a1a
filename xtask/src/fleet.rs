//! Lab nodes made to look like a fleet that grew over the years: some see Docker's repository
//! as Debian 12 does (every version named `~debian.12~bookworm`, the same engines inside), and
//! some carry Docker's plugins beside the engine.

use anyhow::Result;

use crate::engine::Engine;
use crate::repo;

/// The packages the lab installs on a node as plugins: buildx and compose.
pub const PLUGINS: [&str; 2] = ["docker-buildx-plugin", "docker-compose-plugin"];

/// `apt-get install` as the lab runs it: no questions, the configuration files kept.
const INSTALL: &str = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold";

/// Points `node` at the repository's bookworm suite and installs its engine as bookworm names
/// it: a node of the fleet that still runs Debian 12. The same binaries go in again (dpkg counts
/// it a downgrade, `~debian.12` sorting before `~debian.13`), and docker-ce's postinst restarts
/// the engine, as it would on a real node: bring the node in before the load starts.
pub fn make_bookworm(engine: &Engine, node: &str) -> Result<()> {
    let line = repo::SOURCES_LINE.replace(" trixie ", " bookworm ");
    let old = repo::in_suite(repo::OLD, "bookworm");
    engine.sh(
        node,
        &format!(
            "echo '{line}' > /etc/apt/sources.list.d/docker.list && apt-get update -q >/dev/null && {INSTALL} docker-ce={old} docker-ce-cli={old} >/dev/null"
        ),
    )?;
    Ok(())
}

/// Installs buildx and compose at their old versions, as the suite `node` uses names them.
pub fn install_plugins(engine: &Engine, node: &str, suite: &str) -> Result<()> {
    let buildx = repo::in_suite(repo::BUILDX.0, suite);
    let compose = repo::in_suite(repo::COMPOSE.0, suite);
    engine.sh(
        node,
        &format!(
            "{INSTALL} docker-buildx-plugin={buildx} docker-compose-plugin={compose} >/dev/null"
        ),
    )?;
    Ok(())
}

/// `package=version held` (or `unheld`) for each of `packages` installed on `node`, by name.
pub fn installed(engine: &Engine, node: &str, packages: &[&str]) -> Result<Vec<String>> {
    let list = packages.join(" ");
    let rows = engine.sh(
        node,
        &format!("dpkg-query -W -f '${{Package}}=${{Version}} ${{db:Status-Abbrev}}\\n' {list} 2>/dev/null; true"),
    )?;
    let mut out: Vec<String> = rows
        .lines()
        .filter_map(|row| {
            let (package, status) = row.split_once(' ')?;
            let held = match status.get(..2)? {
                "hi" => "held",
                "ii" => "unheld",
                _ => return None,
            };
            Some(format!("{package} {held}"))
        })
        .collect();
    out.sort_by_key(|row| row.split('=').next().unwrap_or_default().to_string());
    Ok(out)
}
