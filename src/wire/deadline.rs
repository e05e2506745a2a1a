//! The caller's deadline as gRPC carries it (the `grpc-timeout` header), and how much of it the
//! agent gives its own work: a little less, so that a node that gives up still answers in time to
//! say so, rather than leaving the coordinator to time out without a reason.

use std::time::Duration;

/// The header tonic writes from `Request::set_timeout`.
pub const HEADER: &str = "grpc-timeout";

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The time the agent's own work may take under a caller's `limit`: a quarter of it or five
/// seconds, whichever is less, is kept back to report the outcome.
pub fn work_limit(limit: Duration) -> Duration {
    limit.saturating_sub((limit / 4).min(Duration::from_secs(5)))
}

/// The limit a request carries, for the agent's own work (`None`: the caller set none).
pub fn of<T>(req: &tonic::Request<T>) -> Option<Duration> {
    let value = req.metadata().get(HEADER)?.to_str().ok()?;
    parse(value).map(work_limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(parse("14999m"), Some(Duration::from_millis(14_999)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("90S"), Some(Duration::from_secs(90)));
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "123456789S", "12x", "-1S", "1.5S"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_agent_keeps_a_margin_to_answer() {
        assert_eq!(work_limit(Duration::from_secs(900)), Duration::from_secs(895));
        assert_eq!(work_limit(Duration::from_secs(8)), Duration::from_secs(6));
        assert_eq!(work_limit(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_request_carries_the_limit_tonic_writes() {
        let mut req = tonic::Request::new(());
        req.metadata_mut().insert(HEADER, "60S".parse().unwrap());
        assert_eq!(of(&req), Some(Duration::from_secs(55)));
        assert_eq!(of(&tonic::Request::new(())), None);
    }
}
