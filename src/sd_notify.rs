//! systemd's notify protocol (sd_notify(3)) without libsystemd: one datagram per message to the
//! socket in `$NOTIFY_SOCKET`. Outside a `Type=notify` unit every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (e.g. `READY=1\nSTATUS=listening`); false when not under systemd or it failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    let Ok(socket) = UnixDatagram::unbound() else { return false };
    let path = path.to_string_lossy().into_owned();
    let sent = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|a| socket.send_to_addr(state.as_bytes(), &a))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    sent.is_ok()
}

/// Tells systemd the service is up, with a status line `systemctl status` shows.
pub fn ready(status: &str) -> bool {
    notify(&format!("READY=1\nSTATUS={status}"))
}

/// Updates the status line.
pub fn status(status: &str) -> bool {
    notify(&format!("STATUS={status}"))
}

/// How often to ping the watchdog: half of `WatchdogSec=` when it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// Pings the watchdog from the async runtime for as long as it runs: a wedged runtime stops the
/// pings and systemd restarts the service.
pub fn spawn_watchdog() {
    if let Some(every) = watchdog_interval() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notify("WATCHDOG=1");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout_and_only_by_its_process() {
        assert_eq!(interval_from(Some("30000000"), None, 7), Some(Duration::from_secs(15)));
        assert_eq!(interval_from(Some("30000000"), Some("7"), 7), Some(Duration::from_secs(15)));
        assert_eq!(interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(interval_from(Some("0"), None, 7), None);
        assert_eq!(interval_from(None, None, 7), None);
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
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=listening on 7443");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!status("gone"), "without NOTIFY_SOCKET nothing is sent");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
