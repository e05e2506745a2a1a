//! Targets resolved against `apt-cache madison` output of each release Docker's repository serves.

use super::parse::madison;
use crate::model::DebVersion;
use crate::model::target::{Target, engine_versions};

/// `apt-cache madison docker-ce` as Docker's repository answers it on each release, composed
/// from the versions download.docker.com lists for it (mirror host left out).
const DEBIAN_12: &str = "\
 docker-ce | 5:28.5.2-1~debian.12~bookworm | https://repo/linux/debian bookworm/stable amd64 Packages
 docker-ce | 5:28.5.1-1~debian.12~bookworm | https://repo/linux/debian bookworm/stable amd64 Packages
 docker-ce | 5:28.0.0-1~debian.12~bookworm | https://repo/linux/debian bookworm/stable amd64 Packages
 docker-ce | 5:28.0.0~rc.1-1~debian.12~bookworm | https://repo/linux/debian bookworm/test amd64 Packages
 docker-ce | 5:24.0.9-1~debian.12~bookworm | https://repo/linux/debian bookworm/stable amd64 Packages
";
const DEBIAN_13: &str = "\
 docker-ce | 5:28.5.2-1~debian.13~trixie | https://repo/linux/debian trixie/stable amd64 Packages
 docker-ce | 5:28.5.1-1~debian.13~trixie | https://repo/linux/debian trixie/stable amd64 Packages
 docker-ce | 5:26.1.5-1~debian.13~trixie | https://repo/linux/debian trixie/stable amd64 Packages
";
const UBUNTU_22_04: &str = "\
 docker-ce | 5:28.5.2-1~ubuntu.22.04~jammy | https://repo/linux/ubuntu jammy/stable amd64 Packages
 docker-ce | 5:27.5.1-1~ubuntu.22.04~jammy | https://repo/linux/ubuntu jammy/stable amd64 Packages
 docker-ce | 5:20.10.24~3-0~ubuntu-jammy | https://repo/linux/ubuntu jammy/stable amd64 Packages
";
const UBUNTU_24_04: &str = "\
 docker-ce | 5:28.5.2-1~ubuntu.24.04~noble | https://repo/linux/ubuntu noble/stable amd64 Packages
 docker-ce | 5:26.1.3-1~ubuntu.24.04~noble | https://repo/linux/ubuntu noble/stable amd64 Packages
";
/// The shape before Docker 23: `~3-0~ubuntu-focal`, a build number and the release in the
/// revision; and older still, the `~ce~` edition.
const UBUNTU_20_04_OLD: &str = "\
 docker-ce | 5:20.10.13~3-0~ubuntu-focal | https://repo/linux/ubuntu focal/stable amd64 Packages
 docker-ce | 5:19.03.15~3-0~ubuntu-focal | https://repo/linux/ubuntu focal/stable amd64 Packages
 docker-ce | 5:19.03.9~3-0~ubuntu-focal | https://repo/linux/ubuntu focal/stable amd64 Packages
 docker-ce | 5:19.03.0~1.2.beta2-0~ubuntu-focal | https://repo/linux/ubuntu focal/test amd64 Packages
 docker-ce | 18.06.3~ce~3-0~ubuntu | https://repo/linux/ubuntu bionic/stable amd64 Packages
";

fn target(text: &str) -> Target {
    text.parse().unwrap()
}

fn offered(madison_text: &str) -> Vec<DebVersion> {
    madison(madison_text).remove("docker-ce").unwrap()
}

fn pick(text: &str, madison_text: &str) -> Option<String> {
    target(text).pick(&offered(madison_text)).map(|v| v.to_string())
}

#[test]
fn an_engine_version_resolves_on_every_release_to_its_own_package_version() {
    let cases = [
        (DEBIAN_12, "5:28.5.2-1~debian.12~bookworm"),
        (DEBIAN_13, "5:28.5.2-1~debian.13~trixie"),
        (UBUNTU_22_04, "5:28.5.2-1~ubuntu.22.04~jammy"),
        (UBUNTU_24_04, "5:28.5.2-1~ubuntu.24.04~noble"),
    ];
    for (text, want) in cases {
        assert_eq!(pick("28.5.2", text).as_deref(), Some(want), "{text}");
    }
    assert_eq!(pick("28.5.1", UBUNTU_24_04), None, "not offered there");
}

#[test]
fn the_old_shape_resolves_too() {
    assert_eq!(pick("19.03.15", UBUNTU_20_04_OLD).as_deref(), Some("5:19.03.15~3-0~ubuntu-focal"));
    assert_eq!(pick("19.3.9", UBUNTU_20_04_OLD).as_deref(), Some("5:19.03.9~3-0~ubuntu-focal"));
    assert_eq!(pick("18.06.3", UBUNTU_20_04_OLD).as_deref(), Some("18.06.3~ce~3-0~ubuntu"));
    assert_eq!(pick("20.10.24", UBUNTU_22_04).as_deref(), Some("5:20.10.24~3-0~ubuntu-jammy"));
}

#[test]
fn a_prerelease_never_stands_for_its_release() {
    assert_eq!(pick("19.03.0", UBUNTU_20_04_OLD), None);
    let only_rc = " docker-ce | 5:28.0.0~rc.1-1~debian.12~bookworm | https://repo bookworm/test amd64 Packages\n";
    assert_eq!(pick("28.0.0", only_rc), None);
    assert_eq!(pick("28.0.0", DEBIAN_12).as_deref(), Some("5:28.0.0-1~debian.12~bookworm"));
    let prerelease = |s: &str| s.parse::<DebVersion>().unwrap().is_prerelease();
    assert!(prerelease("5:28.0.0~rc.1-1~debian.12~bookworm"));
    assert!(prerelease("18.09.0~tp4-0~ubuntu"));
    for release in ["5:28.5.2-1~debian.13~trixie", "26.1.5+dfsg1-9", "18.06.3~ce~3-0~ubuntu"] {
        assert!(!prerelease(release), "{release}");
    }
}

#[test]
fn the_newest_build_of_an_engine_version_is_picked() {
    let two = " docker-ce | 5:28.5.2-2~debian.13~trixie | https://repo trixie/stable amd64 Packages\n docker-ce | 5:28.5.2-1~debian.13~trixie | https://repo trixie/stable amd64 Packages\n";
    assert_eq!(pick("28.5.2", two).as_deref(), Some("5:28.5.2-2~debian.13~trixie"));
}

#[test]
fn an_exact_package_version_means_exactly_that() {
    assert_eq!(
        pick("5:28.5.2-1~debian.13~trixie", DEBIAN_13).as_deref(),
        Some("5:28.5.2-1~debian.13~trixie")
    );
    assert_eq!(pick("5:28.5.2-1~debian.13~trixie", DEBIAN_12), None);
    assert_eq!(target("5:28.5.2-1~debian.13~trixie").engine_version().to_string(), "28.5.2");
}

#[test]
fn engine_versions_list_releases_only() {
    let listed: Vec<String> =
        engine_versions(&offered(DEBIAN_12)).iter().map(ToString::to_string).collect();
    assert_eq!(listed, ["24.0.9", "28.0.0", "28.5.1", "28.5.2"]);
}

#[test]
fn targets_round_trip_as_text() {
    for text in ["28.5.2", "5:28.5.2-1~debian.13~trixie", "5:19.03.15~3-0~ubuntu-focal"] {
        assert_eq!(target(text).to_string(), text);
        let json = serde_json::to_string(&target(text)).unwrap();
        assert_eq!(serde_json::from_str::<Target>(&json).unwrap(), target(text));
    }
    assert!(matches!(target("28.5.2"), Target::Engine(_)));
    assert!(matches!(target("26.1.5+dfsg1-9"), Target::Package(_)));
}

#[test]
fn a_stored_target_an_older_build_accepted_is_still_read() {
    let stored: Target = serde_json::from_str("\"1.0\"").unwrap();
    assert_eq!(stored, Target::Package("1.0".parse().unwrap()));
    assert!("1.0".parse::<Target>().is_err(), "but not given anew");
}

#[test]
fn bad_targets_say_what_is_accepted() {
    for (bad, why) in [
        ("28.5", "three numbers"),
        ("28", "three numbers"),
        ("28.5.2.1", "three numbers"),
        ("28..2", "three numbers"),
        ("banana", "must start with a digit"),
        ("", "empty"),
        ("5:28.5.2-", "revision"),
    ] {
        let e = bad.parse::<Target>().unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
        for form in ["28.5.2", "5:28.5.2-1~debian.13~trixie", "latest", "latest-patch"] {
            assert!(e.contains(form), "{bad}: {e}");
        }
    }
}
