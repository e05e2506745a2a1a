//! The agent's and the coordinator's TLS material: by default the swarm's own node certificate,
//! key and root CA (a manager's key decrypted with the unlock key when the swarm is autolocked);
//! operator-provided files when configured.

use std::path::Path;

use super::auth::{AuthError, identity_of, is_encrypted, strip_pem_headers};
use super::locked::decrypt_node_key;
use crate::config::AgentSettings;

/// Certificate, key and CA as PEM, and the cluster ID the certificate names.
#[derive(Clone)]
pub struct TlsMaterial {
    /// Our certificate.
    pub cert: String,
    /// Our key, PEM headers removed.
    pub key: String,
    /// The CA that callers' certificates must chain to.
    pub ca: String,
    /// `O=` of our certificate.
    pub cluster: String,
    /// `CN=` of our certificate.
    pub node_id: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("cluster", &self.cluster)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path)
        .map_err(|e| AuthError::BadPem { path: path.display().to_string(), why: e.to_string() })
}

/// The files the settings name: certificate, key, CA.
fn paths(settings: &AgentSettings) -> [std::path::PathBuf; 3] {
    match &settings.custom_tls {
        Some(c) => [c.cert.clone(), c.key.clone(), c.ca.clone()],
        None => {
            let d = &settings.certificates_dir;
            [d.join("swarm-node.crt"), d.join("swarm-node.key"), d.join("swarm-root-ca.crt")]
        }
    }
}

/// The modification times of the material's files: a change means a rotation.
pub fn stamp(settings: &AgentSettings) -> Option<Vec<std::time::SystemTime>> {
    paths(settings).iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

/// The swarm's certificate directory, when the material is to come from it (no `custom_tls`) and
/// is not there yet: the node has not joined a swarm.
pub(crate) fn awaited_swarm_certificates(settings: &AgentSettings) -> Option<std::path::PathBuf> {
    if settings.custom_tls.is_some() {
        return None;
    }
    paths(settings).iter().any(|p| !p.exists()).then(|| settings.certificates_dir.clone())
}

/// The key in clear PEM: an autolocked swarm's encrypted manager key is decrypted with the
/// unlock key given (see [`crate::config::unlock_key`]).
fn clear_key(settings: &AgentSettings, path: &str, pem: &str) -> Result<String, AuthError> {
    if !is_encrypted(pem) {
        return strip_pem_headers(path, pem);
    }
    match crate::config::unlock_key(settings).map_err(|e| AuthError::UnlockKey(e.to_string()))? {
        Some(key) => decrypt_node_key(path, pem, &key),
        None => Err(AuthError::EncryptedKey(path.to_string())),
    }
}

/// Loads the material the settings name.
pub fn load(settings: &AgentSettings) -> Result<TlsMaterial, AuthError> {
    let [cert, key, ca] = paths(settings);
    let cert_pem = read(&cert)?;
    let key_pem = clear_key(settings, &key.display().to_string(), &read(&key)?)?;
    let ca_pem = read(&ca)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| AuthError::BadPem { path: cert.display().to_string(), why: e.to_string() })?;
    let me = identity_of(&pem.contents)?;
    Ok(TlsMaterial {
        cert: cert_pem,
        key: key_pem,
        ca: ca_pem,
        cluster: me.cluster,
        node_id: me.node_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_certificates_are_awaited_until_all_three_exist_and_never_with_custom_tls() {
        let dir = std::env::temp_dir().join(format!("swarm-upgrade-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = crate::config::Settings::default().agent;
        s.certificates_dir = dir.clone();
        assert_eq!(
            awaited_swarm_certificates(&s),
            Some(dir.clone()),
            "a node not in a swarm has none"
        );
        for f in ["swarm-node.crt", "swarm-node.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        assert_eq!(awaited_swarm_certificates(&s), Some(dir.clone()), "the CA is still missing");
        std::fs::write(dir.join("swarm-root-ca.crt"), "x").unwrap();
        assert_eq!(awaited_swarm_certificates(&s), None);
        std::fs::remove_dir_all(&dir).unwrap();
        // An operator's own files are never waited for: a missing one is an error to report.
        s.custom_tls = Some(crate::config::CustomTls {
            cert: dir.join("a"),
            key: dir.join("b"),
            ca: dir.join("c"),
        });
        assert_eq!(awaited_swarm_certificates(&s), None);
    }
}
