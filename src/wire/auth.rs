//! Who may give an agent orders: a manager of the agent's own swarm. The TLS layer has already
//! checked that the caller's certificate chains to the swarm's root CA; this checks what the
//! certificate says: `OU=swarm-manager` and `O=<our cluster id>` (swarm node certificates carry
//! `O=<cluster id>, OU=swarm-manager|swarm-worker, CN=<node id>`).

use x509_parser::prelude::{FromDer, X509Certificate};

/// The caller, as its certificate names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// CN: the caller's node ID.
    pub node_id: String,
    /// OU: `swarm-manager` or `swarm-worker`.
    pub role: String,
    /// O: the cluster ID.
    pub cluster: String,
}

/// Why a caller is refused, or why our own identity cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No client certificate reached the service (plaintext, or TLS without client auth).
    #[error("no client certificate: agents obey only managers of their swarm over mutual TLS")]
    NoCertificate,
    /// The certificate could not be read.
    #[error("the client certificate cannot be read: {0}")]
    Unreadable(String),
    /// A worker, or another role.
    #[error("caller {node_id} is a {role}, not a swarm-manager: agents obey only managers")]
    NotManager {
        /// Its node ID.
        node_id: String,
        /// Its OU.
        role: String,
    },
    /// A manager of another swarm.
    #[error("caller {node_id} belongs to cluster {cluster}, not to this node's cluster {ours}")]
    OtherCluster {
        /// Its node ID.
        node_id: String,
        /// Its cluster.
        cluster: String,
        /// Ours.
        ours: String,
    },
    /// Our key is encrypted (the swarm is autolocked) and no unlock key was given.
    #[error(
        "{0} is encrypted (the swarm is autolocked): give the swarm's unlock key in agent.unlock_key_file (a file only root can read) or SWARM_UPGRADE_UNLOCK_KEY, or set agent.cert, agent.key and agent.ca to certificates of your own"
    )]
    EncryptedKey(String),
    /// Our key is encrypted and the unlock key given does not decrypt it.
    #[error(
        "{0} does not decrypt with the unlock key given: it is not this swarm's current key; give what `docker swarm unlock-key -q` prints on a manager now"
    )]
    WrongUnlockKey(String),
    /// Our key is encrypted in a form we do not read.
    #[error(
        "{path} is encrypted in a form swarm-upgrade does not read ({why}); set agent.cert, agent.key and agent.ca to certificates of your own"
    )]
    UnreadableKey {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The unlock key given cannot be used.
    #[error("{0}")]
    UnlockKey(String),
    /// A PEM file is malformed.
    #[error("{path}: not a PEM file ({why})")]
    BadPem {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// Reads O, OU and CN from a DER certificate.
pub(crate) fn identity_of(der: &[u8]) -> Result<Caller, AuthError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| AuthError::Unreadable(e.to_string()))?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string).unwrap_or_default()
    };
    Ok(Caller {
        node_id: first(&mut subject.iter_common_name()),
        role: first(&mut subject.iter_organizational_unit()),
        cluster: first(&mut subject.iter_organization()),
    })
}

/// Admits a caller whose leaf certificate names a manager of `own_cluster`.
pub fn authorize(leaf: Option<&[u8]>, own_cluster: &str) -> Result<Caller, AuthError> {
    let caller = identity_of(leaf.ok_or(AuthError::NoCertificate)?)?;
    if caller.role != "swarm-manager" {
        return Err(AuthError::NotManager { node_id: caller.node_id, role: caller.role });
    }
    if caller.cluster != own_cluster {
        return Err(AuthError::OtherCluster {
            node_id: caller.node_id,
            cluster: caller.cluster,
            ours: own_cluster.to_string(),
        });
    }
    Ok(caller)
}

/// Removes RFC 1421 headers (such as the swarm's `kek-version:` and `raft-dek:`) from PEM
/// blocks, which common PEM readers refuse; an encrypted key is reported as such.
pub fn strip_pem_headers(path: &str, pem: &str) -> Result<String, AuthError> {
    if is_encrypted(pem) {
        return Err(AuthError::EncryptedKey(path.to_string()));
    }
    remove_headers(path, pem)
}

/// Whether a PEM key is encrypted (an autolocked swarm's manager key).
pub(crate) fn is_encrypted(pem: &str) -> bool {
    pem.contains("Proc-Type: 4,ENCRYPTED") || pem.contains("BEGIN ENCRYPTED PRIVATE KEY")
}

/// The PEM blocks of `pem` without their RFC 1421 headers.
pub(crate) fn remove_headers(path: &str, pem: &str) -> Result<String, AuthError> {
    if !pem.contains("-----BEGIN ") {
        return Err(AuthError::BadPem { path: path.to_string(), why: "no BEGIN line".into() });
    }
    let mut out = String::new();
    let mut in_headers = false;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN ") {
            in_headers = true;
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if in_headers {
            if line.contains(':') {
                continue;
            }
            in_headers = false;
            if line.trim().is_empty() {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_key_headers_are_removed_and_encrypted_keys_named() {
        let swarm_key = "-----BEGIN EC PRIVATE KEY-----\nkek-version: 0\nraft-dek: abc\n\nMHcCAQEEI\nAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            strip_pem_headers("k", swarm_key).unwrap(),
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\nAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"
        );
        let plain = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(strip_pem_headers("c", plain).unwrap(), plain);
        let locked = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\nkek-version: 3\n\nxyz\n-----END EC PRIVATE KEY-----\n";
        let e = strip_pem_headers("/var/lib/docker/swarm/certificates/swarm-node.key", locked)
            .unwrap_err();
        assert!(
            e.to_string().contains("autolocked") && e.to_string().contains("agent.cert"),
            "{e}"
        );
        assert!(matches!(strip_pem_headers("x", "garbage"), Err(AuthError::BadPem { .. })));
    }

    #[test]
    fn no_or_unreadable_certificate_is_refused() {
        assert_eq!(authorize(None, "c1"), Err(AuthError::NoCertificate));
        assert!(matches!(authorize(Some(b"not der"), "c1"), Err(AuthError::Unreadable(_))));
    }
}
