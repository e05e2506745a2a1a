//! The lab's images, built from Debian and the machine's own binaries (no registry is reachable):
//! - the node image: Debian 13 (trixie) minbase with systemd, the lab repository configured the
//!   way Docker's install guide does it, and docker-ce 26.1.5 installed from that repository's
//!   packages; it also carries haproxy for the `balancer` node;
//! - a plain Debian 12 (bookworm) node, systemd and nothing else, for the package's install and
//!   removal there;
//! - the workload image: busybox plus `lab-web` (this tool), loaded into every node's engine and
//!   also run by the `repo` node to serve the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::engine::Engine;
use crate::repo::{self, Repo};
use crate::{cache, host};

/// Packages debootstrap adds to trixie's minbase: systemd, the engine's runtime libraries and
/// iptables, haproxy for the balancer, curl for people who exec into a node.
const NODE_PACKAGES: &str = "systemd,systemd-sysv,dbus,iproute2,ca-certificates,iptables,libseccomp2,libsystemd0,procps,curl,haproxy";

/// The node image's tag in the lab's engine; built and imported if missing.
pub fn node_image(engine: &Engine, repo: &Repo) -> Result<String> {
    let debs = [
        ("containerd.io", repo::CONTAINERD[0].0),
        ("docker-ce-cli", repo::OLD),
        ("docker-ce", repo::OLD),
    ];
    let mut parts: Vec<Vec<u8>> =
        vec![include_str!("images.rs").into(), NODE_PACKAGES.into(), std::fs::read(&repo.key)?];
    for (p, v) in debs {
        parts.push(cache::file_hash(&repo.deb(p, v))?.to_le_bytes().to_vec());
    }
    let hash = cache::fnv(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let tag = format!("swarm-upgrade-lab/node:{hash:016x}");
    if engine.docker(&["image", "inspect", "--format", "{{.Id}}", &tag]).is_ok() {
        return Ok(tag);
    }
    let tar = cache::cached(&format!("node-trixie-{hash:016x}.tar"), |out| {
        systemd_node_tar(out, &base_tar("trixie", NODE_PACKAGES)?, |root| {
            let tmp = root.join("var/tmp");
            let mut names = vec![];
            for (p, v) in debs {
                let deb = repo.deb(p, v);
                let name = deb.file_name().unwrap().to_string_lossy().to_string();
                std::fs::copy(&deb, tmp.join(&name))?;
                names.push(format!("/var/tmp/{name}"));
            }
            host::run(Command::new("chroot").arg(root).arg("dpkg").arg("-i").args(&names))
                .context("docker-ce 26.1.5 installs in the image")?;
            for n in &names {
                std::fs::remove_file(root.join(n.trim_start_matches('/')))?;
            }
            // haproxy only runs on the balancer.
            host::run(Command::new("chroot").arg(root).args([
                "systemctl",
                "disable",
                "haproxy.service",
            ]))?;
            // Only the lab repository, configured as Docker's install guide does it.
            for f in ["etc/apt/sources.list.d/debian.sources", "etc/apt/sources.list"] {
                cache::remove(&root.join(f));
            }
            std::fs::create_dir_all(root.join("etc/apt/keyrings"))?;
            std::fs::copy(&repo.key, root.join("etc/apt/keyrings/docker.asc"))?;
            std::fs::write(
                root.join("etc/apt/sources.list.d/docker.list"),
                format!("{}\n", repo::SOURCES_LINE),
            )?;
            for dir in ["var/lib/apt/lists", "var/cache/apt/archives"] {
                for e in std::fs::read_dir(root.join(dir))?.flatten() {
                    if e.path().is_file() {
                        std::fs::remove_file(e.path())?;
                    }
                }
            }
            Ok(())
        })
    })?;
    let changes = [
        "CMD [\"/lib/systemd/systemd\"]",
        "ENV container=docker",
        "LABEL io.swarm-upgrade.lab.image=node",
    ];
    import(engine, &tar, &tag, &changes)?;
    Ok(tag)
}

/// Packages debootstrap adds to bookworm's minbase for the plain Debian 12 node.
const BOOKWORM_PACKAGES: &str = "systemd,systemd-sysv,dbus,iproute2,ca-certificates,procps";

/// A plain Debian 12 node's image tag: bookworm minbase with systemd, no engine and no repository
/// (the package's install and removal on Debian 12). Built and imported if missing.
pub fn bookworm_image(engine: &Engine) -> Result<String> {
    let hash = cache::fnv(&[include_str!("images.rs").as_bytes(), BOOKWORM_PACKAGES.as_bytes()]);
    let tag = format!("swarm-upgrade-lab/bookworm:{hash:016x}");
    if engine.docker(&["image", "inspect", "--format", "{{.Id}}", &tag]).is_ok() {
        return Ok(tag);
    }
    let tar = cache::cached(&format!("node-bookworm-{hash:016x}.tar"), |out| {
        systemd_node_tar(out, &base_tar("bookworm", BOOKWORM_PACKAGES)?, |_| Ok(()))
    })?;
    let changes = [
        "CMD [\"/lib/systemd/systemd\"]",
        "ENV container=docker",
        "LABEL io.swarm-upgrade.lab.image=bookworm",
    ];
    import(engine, &tar, &tag, &changes)?;
    Ok(tag)
}

/// Writes to `out` the tree of `base` changed by `customize` (given the tree's root), made fit to
/// boot systemd in a container: no kernel modules to load, and a machine id made at first boot.
fn systemd_node_tar(
    out: &Path,
    base: &Path,
    customize: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let root = out.with_extension("rootfs");
    cache::remove(&root);
    std::fs::create_dir_all(&root)?;
    host::run(Command::new("tar").arg("-C").arg(&root).arg("-xf").arg(base))?;
    customize(&root)?;
    std::os::unix::fs::symlink(
        "/dev/null",
        root.join("etc/systemd/system/systemd-modules-load.service"),
    )?;
    std::fs::write(root.join("etc/machine-id"), "")?;
    cache::remove(&root.join("var/lib/dbus/machine-id"));
    host::run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(out).arg("."))?;
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

/// A suite's minbase with `packages`, as debootstrap made it (cached by its recipe).
fn base_tar(suite: &str, packages: &str) -> Result<PathBuf> {
    let hash = cache::fnv(&[packages.as_bytes(), format!("{suite} minbase").as_bytes()]);
    cache::cached(&format!("{suite}-base-{hash:016x}.tar"), |out| {
        host::ensure_packages(&[("debootstrap", "debootstrap")])?;
        let root = out.with_extension("rootfs");
        cache::remove(&root);
        eprintln!("lab: debootstrap of the {suite} node image (about a minute)");
        host::run(
            Command::new("debootstrap")
                .args(["--variant=minbase", &format!("--include={packages}"), suite])
                .arg(&root)
                .arg(host::mirror()?),
        )?;
        host::run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(out).arg("."))?;
        std::fs::remove_dir_all(&root)?;
        Ok(())
    })
}

fn import(engine: &Engine, tar: &Path, tag: &str, changes: &[&str]) -> Result<()> {
    let mut args = vec!["import"];
    for c in changes {
        args.extend(["--change", c]);
    }
    args.extend(["-", tag]);
    engine.docker_stdin(&args, tar)?;
    Ok(())
}

/// The workload image in the lab's engine too, for the `repo` node's file server.
pub fn web_image(engine: &Engine, tar: &Path) -> Result<String> {
    let hash = cache::file_hash(tar)?;
    let tag = format!("swarm-upgrade-lab/web:{hash:016x}");
    if engine.docker(&["image", "inspect", "--format", "{{.Id}}", &tag]).is_ok() {
        return Ok(tag);
    }
    import(engine, tar, &tag, &["LABEL io.swarm-upgrade.lab.image=web"])?;
    Ok(tag)
}

/// The workload image's root file system as a tar: busybox, and `tool` as `/lab-web` with the
/// shared libraries it links.
pub fn web_tar(tool: &Path) -> Result<PathBuf> {
    host::ensure_packages(&[("/bin/busybox", "busybox-static")])?;
    let hash = cache::fnv(&[&std::fs::read(tool)?, &std::fs::read("/bin/busybox")?]);
    busybox_tree(&format!("web-{hash:016x}.tar"), Some(tool))
}

fn busybox_tree(name: &str, tool: Option<&Path>) -> Result<PathBuf> {
    cache::cached(name, |out| {
        let root = out.with_extension("rootfs");
        cache::remove(&root);
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
        std::os::unix::fs::symlink("busybox", root.join("bin/sh"))?;
        if let Some(tool) = tool {
            std::fs::copy(tool, root.join("lab-web"))?;
            for lib in shared_libraries(tool)? {
                let dest = root.join(lib.strip_prefix("/").unwrap_or(&lib));
                std::fs::create_dir_all(dest.parent().unwrap())?;
                std::fs::copy(&lib, dest)?;
            }
        }
        host::run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(out).arg("."))?;
        std::fs::remove_dir_all(&root)?;
        Ok(())
    })
}

/// The absolute paths `ldd` lists for a binary.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = host::run(Command::new("ldd").arg(bin))?;
    Ok(out.split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).collect())
}
