//! `default_client_config` (feature `native-roots`): the platform's trust
//! store. One test in this binary: it points `SSL_CERT_FILE` at a file of
//! its own, which the process-wide environment would leak to others.
#![cfg(feature = "native-roots")]

mod common;

use common::net::{Echo, Ev, Rec, received, run_until};
use common::tls::{pki, tls_server_options};
use common::{Log, within};
use evloop::{ConnectOptions, EventLoop};
use std::time::Duration;

#[test]
fn the_default_client_config_trusts_the_platform_store_and_checks_names() {
    within(Duration::from_secs(30), || {
        let pki = pki();
        // The platform store, as the environment names it: here a bundle
        // holding the test's own certificate.
        let bundle = std::env::temp_dir().join(format!("evloop-roots-{}.pem", std::process::id()));
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64(&pki.cert)
        );
        std::fs::write(&bundle, pem).unwrap();
        // Safety: this binary's only test; no other thread reads the
        // environment now.
        unsafe {
            std::env::set_var("SSL_CERT_FILE", &bundle);
            std::env::remove_var("SSL_CERT_DIR");
        }
        let config = evloop::default_client_config().unwrap();
        std::fs::remove_file(&bundle).unwrap();

        let lp = EventLoop::new().unwrap();
        let server = lp
            .run_until_complete(lp.create_server_with(
                Echo::default,
                &["127.0.0.1"],
                0,
                tls_server_options(&pki),
            ))
            .unwrap()
            .unwrap();
        let port = server.sockets()[0].as_socket().unwrap().port();
        let connect = |name: &str| {
            let log = Log::<Ev>::new();
            let rec = Rec::new(&log);
            let options = ConnectOptions {
                ssl: Some(config.clone()),
                server_hostname: Some(name.into()),
                ..Default::default()
            };
            let made = lp.run_until_complete(lp.create_connection_with(
                move || rec,
                Some("127.0.0.1"),
                port,
                options,
            ));
            (made.unwrap(), log)
        };
        // Trusted, and the right name: the echo comes back.
        let (transport, log) = connect("localhost");
        let transport = transport.unwrap();
        transport.write(b"ping").unwrap();
        run_until(&lp, Duration::from_secs(20), || received(&log) == b"ping");
        transport.close();
        // The wrong name: refused, as asyncio's check_hostname does.
        let (refused, _) = connect("not-localhost.example");
        let err = refused.unwrap_err();
        assert!(matches!(err, evloop::Error::Tls(_)), "{err:?}");
        server.close();
        lp.close().unwrap();
    });
}

/// Standard base64 with line breaks every 64 characters (PEM's body).
fn base64(der: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}
