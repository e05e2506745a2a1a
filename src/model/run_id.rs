//! Run IDs. A run ID names the run's report file (`runs/<id>.json`) and, filtered, its transient
//! systemd units; it is read back from the swarm's store, which any manager can write. So it is
//! checked against one rule wherever it is used as a name, and refused, not cleaned up: a cleaned
//! ID would name a different run's file.

/// The longest run ID: with `.json` it stays far below a file name's 255 bytes.
pub const MAX_RUN_ID: usize = 128;

/// Why a text is not a run ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "run ID {shown} {why}: a run ID is 1 to 128 of the characters A-Z a-z 0-9 . _ - and does not start with `.`"
)]
pub struct RunIdError {
    /// The ID, quoted, cut short if it is long (it may be anything a manager wrote).
    shown: String,
    why: &'static str,
}

/// Checks that `id` is a run ID: non-empty, at most [`MAX_RUN_ID`] characters of
/// `[A-Za-z0-9._-]`, not starting with `.`. Such an ID is one path component, never `.` or `..`,
/// and no hidden file.
pub fn check_run_id(id: &str) -> Result<(), RunIdError> {
    let why = if id.is_empty() {
        "is empty"
    } else if id.len() > MAX_RUN_ID {
        "is too long"
    } else if !id.chars().all(allowed) {
        "has a character other than A-Z a-z 0-9 . _ -"
    } else if id.starts_with('.') {
        "starts with `.`"
    } else {
        return Ok(());
    };
    let mut shown: String = id.chars().take(64).collect();
    if shown.len() < id.len() {
        shown.push('…');
    }
    Err(RunIdError { shown: format!("{shown:?}"), why })
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-".contains(c)
}

/// A new run's ID: its start (`stamp`, e.g. `20261125T060000Z`) and its coordinator (`holder`,
/// e.g. `manager1/4242`), every character the rule does not allow written as `-`, cut to
/// [`MAX_RUN_ID`]. Always passes [`check_run_id`] when `stamp` is such text.
pub fn new_run_id(stamp: &str, holder: &str) -> String {
    let text = format!("{stamp}-{holder}");
    text.chars().map(|c| if allowed(c) { c } else { '-' }).take(MAX_RUN_ID).collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Component, Path};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_rule_refuses_what_is_no_single_safe_name() {
        let longest = "x".repeat(MAX_RUN_ID);
        for ok in ["20261125T060000Z-manager1-4242", "r1", "a.b_c-D", longest.as_str()] {
            assert_eq!(check_run_id(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "is empty"),
            ("..", "starts with `.`"),
            (".hidden", "starts with `.`"),
            ("../../etc/passwd", "has a character other than"),
            ("a/b", "has a character other than"),
            ("a b", "has a character other than"),
            ("run\0", "has a character other than"),
            ("rün", "has a character other than"),
        ];
        for (bad, why) in cases {
            let e = check_run_id(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.starts_with(&format!("run ID {bad:?} ")), "names it: {e}");
            assert!(e.contains("A-Z a-z 0-9 . _ -"), "says what is allowed: {e}");
        }
        let long = "y".repeat(129);
        let e = check_run_id(&long).unwrap_err().to_string();
        assert!(
            e.contains("is too long") && e.contains(&format!("\"{}…\"", "y".repeat(64))),
            "{e}"
        );
    }

    #[test]
    fn new_ids_keep_the_stamp_and_holder_readable() {
        assert_eq!(
            new_run_id("20261125T060000Z", "manager1/4242"),
            "20261125T060000Z-manager1-4242"
        );
        assert_eq!(new_run_id("20261125T060000Z", "höst 1/7"), "20261125T060000Z-h-st-1-7");
    }

    proptest! {
        /// Whatever the rule accepts is one normal path component: joined to a directory with
        /// `.json`, it names a file directly in that directory.
        #[test]
        fn accepted_ids_are_single_path_components(id in any::<String>()) {
            if check_run_id(&id).is_ok() {
                let c: Vec<Component> = Path::new(&id).components().collect();
                prop_assert_eq!(c, vec![Component::Normal(id.as_ref())]);
                let file = Path::new("/var/lib/swarm-upgrade/runs").join(format!("{id}.json"));
                prop_assert_eq!(file.parent(), Some(Path::new("/var/lib/swarm-upgrade/runs")));
                prop_assert!(!id.starts_with('.') && id.len() <= MAX_RUN_ID);
            }
        }

        /// The same for ids close to the rule (the alphabet plus `/`, ` `, NUL), which `any`
        /// rarely hits.
        #[test]
        fn accepted_near_ids_are_single_path_components(id in "[A-Za-z0-9._/ \\x00-]{0,140}") {
            if check_run_id(&id).is_ok() {
                let c: Vec<Component> = Path::new(&id).components().collect();
                prop_assert_eq!(c, vec![Component::Normal(id.as_ref())]);
                prop_assert!(id != "." && id != ".." && !id.contains('/'));
            }
        }

        /// A new run's ID always passes the rule, whatever the host name.
        #[test]
        fn new_ids_pass_the_rule(holder in any::<String>()) {
            prop_assert_eq!(check_run_id(&new_run_id("20261125T060000Z", &holder)), Ok(()));
        }
    }
}
