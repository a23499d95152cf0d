//! Name resolution (asyncio: `loop.getaddrinfo`, `loop.getnameinfo`): the
//! C library's `getaddrinfo(3)` / `getnameinfo(3)`, which block, run on the
//! loop's default executor, as asyncio runs them; IP literals are answered
//! at once without a lookup (asyncio's `_ipaddr_info`).

use crate::error::Error;
use crate::event_loop::EventLoop;
use socket2::{Domain, SockAddr, Type};
use std::ffi::{CStr, CString};
use std::net::{IpAddr, SocketAddr};

/// One result of [`EventLoop::getaddrinfo`] (asyncio's 5-tuple `(family,
/// type, proto, canonname, sockaddr)`).
#[derive(Clone, Debug)]
pub struct AddrInfo {
    /// The address family (`AF_INET`, `AF_INET6`).
    pub family: Domain,
    /// The socket type (`SOCK_STREAM`, `SOCK_DGRAM`).
    pub socktype: Type,
    /// The protocol (`IPPROTO_TCP`, ...; 0 for any).
    pub protocol: i32,
    /// The canonical name, if `AI_CANONNAME` asked for it.
    pub canonname: String,
    /// The address.
    pub addr: SockAddr,
}

/// The hints of a lookup (asyncio's `family`, `type`, `proto`, `flags`
/// arguments); the default asks for everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddrInfoHints {
    /// `AF_INET`, `AF_INET6`, or `None` for either.
    pub family: Option<Domain>,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, or `None` for either.
    pub socktype: Option<Type>,
    /// A protocol number, or 0.
    pub protocol: i32,
    /// `AI_*` flags (`libc::AI_PASSIVE`, `libc::AI_CANONNAME`, ...).
    pub flags: i32,
}

/// The answer for an IP literal host (and a numeric port), without a
/// lookup; `None` if a lookup is needed.
fn literal(host: Option<&str>, port: u16, hints: &AddrInfoHints) -> Option<Vec<AddrInfo>> {
    let host = host?;
    let ip: IpAddr = host.parse().ok()?;
    let family = match ip {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    if hints.family.is_some_and(|f| f != family) {
        return None;
    }
    // Only where the answer is certain (asyncio's `_ipaddr_info` rule): a
    // stream or datagram type, with no protocol or its own. Anything else
    // (no type: the C library also lists raw sockets; a mismatched
    // protocol: it refuses) goes to the real lookup.
    let (socktype, own) = match hints.socktype? {
        t if t == Type::STREAM => (t, libc::IPPROTO_TCP),
        t if t == Type::DGRAM => (t, libc::IPPROTO_UDP),
        _ => return None,
    };
    if hints.protocol != 0 && hints.protocol != own {
        return None;
    }
    Some(vec![AddrInfo {
        family,
        socktype,
        protocol: own,
        // The C library names a literal after itself when asked.
        canonname: if hints.flags & libc::AI_CANONNAME != 0 {
            host.to_string()
        } else {
            String::new()
        },
        addr: SockAddr::from(SocketAddr::new(ip, port)),
    }])
}

/// `getaddrinfo(3)`, blocking.
pub(crate) fn getaddrinfo_blocking(
    host: Option<&str>,
    port: u16,
    hints: &AddrInfoHints,
) -> Result<Vec<AddrInfo>, Error> {
    let host = match host {
        Some(h) => Some(
            CString::new(h)
                .map_err(|_| Error::InvalidArgument("host name contains a NUL byte".into()))?,
        ),
        None => None,
    };
    let service = CString::new(port.to_string()).expect("digits hold no NUL");
    // Safety: a zeroed addrinfo is a valid "no hints" value.
    let mut h: libc::addrinfo = unsafe { std::mem::zeroed() };
    h.ai_family = hints.family.map_or(libc::AF_UNSPEC, i32::from);
    h.ai_socktype = hints.socktype.map_or(0, i32::from);
    h.ai_protocol = hints.protocol;
    h.ai_flags = hints.flags | libc::AI_NUMERICSERV;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // Safety: valid C strings (or null), a valid hints struct, and an out
    // pointer we own.
    let rc = unsafe {
        libc::getaddrinfo(
            host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
            service.as_ptr(),
            &h,
            &mut res,
        )
    };
    if rc != 0 {
        return Err(gai_error(rc));
    }
    let mut out = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // Safety: `cur` walks the list getaddrinfo returned, freed below.
        let ai = unsafe { &*cur };
        if let Some(addr) = unsafe { sockaddr_of(ai.ai_addr, ai.ai_addrlen) } {
            let canonname = if ai.ai_canonname.is_null() {
                String::new()
            } else {
                // Safety: a NUL-terminated string inside the list.
                unsafe { CStr::from_ptr(ai.ai_canonname) }
                    .to_string_lossy()
                    .into_owned()
            };
            out.push(AddrInfo {
                family: Domain::from(ai.ai_family),
                socktype: Type::from(ai.ai_socktype),
                protocol: ai.ai_protocol,
                canonname,
                addr,
            });
        }
        cur = ai.ai_next;
    }
    // Safety: the list getaddrinfo allocated, freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// Copies a C socket address into a `SockAddr`.
///
/// # Safety
/// `addr` points to `len` readable bytes of a socket address (or is null).
unsafe fn sockaddr_of(addr: *const libc::sockaddr, len: libc::socklen_t) -> Option<SockAddr> {
    if addr.is_null() {
        return None;
    }
    let len = len as usize;
    if len > std::mem::size_of::<libc::sockaddr_storage>() {
        return None;
    }
    // Safety (of `try_init`): we copy `len` bytes into the storage it
    // provides and report that length.
    let ((), sa) = unsafe {
        SockAddr::try_init(|storage, out_len| {
            std::ptr::copy_nonoverlapping(addr as *const u8, storage.cast::<u8>(), len);
            *out_len = len as libc::socklen_t;
            Ok(())
        })
    }
    .ok()?;
    Some(sa)
}

fn gai_error(code: i32) -> Error {
    if code == libc::EAI_SYSTEM {
        return Error::Io(std::io::Error::last_os_error());
    }
    // Safety: gai_strerror returns a static NUL-terminated string.
    let message = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
        .to_string_lossy()
        .into_owned();
    Error::AddressLookup { code, message }
}

/// `getnameinfo(3)`, blocking.
pub(crate) fn getnameinfo_blocking(addr: &SockAddr, flags: i32) -> Result<(String, String), Error> {
    let mut host = [0 as libc::c_char; 1025];
    let mut serv = [0 as libc::c_char; 32];
    // Safety: the address and its length come from a `SockAddr`; the
    // output buffers are ours, with their lengths.
    let rc = unsafe {
        libc::getnameinfo(
            addr.as_ptr() as *const libc::sockaddr,
            addr.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    if rc != 0 {
        return Err(gai_error(rc));
    }
    // Safety: getnameinfo NUL-terminates what it writes.
    let s = |b: &[libc::c_char]| {
        unsafe { CStr::from_ptr(b.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Ok((s(&host), s(&serv)))
}

impl EventLoop {
    /// Resolves `host` and `port` (asyncio: `loop.getaddrinfo`) on the
    /// default executor; an IP literal is answered at once. `None` as the
    /// host means the local host, or with `AI_PASSIVE` every interface
    /// (what a server binds). Errors: [`Error::AddressLookup`] with the C
    /// library's code and message (asyncio's `socket.gaierror`, e.g.
    /// "[Errno -2] Name or service not known"), [`Error::Closed`].
    ///
    /// ```
    /// use evloop::{AddrInfoHints, EventLoop};
    ///
    /// let lp = EventLoop::new()?;
    /// let found = lp.run_until_complete(async {
    ///     lp.getaddrinfo(Some("127.0.0.1"), 80, AddrInfoHints::default()).await
    /// })??;
    /// assert_eq!(found[0].addr.as_socket().unwrap().port(), 80);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn getaddrinfo(
        &self,
        host: Option<&str>,
        port: u16,
        hints: AddrInfoHints,
    ) -> Result<Vec<AddrInfo>, Error> {
        if let Some(found) = literal(host, port, &hints) {
            return Ok(found);
        }
        let host = host.map(str::to_owned);
        self.run_in_executor(None, move || {
            getaddrinfo_blocking(host.as_deref(), port, &hints)
        })?
        .await
        .map_err(|e| Error::InvalidState(task_failure(e)))?
    }

    /// The host and service names of `addr` (asyncio: `loop.getnameinfo`),
    /// on the default executor; `flags` are `NI_*` flags.
    pub async fn getnameinfo(
        &self,
        addr: &SockAddr,
        flags: i32,
    ) -> Result<(String, String), Error> {
        let addr = addr.clone();
        self.run_in_executor(None, move || getnameinfo_blocking(&addr, flags))?
            .await
            .map_err(|e| Error::InvalidState(task_failure(e)))?
    }
}

/// A lookup job that did not return (its pool dropped it, it panicked).
fn task_failure(e: crate::TaskError) -> &'static str {
    if e.is_cancelled() {
        "the lookup was cancelled"
    } else {
        "the lookup did not complete"
    }
}
