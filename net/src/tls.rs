//! TLS for dask/1 connections: a process's TLS settings ([`TlsConfig`],
//! from Dask's three files: `--tls-ca-file`, `--tls-cert`, `--tls-key`),
//! a cluster CA and certificates made in one step ([`ClusterCa`]), and
//! the one-line explanations of TLS failures.
//!
//! The rules, as Dask's: an address `tls://HOST:PORT` is TLS from its
//! first byte; a listener needs a certificate and key; with a CA file it
//! requires every connector to present a certificate the CA signed
//! (mutual TLS). A connector needs the CA file (it checks the acceptor's
//! certificate against it) and presents its own certificate when it has
//! one. Host names are not checked (Dask does not either): a cluster's
//! CA signs only the cluster's certificates, so a certificate it signed
//! is the cluster's wherever it is served from. TLS 1.3 only: every end
//! is dask-rs's.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

/// TLS settings that could not be made: which file, what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// A process's TLS settings: what its listeners serve and how it checks
/// the acceptors it connects to. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: Option<Arc<ServerConfig>>,
    connector: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("accepts", &self.acceptor.is_some())
            .field("connects", &self.connector.is_some())
            .finish()
    }
}

/// The PEM texts of a process's TLS material.
#[derive(Debug, Clone, Default)]
pub struct TlsPem {
    /// The CA certificate(s) this process trusts.
    pub ca: Option<String>,
    /// Its certificate chain (leaf first).
    pub cert: Option<String>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

impl TlsConfig {
    /// Reads Dask's three files: `ca` (`--tls-ca-file`), `cert`
    /// (`--tls-cert`; may also hold the key) and `key` (`--tls-key`).
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<TlsConfig, TlsError> {
        let read = |flag: &str, path: Option<&Path>| -> Result<Option<String>, TlsError> {
            path.map(|p| {
                std::fs::read_to_string(p)
                    .map_err(|e| TlsError(format!("{flag} {}: cannot be read: {e}", p.display())))
            })
            .transpose()
        };
        let pem = TlsPem {
            ca: read("--tls-ca-file", ca)?,
            key: match key {
                Some(_) => read("--tls-key", key)?,
                // Dask allows the key appended to the certificate file.
                None => read("--tls-cert", cert)?.filter(|text| text.contains("PRIVATE KEY-----")),
            },
            cert: read("--tls-cert", cert)?,
        };
        TlsConfig::from_pem(&pem)
    }

    /// The settings from PEM texts. A listener needs `cert` and `key`; a
    /// connector needs `ca`; with `ca` a listener requires connectors'
    /// certificates (mutual TLS).
    pub fn from_pem(pem: &TlsPem) -> Result<TlsConfig, TlsError> {
        let roots = pem.ca.as_deref().map(roots).transpose()?;
        let identity = match (&pem.cert, &pem.key) {
            (Some(cert), Some(key)) => Some((chain(cert)?, private_key(key)?)),
            (Some(_), None) => {
                return Err(TlsError(
                    "--tls-cert needs --tls-key (or the key appended to the certificate file)"
                        .into(),
                ))
            }
            (None, Some(_)) => return Err(TlsError("--tls-key needs --tls-cert".into())),
            (None, None) => None,
        };
        if roots.is_none() && identity.is_none() {
            return Err(TlsError(
                "TLS needs --tls-ca-file (to check peers) and, to listen, --tls-cert and \
                 --tls-key"
                    .into(),
            ));
        }
        let versions = &[&rustls::version::TLS13];
        let acceptor = match &identity {
            None => None,
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider())
                    .with_protocol_versions(versions)
                    .map_err(tls_setup)?;
                let builder = match &roots {
                    Some(roots) => builder.with_client_cert_verifier(
                        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                            .build()
                            .map_err(|e| TlsError(format!("--tls-ca-file: {e}")))?,
                    ),
                    None => builder.with_no_client_auth(),
                };
                let config = builder
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| TlsError(format!("--tls-cert/--tls-key: {e}")))?;
                Some(Arc::new(config))
            }
        };
        let connector = match &roots {
            None => None,
            Some(roots) => {
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                        .build()
                        .map_err(|e| TlsError(format!("--tls-ca-file: {e}")))?;
                let builder = ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(versions)
                    .map_err(tls_setup)?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyNameVerifier(verifier)));
                let config = match identity {
                    Some((chain, key)) => builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| TlsError(format!("--tls-cert/--tls-key: {e}")))?,
                    None => builder.with_no_client_auth(),
                };
                Some(Arc::new(config))
            }
        };
        Ok(TlsConfig {
            acceptor,
            connector,
        })
    }

    /// What a listener serves, if this process can listen with TLS.
    pub fn acceptor(&self) -> Option<&Arc<ServerConfig>> {
        self.acceptor.as_ref()
    }

    /// How to connect, if this process can check acceptors.
    pub fn connector(&self) -> Option<&Arc<ClientConfig>> {
        self.connector.as_ref()
    }

    /// Whether listeners can serve TLS (a certificate and key were given).
    pub fn can_listen(&self) -> bool {
        self.acceptor.is_some()
    }

    /// Whether connections can be made (a CA was given).
    pub fn can_connect(&self) -> bool {
        self.connector.is_some()
    }
}

fn tls_setup(e: rustls::Error) -> TlsError {
    TlsError(format!("TLS setup: {e}"))
}

fn roots(pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError(format!("--tls-ca-file: not PEM: {e}")))?;
        store
            .add(cert)
            .map_err(|e| TlsError(format!("--tls-ca-file: {e}")))?;
    }
    if store.is_empty() {
        return Err(TlsError(
            "--tls-ca-file holds no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(Arc::new(store))
}

fn chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("--tls-cert: not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError(
            "--tls-cert holds no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(chain)
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        TlsError(format!(
            "--tls-key holds no private key (expected -----BEGIN PRIVATE KEY-----): {e}"
        ))
    })
}

/// Checks an acceptor's certificate chain against the CA and ignores
/// the name in it (see the module docs).
#[derive(Debug)]
struct AnyNameVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// One line on why a TLS session failed, for the person who reads it:
/// which side's certificate, what is wrong with it, which flag fixes it.
pub(crate) fn explain(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    use rustls::Error as E;
    let theirs = |what: &str| format!("TLS: the peer's certificate {what}");
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => theirs(
                "is not signed by the CA this side trusts (check --tls-ca-file on both sides)",
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                theirs("has expired (make new certificates: dask-rs credentials tls)")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                theirs("is not valid yet (is this machine's clock right?)")
            }
            // Another CA of the same name signed it.
            CertificateError::BadSignature => theirs(
                "is not signed by the CA this side trusts (check --tls-ca-file on both sides)",
            ),
            other => theirs(&format!("was refused: {other:?}")),
        },
        E::NoCertificatesPresented => "TLS: the peer presented no certificate; this side \
                                       requires one signed by its CA (give the peer \
                                       --tls-cert and --tls-key)"
            .into(),
        E::AlertReceived(alert) => match alert {
            A::UnknownCA | A::BadCertificate | A::CertificateUnknown => {
                "TLS: the peer refused this side's certificate (it is not signed by the CA \
                 the peer trusts: check --tls-ca-file and --tls-cert on both sides)"
                    .into()
            }
            A::CertificateExpired => {
                "TLS: the peer refused this side's certificate as expired (make new \
                 certificates: dask-rs credentials tls)"
                    .into()
            }
            A::CertificateRequired => "TLS: the peer requires a certificate from this side \
                                       (give it --tls-cert and --tls-key)"
                .into(),
            other => format!("TLS: the peer ended the session: {other:?}"),
        },
        E::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "TLS: the peer answered in plain bytes, not TLS: it is probably a plain dask/1 \
             address (connect with tcp://HOST:PORT)"
                .into()
        }
        other => format!("TLS: {other}"),
    }
}

/// A cluster's own certificate authority, made in one step (Dask's
/// `Security.temporary()` habit, kept on disk): it signs one certificate
/// that every process of the cluster uses, as listener and as connector.
pub struct ClusterCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// How long a [`ClusterCa`]'s certificates are valid by default.
pub const CERTIFICATE_DAYS: i64 = 365;

impl ClusterCa {
    /// A new CA (ECDSA P-256), valid for [`CERTIFICATE_DAYS`] days from an
    /// hour ago (clocks of a cluster differ a little).
    pub fn generate() -> Result<ClusterCa, TlsError> {
        let mut params = rcgen::CertificateParams::default();
        // A name of its own, so that a certificate of another cluster is
        // told apart by its issuer's name, not only by its signature.
        let mut id = [0u8; 6];
        crate::credentials::fill_random(&mut id);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("dask-rs cluster CA {id}"),
        );
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut params, -1, CERTIFICATE_DAYS * 24);
        let key = rcgen::KeyPair::generate().map_err(cert_error)?;
        let cert = params.self_signed(&key).map_err(cert_error)?;
        Ok(ClusterCa { params, key, cert })
    }

    /// The CA certificate, for everyone's `--tls-ca-file`.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for the cluster's processes (name `dask-internal`,
    /// as Dask's temporary one, plus `hosts`), valid for `hours` from an
    /// hour ago; a negative `hours` makes one that has expired (tests).
    pub fn issue(&self, hosts: &[String], hours: i64) -> Result<CertifiedKey, TlsError> {
        let mut names = vec!["dask-internal".to_string(), "localhost".to_string()];
        names.extend(hosts.iter().cloned());
        let mut params = rcgen::CertificateParams::new(names).map_err(cert_error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dask-internal");
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        if hours < 0 {
            set_validity(&mut params, -48, hours);
        } else {
            set_validity(&mut params, -1, hours);
        }
        let key = rcgen::KeyPair::generate().map_err(cert_error)?;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;
        Ok(CertifiedKey {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A self-signed certificate that no cluster CA signed (tests of a
    /// stranger's certificate).
    pub fn self_signed() -> Result<CertifiedKey, TlsError> {
        let params =
            rcgen::CertificateParams::new(vec!["dask-internal".to_string()]).map_err(cert_error)?;
        let key = rcgen::KeyPair::generate().map_err(cert_error)?;
        let cert = params.self_signed(&key).map_err(cert_error)?;
        Ok(CertifiedKey {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// Where [`write_cluster_files`] put a cluster's TLS files.
#[derive(Debug, Clone)]
pub struct ClusterFiles {
    /// The CA certificate (`--tls-ca-file`).
    pub ca: std::path::PathBuf,
    /// The certificate and its key (`--tls-cert`), owner-only.
    pub cert: std::path::PathBuf,
}

/// `dask-rs credentials tls`: a new [`ClusterCa`] and one certificate
/// (naming `hosts` too, valid `days`), written into `dir` (made
/// owner-only when absent) as `ca.pem` and `cluster.pem` (certificate
/// then key, mode 0600). Existing files are never replaced.
pub fn write_cluster_files(
    dir: &Path,
    hosts: &[String],
    days: u32,
) -> Result<ClusterFiles, TlsError> {
    use std::io::Write;
    let ca = ClusterCa::generate()?;
    let issued = ca.issue(hosts, i64::from(days.max(1)) * 24)?;
    let files = ClusterFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cluster.pem"),
    };
    let failed = |path: &Path, e: std::io::Error| {
        TlsError(format!("{}: cannot be written: {e}", path.display()))
    };
    if !dir.exists() {
        crate::credentials::create_private_dir(dir).map_err(|e| failed(dir, e))?;
    }
    for (path, text) in [
        (&files.ca, ca.cert_pem()),
        (&files.cert, format!("{}{}", issued.cert, issued.key)),
    ] {
        if path.exists() {
            return Err(TlsError(format!(
                "{} already exists (never replaced): remove it, or give another --dir",
                path.display()
            )));
        }
        let mut file = crate::credentials::private_file(path).map_err(|e| failed(path, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| failed(path, e))?;
    }
    Ok(files)
}

fn set_validity(params: &mut rcgen::CertificateParams, from_hours: i64, to_hours: i64) {
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
    let shifted = |hours: i64| {
        let by = std::time::Duration::from_secs(hours.unsigned_abs() * 3600);
        if hours < 0 {
            now - by
        } else {
            now + by
        }
    };
    params.not_before = shifted(from_hours);
    params.not_after = shifted(to_hours);
}

fn cert_error(e: rcgen::Error) -> TlsError {
    TlsError(format!("cannot make a certificate: {e}"))
}
