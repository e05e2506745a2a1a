//! The swarm's unlock key (`docker swarm unlock-key -q`), needed when the swarm is autolocked:
//! it decrypts a manager's node key and unlocks a manager's engine after a restart.

use base64::Engine;

/// A well-formed unlock key. Never printed: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey(String);

/// Why a text is not an unlock key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a swarm unlock key (expected SWMKEY-1- and a base64 key, as `docker swarm unlock-key -q` prints it)"
)]
pub struct UnlockKeyError;

const PREFIX: &str = "SWMKEY-1-";

impl UnlockKey {
    /// Parses the key as Docker prints it (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<UnlockKey, UnlockKeyError> {
        let text = text.trim();
        let bytes = decode(text)?;
        if bytes.is_empty() {
            return Err(UnlockKeyError);
        }
        Ok(UnlockKey(text.to_string()))
    }

    /// The key as Docker prints and accepts it (`POST /swarm/unlock`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key-encrypting key it stands for: the password of an encrypted node key (swarmkit's
    /// `ParseHumanReadableKey`).
    pub fn kek(&self) -> Vec<u8> {
        decode(&self.0).expect("checked when parsed")
    }
}

fn decode(text: &str) -> Result<Vec<u8>, UnlockKeyError> {
    let body = text.strip_prefix(PREFIX).ok_or(UnlockKeyError)?;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(body.trim_end_matches('='))
        .map_err(|_| UnlockKeyError)
}

impl std::fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_docker_prints_them_parse_and_others_are_refused() {
        let k = UnlockKey::parse("SWMKEY-1-8O2lvdGHe/Q1XRJen1GP7Z33zw8TSmjIj4xSxZVcgRk\n").unwrap();
        assert_eq!(k.as_str(), "SWMKEY-1-8O2lvdGHe/Q1XRJen1GP7Z33zw8TSmjIj4xSxZVcgRk");
        assert_eq!(k.kek().len(), 32);
        assert_eq!(format!("{k:?}"), "UnlockKey(..)");
        for bad in
            ["", "SWMKEY-1-", "8O2lvdGHe/Q1XRJen1GP7Z33zw8TSmjIj4xSxZVcgRk", "SWMKEY-1-not base64!"]
        {
            assert_eq!(UnlockKey::parse(bad), Err(UnlockKeyError), "{bad:?}");
        }
    }
}
