//! Which swarm a join token leads into. A token reads `SWMTKN-1-<digest>-<secret>`, where the
//! digest is the SHA-256 of the swarm's root CA certificate as PEM (the bytes of
//! `swarm-root-ca.crt`), in base 36, zero-padded to 50 characters (swarmkit's
//! `GenerateJoinToken`; checked against a real engine's token). An agent that compares it with
//! the CA it trusts refuses a token of any other swarm before its node leaves its own.

/// Length of the digest part.
const DIGEST_LEN: usize = 50;

/// The digest a join token of the swarm whose root CA is `ca_pem` carries.
pub fn ca_digest(ca_pem: &str) -> String {
    let sum = ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes());
    let b36 = base36(sum.as_ref());
    format!("{b36:0>DIGEST_LEN$}")
}

/// The CA digest of a join token, or `None` when it is not shaped like one.
pub fn token_digest(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("SWMTKN-1-")?;
    let (digest, secret) = rest.split_once('-')?;
    let base36 = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
    (digest.len() == DIGEST_LEN && base36(digest) && !secret.is_empty() && base36(secret))
        .then_some(digest)
}

/// Why a join order is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    /// Not a swarm join token at all.
    #[error("the join token is not shaped like a swarm join token (SWMTKN-1-...): refused")]
    Malformed,
    /// A token of another swarm (another root CA).
    #[error(
        "the join token belongs to a swarm with another root CA than the one this node trusts: refused (the node stays out of any other swarm)"
    )]
    OtherSwarm,
    /// A manager address this node does not know as one of its swarm's managers.
    #[error("{0} is not a manager address of this node's swarm as the node last saw it: refused")]
    UnknownManager(String),
    /// No manager address at all.
    #[error("the join order names no manager address: refused")]
    NoManager,
}

/// Admits a join into the swarm whose CA is `ca_pem`, at `managers` that are all among `known`.
pub fn check(
    token: &str,
    ca_pem: &str,
    managers: &[String],
    known: &std::collections::BTreeSet<String>,
) -> Result<(), JoinRefusal> {
    let digest = token_digest(token).ok_or(JoinRefusal::Malformed)?;
    if digest != ca_digest(ca_pem) {
        return Err(JoinRefusal::OtherSwarm);
    }
    if managers.is_empty() {
        return Err(JoinRefusal::NoManager);
    }
    match managers.iter().find(|m| !known.contains(*m)) {
        Some(unknown) => Err(JoinRefusal::UnknownManager(unknown.clone())),
        None => Ok(()),
    }
}

/// `bytes` as one big-endian number in base 36 (lower case, no leading zeros).
fn base36(bytes: &[u8]) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::new();
    while number.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in number.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[rem as usize]);
    }
    digits.reverse();
    String::from_utf8(digits).expect("ascii digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real engine's root CA and the worker token it printed (`docker swarm join-token -q
    /// worker`, Debian's dockerd 20.10; its digest needed the zero padding); the secret part
    /// is not needed and replaced.
    const CA: &str = include_str!("../../tests/fixtures/swarm/swarm-root-ca.crt");
    const DIGEST: &str = "0pm7q2qbskswr4xrxsagqvp9rqtpw2vchmsgoi9kh4kc0rcg8u";

    fn token(digest: &str) -> String {
        format!("SWMTKN-1-{digest}-0000000000000000000000000")
    }

    #[test]
    fn the_digest_is_the_one_a_real_engine_put_in_its_token() {
        assert_eq!(ca_digest(CA), DIGEST);
        assert_eq!(token_digest(&token(DIGEST)), Some(DIGEST));
    }

    #[test]
    fn base36_matches_known_numbers() {
        assert_eq!(base36(&[0]), "");
        assert_eq!(base36(&[35]), "z");
        assert_eq!(base36(&[36]), "10");
        assert_eq!(base36(&[1, 0]), "74");
    }

    #[test]
    fn only_our_swarm_at_its_known_managers_is_joined() {
        let known = ["10.0.0.1:2377".to_string(), "10.0.0.2:2377".to_string()].into();
        let at = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check(&token(DIGEST), CA, &at(&["10.0.0.2:2377"]), &known), Ok(()));
        let other = "0".repeat(49) + "1";
        assert_eq!(
            check(&token(&other), CA, &at(&["10.0.0.2:2377"]), &known),
            Err(JoinRefusal::OtherSwarm)
        );
        assert_eq!(
            check(&token(DIGEST), CA, &at(&["10.0.0.2:2377", "203.0.113.9:2377"]), &known),
            Err(JoinRefusal::UnknownManager("203.0.113.9:2377".into()))
        );
        assert_eq!(check(&token(DIGEST), CA, &[], &known), Err(JoinRefusal::NoManager));
        for bad in ["", "SWMTKN-1-abc-def", "SWMTKN-2-x-y", &format!("SWMTKN-1-{DIGEST}-")] {
            assert_eq!(
                check(bad, CA, &at(&["10.0.0.1:2377"]), &known),
                Err(JoinRefusal::Malformed)
            );
        }
    }
}
