//! TLS client settings shared by the OTLP and syslog exporters: rustls with the ring
//! provider; trust from a configured CA file (PEM), else the system's store; an optional
//! client certificate and key (PEM) for mutual TLS.
use std::{path::PathBuf, sync::Arc};

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
};
use serde::Deserialize;

/// `ca_file`, `client_cert`, `client_key` of an output's configuration section.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificates (PEM) the receiver's certificate must chain to; unset: the system's
    /// trust store.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for receivers that require mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
}

/// TLS settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no usable PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("client_cert and client_key must be set together")]
    HalfIdentity,
    #[error("no trusted CA: set ca_file (the system trust store is empty)")]
    NoRoots,
    #[error("invalid TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The PEM contents of [`TlsFiles`], read once.
#[derive(Clone, Debug, Default)]
pub struct TlsPem {
    pub ca: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// Reads the files.
    pub fn read(&self) -> Result<TlsPem, TlsError> {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|source| TlsError::Read { path: p.clone(), source });
        let ca = self.ca_file.as_ref().map(read).transpose()?;
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => return Err(TlsError::HalfIdentity),
        };
        Ok(TlsPem { ca, identity })
    }

    /// A rustls client configuration offering `alpn` protocols.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let pem = self.read()?;
        let mut roots = RootCertStore::empty();
        match (&pem.ca, &self.ca_file) {
            (Some(ca), Some(path)) => {
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(ca).filter_map(Result::ok).collect();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(TlsError::Pem { path: path.clone(), what: "CA certificate" });
                }
            }
            _ => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots);
        }
        // ring rather than aws-lc-rs: no C/cmake build; ring has no post-quantum key exchange.
        #[expect(deprecated, reason = "ring's provider is deprecated only for lacking post-quantum kx")]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match (&pem.identity, &self.client_cert, &self.client_key) {
            (Some((cert, key)), Some(cert_path), Some(key_path)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(cert).filter_map(Result::ok).collect();
                if chain.is_empty() {
                    return Err(TlsError::Pem { path: cert_path.clone(), what: "certificate" });
                }
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|_| TlsError::Pem { path: key_path.clone(), what: "private key" })?;
                builder.with_client_auth_cert(chain, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}
