//! A TLS echo server and client on one loop, with a certificate made at
//! start (rcgen): `start_server` and `open_connection` with `ssl=`, what
//! the handshake negotiated, then a plain connection upgraded with
//! `start_tls` (STARTTLS).
//!
//! ```text
//! cargo run --example tls_echo
//! ```

use evloop::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use evloop::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use evloop::{
    ConnectOptions, EventLoop, ExtraInfo, ServerOptions, StartTlsOptions, StreamReader,
    StreamWriter, TlsContext,
};
use std::sync::Arc;

/// A self-signed certificate for "localhost": the server's config, and a
/// client config that trusts it. A client of public hosts trusts what the
/// platform trusts instead, in one call (asyncio's
/// `ssl.create_default_context()`; feature `native-roots`):
///
/// ```text
/// let options = ConnectOptions {
///     ssl: Some(evloop::default_client_config()?),
///     server_hostname: Some("example.org".into()),
///     ..Default::default()
/// };
/// ```
fn configs() -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), Box<dyn std::error::Error>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    server.alpn_protocols = vec![b"echo/1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(cert)?;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"echo/1".to_vec()];
    Ok((Arc::new(server), Arc::new(client)))
}

/// Echoes lines until the peer closes.
async fn echo(mut reader: StreamReader, writer: StreamWriter) {
    while let Ok(line) = reader.readline().await {
        if line.is_empty() || writer.write(&line).is_err() || writer.drain().await.is_err() {
            break;
        }
    }
    writer.close();
}

fn show(writer: &StreamWriter, name: &str) -> String {
    match writer.get_extra_info(name) {
        Some(ExtraInfo::Text(t)) => t,
        Some(ExtraInfo::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
        Some(ExtraInfo::Certificates(c)) => format!("{} certificate(s)", c.len()),
        _ => "-".into(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (server_config, client_config) = configs()?;
    let lp = EventLoop::new()?;
    lp.run_until_complete(async {
        // 1. A TLS server and a TLS client.
        let options = ServerOptions {
            ssl: Some(server_config.clone()),
            ..Default::default()
        };
        let server = lp
            .start_server_with(echo, &["127.0.0.1"], 0, options, evloop::DEFAULT_LIMIT)
            .await?;
        let port = server.sockets()[0]
            .as_socket()
            .expect("an IP socket")
            .port();
        println!("TLS echo server on 127.0.0.1:{port}");
        let options = ConnectOptions {
            ssl: Some(client_config.clone()),
            server_hostname: Some("localhost".into()),
            ..Default::default()
        };
        let (mut reader, writer) = lp
            .open_connection_with(Some("127.0.0.1"), port, options, evloop::DEFAULT_LIMIT)
            .await?;
        println!(
            "client: {} / {}, ALPN {}, server sent {}",
            show(&writer, "tls_version"),
            show(&writer, "cipher"),
            show(&writer, "alpn_protocol"),
            show(&writer, "peercert"),
        );
        for line in ["hello over TLS\n", "and again\n"] {
            writer.write(line.as_bytes())?;
            let echoed = reader.readline().await?;
            print!("client got: {}", String::from_utf8_lossy(&echoed));
        }
        writer.close();
        writer.wait_closed().await?;
        server.close();

        // 2. STARTTLS: a plain connection, upgraded by both sides.
        let upgrade_config = server_config.clone();
        let plain = lp
            .start_server(
                move |mut reader, writer| {
                    let config = upgrade_config.clone();
                    async move {
                        if !matches!(reader.readline().await, Ok(l) if l == b"STARTTLS\n") {
                            return writer.close();
                        }
                        let _ = writer.write(b"220 go ahead\n");
                        let upgraded = writer
                            .start_tls(TlsContext::Server(config), StartTlsOptions::default())
                            .await;
                        if upgraded.is_ok() {
                            echo(reader, writer).await;
                        }
                    }
                },
                Some("127.0.0.1"),
                0,
            )
            .await?;
        let port = plain.sockets()[0].as_socket().expect("an IP socket").port();
        let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await?;
        writer.write(b"STARTTLS\n")?;
        print!(
            "plain answer: {}",
            String::from_utf8_lossy(&reader.readline().await?)
        );
        let options = StartTlsOptions {
            server_hostname: Some("localhost".into()),
            ..Default::default()
        };
        writer
            .start_tls(TlsContext::Client(client_config), options)
            .await?;
        writer.write(b"now encrypted\n")?;
        print!(
            "after start_tls ({}): {}",
            show(&writer, "tls_version"),
            String::from_utf8_lossy(&reader.readline().await?)
        );
        writer.close();
        writer.wait_closed().await?;
        plain.close();
        plain.wait_closed().await;
        Ok::<_, evloop::Error>(())
    })??;
    lp.close()?;
    Ok(())
}
