//! Certificates made in the test (rcgen) and the rustls configs that serve
//! and trust them, for the TLS tests.

use evloop::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use evloop::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use evloop::{ConnectOptions, ServerOptions, StartTlsOptions};
use std::sync::Arc;

/// A self-signed certificate for "localhost", and the configs that serve
/// and trust it.
pub struct Pki {
    pub cert: CertificateDer<'static>,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// rustls with ring, as evloop uses it.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// [`pki`] with the ALPN protocols each side offers.
pub fn pki_with_alpn(server_alpn: &[&[u8]], client_alpn: &[&[u8]]) -> Pki {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = server_alpn.iter().map(|p| p.to_vec()).collect();
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = client_alpn.iter().map(|p| p.to_vec()).collect();
    Pki {
        cert,
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// A certificate for "localhost", no ALPN.
pub fn pki() -> Pki {
    pki_with_alpn(&[], &[])
}

/// Server options serving `pki`'s certificate.
pub fn tls_server_options(pki: &Pki) -> ServerOptions {
    ServerOptions {
        ssl: Some(pki.server.clone()),
        ..Default::default()
    }
}

/// Connection options trusting `pki`'s certificate for "localhost".
pub fn tls_client_options(pki: &Pki) -> ConnectOptions {
    ConnectOptions {
        ssl: Some(pki.client.clone()),
        server_hostname: Some("localhost".into()),
        ..Default::default()
    }
}

/// `start_tls` options of a client checking the name "localhost".
pub fn localhost() -> StartTlsOptions {
    StartTlsOptions {
        server_hostname: Some("localhost".into()),
        ..Default::default()
    }
}
