//! A TLS client configuration for public hosts in one call (asyncio's
//! `ssl.create_default_context()`): the platform's trusted certificates
//! (feature `native-roots`, through `rustls-native-certs`), with rustls's
//! safe defaults and the ring provider evloop is built with.

use crate::error::Error;
use std::sync::Arc;

/// A client configuration that trusts what the platform trusts (the
/// system's certificate store; on Linux the distribution's bundle, or the
/// file and directory named by `SSL_CERT_FILE` / `SSL_CERT_DIR`), checks
/// host names, and offers TLS 1.2 and 1.3: asyncio's
/// `ssl.create_default_context()`, for `ssl=` on
/// [`EventLoop::create_connection_with`](crate::EventLoop::create_connection_with)
/// and `open_connection_with`. Certificates that fail to parse are
/// skipped. Feature `native-roots`.
///
/// Error: [`Error::Io`] if the store cannot be read or holds no usable
/// certificate (every connection would fail to verify).
///
/// ```no_run
/// use evloop::{ConnectOptions, EventLoop};
///
/// let lp = EventLoop::new()?;
/// let options = ConnectOptions {
///     ssl: Some(evloop::default_client_config()?),
///     server_hostname: Some("example.org".into()),
///     ..Default::default()
/// };
/// # let _ = (lp, options);
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn default_client_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _skipped) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(e) => format!("no trusted certificate could be loaded: {e}"),
            None => "the platform's certificate store is empty".to_string(),
        };
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            why,
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
