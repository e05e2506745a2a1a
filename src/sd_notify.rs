//! systemd's notify protocol (sd_notify(3)), through the `sd-notify` crate (no libsystemd): the
//! agent's readiness, status line, stop and watchdog. Outside a `Type=notify` unit every call does
//! nothing. The crate connects to `$NOTIFY_SOCKET` as a path, so an abstract socket (`@name`) is
//! not reached; systemd hands its services a path (`/run/systemd/notify`).

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states`; false when not under systemd or it failed.
fn notify(states: &[NotifyState]) -> bool {
    // The crate answers Ok when there is no socket: callers are told nothing was sent.
    std::env::var_os("NOTIFY_SOCKET").is_some() && sd_notify::notify(states).is_ok()
}

/// Tells systemd the service is up, with a status line `systemctl status` shows.
pub fn ready(status: &str) -> bool {
    notify(&[NotifyState::Ready, NotifyState::Status(status)])
}

/// Tells systemd the service is stopping, and why in the status line.
pub fn stopping(status: &str) -> bool {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)])
}

/// How often to ping the watchdog: half of `WatchdogSec=` when it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    half(sd_notify::watchdog_enabled())
}

/// Half the watchdog's timeout, as sd_watchdog_enabled(3) advises, so that a ping a little late
/// is not yet a restart; none for a zero timeout (the crate passes `WATCHDOG_USEC=0` on, and an interval of zero would panic).
fn half(timeout: Option<Duration>) -> Option<Duration> {
    timeout.filter(|t| !t.is_zero()).map(|t| t / 2)
}

/// Pings the watchdog from the async runtime for as long as it runs: a wedged runtime stops the
/// pings and systemd restarts the service.
pub fn spawn_watchdog() {
    if let Some(every) = watchdog_interval() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout_and_only_by_its_process() {
        let me = std::process::id().to_string();
        let interval = |usec: Option<&str>, pid: Option<&str>| {
            // SAFETY: no other test in this binary reads or writes WATCHDOG_USEC or WATCHDOG_PID.
            unsafe {
                match usec {
                    Some(u) => std::env::set_var("WATCHDOG_USEC", u),
                    None => std::env::remove_var("WATCHDOG_USEC"),
                }
                match pid {
                    Some(p) => std::env::set_var("WATCHDOG_PID", p),
                    None => std::env::remove_var("WATCHDOG_PID"),
                }
            }
            watchdog_interval()
        };
        assert_eq!(interval(Some("30000000"), None), Some(Duration::from_secs(15)));
        assert_eq!(interval(Some("30000000"), Some(&me)), Some(Duration::from_secs(15)));
        assert_eq!(interval(Some("30000000"), Some("1")), None);
        assert_eq!(interval(Some("0"), None), None);
        assert_eq!(interval(None, None), None);
    }

    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("sd-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        // SAFETY: no other test in this binary reads or writes NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        assert!(ready("listening on 7443"));
        let mut buf = [0u8; 128];
        let n = server.recv(&mut buf).unwrap();
        // The crate ends every assignment with a newline, the last one too.
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=listening on 7443\n");
        assert!(stopping("bye"));
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=bye\n");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!ready("gone"), "without NOTIFY_SOCKET nothing is sent");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
