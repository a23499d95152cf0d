//! A TLS echo server on evloop (protocol API, `create_server` with `ssl`)
//! and on tokio (current-thread runtime, tokio-rustls' `TlsAcceptor`,
//! `read` / `write_all`), each on a thread of its own, driven by the same
//! load generator (tokio-rustls clients on another thread): C connections
//! (10 and 100), each sending a 1 KiB message and waiting for its echo.
//! Both servers use rustls with the ring provider and the same
//! certificate (made at start with rcgen); TLS 1.3 is negotiated.
//!
//! Reports as `benches/net.rs` (see `harness`). Run: `cargo bench --bench
//! tls` (`EVLOOP_BENCH_ROUNDS=n`, a filter such as `-- c10`).

mod harness;

use evloop::ServerOptions;
use evloop::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use evloop::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use harness::{Echo, Exchange, ServerThread};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static SERVER_CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();

/// Makes the certificate, the server config both sides serve with, and
/// the client config the load generator uses.
fn make_pki() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = SERVER_CONFIG.set(Arc::new(server));
    let _ = harness::TLS_CLIENT.set(Arc::new(client));
}

fn evloop_side() -> ServerThread {
    harness::evloop_server(|lp| async move {
        let options = ServerOptions {
            ssl: Some(SERVER_CONFIG.get().unwrap().clone()),
            ..Default::default()
        };
        let server = lp
            .create_server_with(Echo::default, &["127.0.0.1"], 0, options)
            .await
            .unwrap();
        harness::served(server)
    })
}

fn tokio_side() -> ServerThread {
    let acceptor = tokio_rustls::TlsAcceptor::from(SERVER_CONFIG.get().unwrap().clone());
    harness::tokio_server(move |conn| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut conn) = acceptor.accept(conn).await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    })
}

fn main() {
    make_pki();
    harness::run(
        "tls_echo",
        "TLS echo (protocol API with ssl= against tokio-rustls read/write_all), 1 KiB messages",
        Exchange::TlsEcho,
        evloop_side,
        tokio_side,
    );
}
