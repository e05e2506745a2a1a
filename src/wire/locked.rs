//! A manager's node key in an autolocked swarm: swarmkit encrypts it as PKCS#8 (PBES2: PBKDF2
//! and AES-256-CBC) with the key-encrypting key the unlock key stands for. It is decrypted in
//! memory only, never written back.

use pkcs8::der::Decode;
use pkcs8::der::pem::LineEnding;

use super::auth::{AuthError, remove_headers};
use crate::model::UnlockKey;

/// The clear PKCS#8 PEM of the encrypted key `pem` (read from `path`), decrypted with `key`.
pub fn decrypt_node_key(path: &str, pem: &str, key: &UnlockKey) -> Result<String, AuthError> {
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(AuthError::UnreadableKey {
            path: path.to_string(),
            why: "legacy PEM encryption; the node's next certificate renewal rewrites it as PKCS#8"
                .into(),
        });
    }
    let clean = remove_headers(path, pem)?;
    let unreadable = |why: String| AuthError::UnreadableKey { path: path.to_string(), why };
    let (label, der) =
        pkcs8::der::pem::decode_vec(clean.as_bytes()).map_err(|e| unreadable(e.to_string()))?;
    if label != "ENCRYPTED PRIVATE KEY" {
        return Err(unreadable(format!("a {label} block, not an encrypted PKCS#8 key")));
    }
    let info =
        pkcs8::EncryptedPrivateKeyInfo::from_der(&der).map_err(|e| unreadable(e.to_string()))?;
    let clear = info.decrypt(key.kek()).map_err(|_| AuthError::WrongUnlockKey(path.to_string()))?;
    // PKCS#7 padding can pass by chance with a wrong key: the result must be a private key.
    pkcs8::PrivateKeyInfo::from_der(clear.as_bytes())
        .map_err(|_| AuthError::WrongUnlockKey(path.to_string()))?;
    let pem = clear.to_pem("PRIVATE KEY", LineEnding::LF).map_err(|e| unreadable(e.to_string()))?;
    Ok(pem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCRYPTED: &str = include_str!("../../tests/fixtures/swarm/autolock/swarm-node.key");
    const CERT: &str = include_str!("../../tests/fixtures/swarm/autolock/swarm-node.crt");
    const KEY: &str = include_str!("../../tests/fixtures/swarm/autolock/unlock.key");

    /// The decrypted key is the one the node's certificate was issued for: a TLS identity built
    /// from both is accepted by rustls (which checks that key and certificate match).
    #[test]
    fn a_real_autolocked_managers_key_decrypts_with_its_unlock_key() {
        let key = UnlockKey::parse(KEY).unwrap();
        let pem = decrypt_node_key("swarm-node.key", ENCRYPTED, &key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let certs: Vec<_> = rustls_pemfile_certs(CERT);
        let der = pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap().1;
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(der.into());
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(private).unwrap();
        let certified = rustls::sign::CertifiedKey::new(certs, signing);
        assert_eq!(certified.keys_match(), Ok(()));
    }

    #[test]
    fn another_key_is_named_as_the_wrong_one() {
        let other =
            UnlockKey::parse("SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(
            decrypt_node_key("swarm-node.key", ENCRYPTED, &other),
            Err(AuthError::WrongUnlockKey("swarm-node.key".into()))
        );
    }

    fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        let (_, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
        vec![der.into()]
    }
}
