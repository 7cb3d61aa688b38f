//! Socket construction: outbound TCP/UDP sockets with routing options (fwmark, interface,
//! source address, fast open), listeners, and start-up name resolution.
//!
//! Sockets are created with nix so options can be set between `socket()` and
//! `bind()`/`connect()`, which std does not allow, then handed out as std types.

use super::{ctx, ctx_hint};
use crate::quote::Quoted;
use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Options applied to sockets that go to the upstream (Shadowsocks server, or targets for ss-server).
#[derive(Clone, Debug, Default)]
pub struct OutboundOpts {
    /// SO_MARK, so policy routing can keep proxy traffic out of the redirect rules.
    pub fwmark: Option<u32>,
    /// SO_BINDTODEVICE (libev `-i`).
    pub interface: Option<String>,
    /// Source address (libev `-b` on the outbound side); ignored for targets of the other family.
    pub bind_addr: Option<IpAddr>,
    /// TCP_NODELAY.
    pub no_delay: bool,
    /// TCP_FASTOPEN_CONNECT; silently dropped when the kernel lacks it.
    pub fast_open: bool,
}

/// libev uses `SOMAXCONN`; 1024 absorbs connection bursts (a browser opening a page through
/// a router) without a SYN flood being able to queue unbounded work.
const LISTEN_BACKLOG: libc::c_int = 1024;
/// Pending fast-open requests without a completed handshake the kernel keeps per listener.
const FASTOPEN_QUEUE: libc::c_int = 256;

/// Creates a non-blocking TCP socket for `target`'s family, applies `opts` (SO_MARK,
/// SO_BINDTODEVICE, bind to bind_addr:0 if the family matches, TCP_NODELAY,
/// TCP_FASTOPEN_CONNECT when fast_open), and STARTS a non-blocking connect (EINPROGRESS is
/// success). The caller waits for writability and checks `take_error()`.
///
/// With fast open and a cached cookie the kernel defers the handshake to the first write:
/// the socket is writable at once and connection errors surface on the first write or read,
/// so the caller must write (salt + address + first payload) before it reads.
pub fn start_tcp_connect(target: SocketAddr, opts: &OutboundOpts) -> io::Result<TcpStream> {
    let fd = new_socket(target, SockType::Stream)?;
    apply_outbound(&fd, target, opts, true)?;
    if opts.no_delay {
        setsockopt(&fd, sockopt::TcpNoDelay, &true).map_err(|e| ctx(e, "TCP_NODELAY"))?;
    }
    if opts.fast_open {
        if let Err(e) = setsockopt(&fd, sockopt::TcpFastOpenConnect, &true) {
            // Pre-4.11 kernels: a config asking for fast open must not cost every connection.
            warn_once(&TFO_CONNECT_WARNED, "TCP_FASTOPEN_CONNECT", e);
        }
    }
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

/// Non-blocking UDP socket bound to the unspecified address of `peer`'s family (port 0),
/// with opts applied (SO_MARK, SO_BINDTODEVICE, bind_addr).
pub fn outbound_udp_socket(peer: SocketAddr, opts: &OutboundOpts) -> io::Result<UdpSocket> {
    let fd = new_socket(peer, SockType::Datagram)?;
    // apply_outbound binds when bind_addr matches; otherwise bind here so the socket has a
    // port before its first send and can be polled for replies right away.
    if !apply_outbound(&fd, peer, opts, false)? {
        let any = SocketAddr::new(unspecified(peer), 0);
        bind(fd.as_raw_fd(), &SockaddrStorage::from(any)).map_err(|e| ctx(e, "bind UDP socket"))?;
    }
    Ok(UdpSocket::from(fd))
}

/// Non-blocking TCP listener: SO_REUSEADDR, SO_REUSEPORT if reuse_port, IPV6_V6ONLY=false
/// for an unspecified IPv6 address (dual stack, like libev), TCP_FASTOPEN if fast_open,
/// backlog 1024.
pub fn tcp_listener(
    addr: SocketAddr,
    reuse_port: bool,
    fast_open: bool,
) -> io::Result<TcpListener> {
    tcp_listener_with(addr, reuse_port, fast_open, false)
}

/// [`tcp_listener`], with `IP_TRANSPARENT` set before the bind when `transparent` (a TPROXY
/// listener, see `redir`).
pub(super) fn tcp_listener_with(
    addr: SocketAddr,
    reuse_port: bool,
    fast_open: bool,
    transparent: bool,
) -> io::Result<TcpListener> {
    let fd = new_socket(addr, SockType::Stream)?;
    prepare_listener(&fd, addr, true, reuse_port)?;
    if transparent {
        super::set_ip_transparent(&fd)?;
    }
    bind_listener(&fd, addr, "TCP")?;
    if fast_open {
        if let Err(e) = set_int(&fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, FASTOPEN_QUEUE) {
            warn_once(&TFO_LISTEN_WARNED, "TCP_FASTOPEN", e);
        }
    }
    listen(&fd, LISTEN_BACKLOG).map_err(|e| ctx(e, format_args!("listen on {addr}")))?;
    Ok(TcpListener::from(fd))
}

/// Non-blocking UDP socket bound to addr (SO_REUSEPORT if reuse_port, dual stack for [::]).
///
/// Unlike TCP, no SO_REUSEADDR: for UDP it has no TIME_WAIT to skip and instead lets a
/// second process bind the same port silently and take over its datagrams, hiding a
/// "port in use" start-up error.
pub fn udp_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let fd = new_socket(addr, SockType::Datagram)?;
    prepare_listener(&fd, addr, false, reuse_port)?;
    bind_listener(&fd, addr, "UDP")?;
    Ok(UdpSocket::from(fd))
}

pub(super) fn new_socket(addr: SocketAddr, ty: SockType) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    // CLOEXEC so SIP003 plugin children do not inherit (and keep open) our sockets.
    Ok(socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// Applies fwmark, interface and source address. Returns whether the socket got bound.
fn apply_outbound(
    fd: &OwnedFd,
    target: SocketAddr,
    opts: &OutboundOpts,
    tcp: bool,
) -> io::Result<bool> {
    if let Some(mark) = opts.fwmark {
        setsockopt(fd, sockopt::Mark, &mark).map_err(|e| match e {
            Errno::EPERM => ctx_hint(
                e,
                format_args!("SO_MARK {mark:#x}"),
                "fwmark needs CAP_NET_ADMIN",
            ),
            _ => ctx(e, format_args!("SO_MARK {mark:#x}")),
        })?;
    }
    if let Some(name) = opts.interface.as_deref().filter(|n| !n.is_empty()) {
        bind_to_device(fd, name)?;
    }
    let Some(ip) = opts.bind_addr.filter(|ip| ip.is_ipv4() == target.is_ipv4()) else {
        return Ok(false);
    };
    if tcp {
        // Without this, bind(ip:0) reserves an ephemeral port before the 4-tuple is known,
        // so a busy router runs out of ports at ~28k upstream connections instead of per
        // destination. Best effort: Linux >= 4.2.
        let _ = setsockopt(fd, sockopt::IpBindAddressNoPort, &true);
    }
    let local = SocketAddr::new(ip, 0);
    bind(fd.as_raw_fd(), &SockaddrStorage::from(local))
        .map_err(|e| ctx(e, format_args!("bind outbound socket to {ip}")))?;
    Ok(true)
}

fn bind_to_device(fd: &OwnedFd, name: &str) -> io::Result<()> {
    // The kernel silently truncates longer names, which could bind to a different interface.
    if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {} is not a valid interface name",
                Quoted(name)
            ),
        ));
    }
    setsockopt(fd, sockopt::BindToDevice, &OsString::from(name)).map_err(|e| match e {
        Errno::ENODEV => ctx_hint(
            e,
            format_args!("SO_BINDTODEVICE {name}"),
            "no such interface",
        ),
        Errno::EPERM => ctx_hint(
            e,
            format_args!("SO_BINDTODEVICE {name}"),
            "needs CAP_NET_RAW",
        ),
        _ => ctx(e, format_args!("SO_BINDTODEVICE {name}")),
    })
}

pub(super) fn prepare_listener(
    fd: &OwnedFd,
    addr: SocketAddr,
    reuse_addr: bool,
    reuse_port: bool,
) -> io::Result<()> {
    if reuse_addr {
        // Restart while old connections sit in TIME_WAIT.
        setsockopt(fd, sockopt::ReuseAddr, &true).map_err(|e| ctx(e, "SO_REUSEADDR"))?;
    }
    if reuse_port {
        setsockopt(fd, sockopt::ReusePort, &true).map_err(|e| ctx(e, "SO_REUSEPORT"))?;
    }
    if let SocketAddr::V6(a) = addr {
        if a.ip().is_unspecified() {
            // The default comes from net.ipv6.bindv6only; libev relies on it being 0.
            setsockopt(fd, sockopt::Ipv6V6Only, &false).map_err(|e| ctx(e, "IPV6_V6ONLY"))?;
        }
    }
    Ok(())
}

pub(super) fn bind_listener(fd: &OwnedFd, addr: SocketAddr, proto: &str) -> io::Result<()> {
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| match e {
        Errno::EADDRINUSE => ctx_hint(
            e,
            format_args!("bind {proto} {addr}"),
            "another process holds this port",
        ),
        Errno::EACCES => ctx_hint(
            e,
            format_args!("bind {proto} {addr}"),
            "ports below 1024 need root or CAP_NET_BIND_SERVICE",
        ),
        Errno::EADDRNOTAVAIL => ctx_hint(
            e,
            format_args!("bind {proto} {addr}"),
            "no interface has this address",
        ),
        _ => ctx(e, format_args!("bind {proto} {addr}")),
    })
}

fn unspecified(peer: SocketAddr) -> IpAddr {
    match peer {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// `listen(2)` with an explicit backlog. nix's `Backlog::new` rejects values >= the libc
/// `SOMAXCONN` constant, which is 128 on musl (OpenWrt) although the kernel accepts more.
fn listen(fd: &impl AsFd, backlog: libc::c_int) -> nix::Result<()> {
    // SAFETY: `listen` reads only its two integer arguments; the fd is borrowed, so it stays
    // open for the duration of the call.
    let r = unsafe { libc::listen(fd.as_fd().as_raw_fd(), backlog) };
    Errno::result(r).map(drop)
}

/// SO_RCVLOWAT: readiness (and a blocking read) waits until `bytes` are queued. The server
/// uses it so a connection takes a pool block only once a whole first chunk has arrived.
pub fn set_recv_lowat(sock: &impl AsFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    set_int(sock, libc::SOL_SOCKET, libc::SO_RCVLOWAT, bytes).map_err(io::Error::from)
}

/// Bytes queued for reading on a socket (FIONREAD), without reading them.
pub fn bytes_queued(sock: &impl AsFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD stores one int through the pointer, which points to `n`.
    let rc = unsafe { libc::ioctl(sock.as_fd().as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `setsockopt` with an int value, for options nix 0.29 does not wrap (TCP_FASTOPEN,
/// SO_RCVLOWAT).
pub(super) fn set_int(
    fd: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> nix::Result<()> {
    // SAFETY: optval points to a live c_int on this stack frame and optlen is exactly its
    // size; the kernel only reads it. The fd is borrowed for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

static TFO_CONNECT_WARNED: AtomicBool = AtomicBool::new(false);
static TFO_LISTEN_WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(flag: &AtomicBool, what: &str, e: Errno) {
    if !flag.swap(true, Ordering::Relaxed) {
        log::warn!(
            "{what} unavailable ({}): continuing without TCP fast open",
            super::os_message(e)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::is_root;
    use nix::sys::socket::getsockopt;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn loopback(v6: bool) -> SocketAddr {
        if v6 {
            "[::1]:0".parse().unwrap()
        } else {
            "127.0.0.1:0".parse().unwrap()
        }
    }

    /// Blocks until a non-blocking connect has finished (the socket is writable).
    fn wait_writable(stream: &TcpStream) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
        assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(), 1);
    }

    /// Waits for the non-blocking connect the way the relay does: writable, then SO_ERROR.
    fn finish_connect(stream: TcpStream) -> TcpStream {
        wait_writable(&stream);
        assert!(stream.take_error().unwrap().is_none());
        stream.set_nonblocking(false).unwrap();
        stream
    }

    fn accept_blocking(l: &TcpListener) -> TcpStream {
        l.set_nonblocking(false).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    fn connect_and_echo(
        listen_on: SocketAddr,
        connect_ip: IpAddr,
        opts: &OutboundOpts,
    ) -> (TcpStream, TcpStream) {
        let l = tcp_listener(listen_on, false, true).unwrap();
        let target = SocketAddr::new(connect_ip, l.local_addr().unwrap().port());
        let mut c = finish_connect(start_tcp_connect(target, opts).unwrap());
        c.write_all(b"hello").unwrap();
        let mut s = accept_blocking(&l);
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        (c, s)
    }

    #[test]
    fn tcp_connect_accept_v4_and_v6() {
        let opts = OutboundOpts {
            no_delay: true,
            fast_open: true,
            ..Default::default()
        };
        for v6 in [false, true] {
            let addr = loopback(v6);
            let (c, s) = connect_and_echo(addr, addr.ip(), &opts);
            assert!(c.nodelay().unwrap());
            assert_eq!(c.peer_addr().unwrap(), s.local_addr().unwrap());
        }
    }

    #[test]
    fn listeners_are_nonblocking() {
        let l = tcp_listener(loopback(false), false, false).unwrap();
        assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let u = udp_listener(loopback(false), false).unwrap();
        assert_eq!(
            u.recv_from(&mut [0u8; 4]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn unspecified_v6_listener_is_dual_stack() {
        let (_, s) = connect_and_echo(
            "[::]:0".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            &OutboundOpts::default(),
        );
        // IPv4 peers arrive as v4-mapped addresses on the IPv6 socket.
        let peer = s.peer_addr().unwrap();
        let SocketAddr::V6(p) = peer else {
            panic!("expected a mapped address, got {peer}")
        };
        assert_eq!(p.ip().to_ipv4_mapped(), Some(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn connect_refused_is_reported_by_take_error() {
        // Grab a free port, then close it so nothing listens there.
        let port = tcp_listener(loopback(false), false, false)
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let stream = start_tcp_connect(target, &OutboundOpts::default()).unwrap();
        wait_writable(&stream);
        let err = stream
            .take_error()
            .unwrap()
            .expect("connect to a closed port must fail");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn reuse_port_allows_two_listeners() {
        let a = tcp_listener(loopback(false), true, false).unwrap();
        let addr = a.local_addr().unwrap();
        let _b = tcp_listener(addr, true, false).unwrap();
        let err = tcp_listener(addr, false, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");

        let u = udp_listener(loopback(true), true).unwrap();
        let uaddr = u.local_addr().unwrap();
        let _v = udp_listener(uaddr, true).unwrap();
        assert_eq!(
            udp_listener(uaddr, false).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
    }

    #[test]
    fn fwmark_reads_back_or_needs_cap_net_admin() {
        let opts = OutboundOpts {
            fwmark: Some(0x1234),
            ..Default::default()
        };
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        match (
            start_tcp_connect(target, &opts),
            outbound_udp_socket(target, &opts),
        ) {
            (Ok(t), Ok(u)) => {
                assert_eq!(getsockopt(&t, sockopt::Mark).unwrap(), 0x1234);
                assert_eq!(getsockopt(&u, sockopt::Mark).unwrap(), 0x1234);
            }
            (t, u) => {
                assert!(!is_root(), "root must be able to set SO_MARK");
                for e in [t.unwrap_err(), u.unwrap_err()] {
                    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
                    assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
                }
            }
        }
    }

    #[test]
    fn interface_binding() {
        let bad = OutboundOpts {
            interface: Some("x".repeat(libc::IFNAMSIZ)),
            ..Default::default()
        };
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            start_tcp_connect(target, &bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );

        let missing = OutboundOpts {
            interface: Some("nosuchif0".into()),
            ..Default::default()
        };
        let e = outbound_udp_socket(target, &missing).unwrap_err();
        assert!(e.to_string().contains("nosuchif0"), "{e}");

        if is_root() {
            let lo = OutboundOpts {
                interface: Some("lo".into()),
                ..Default::default()
            };
            let (c, _) = connect_and_echo(loopback(false), Ipv4Addr::LOCALHOST.into(), &lo);
            // The kernel returns the name with its NUL terminator.
            let dev = getsockopt(&c, sockopt::BindToDevice).unwrap();
            assert_eq!(dev.to_str().unwrap().trim_end_matches('\0'), "lo");
        }
    }

    #[test]
    fn bind_addr_applies_only_to_matching_family() {
        let opts = OutboundOpts {
            bind_addr: Some("127.0.0.2".parse().unwrap()),
            ..Default::default()
        };
        let (c, s) = connect_and_echo(loopback(false), Ipv4Addr::LOCALHOST.into(), &opts);
        assert_eq!(
            c.local_addr().unwrap().ip(),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            s.peer_addr().unwrap().ip(),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        // An IPv4 source address is ignored for an IPv6 target rather than failing.
        let (c6, _) = connect_and_echo(loopback(true), Ipv6Addr::LOCALHOST.into(), &opts);
        assert!(c6.local_addr().unwrap().is_ipv6());

        let u = outbound_udp_socket("127.0.0.1:9".parse().unwrap(), &opts).unwrap();
        assert_eq!(
            u.local_addr().unwrap().ip(),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn udp_exchange_v4_and_v6() {
        for v6 in [false, true] {
            let server = udp_listener(loopback(v6), false).unwrap();
            let saddr = server.local_addr().unwrap();
            let client = outbound_udp_socket(saddr, &OutboundOpts::default()).unwrap();
            assert_ne!(client.local_addr().unwrap().port(), 0);
            assert_eq!(client.local_addr().unwrap().is_ipv6(), v6);
            client.send_to(b"ping", saddr).unwrap();

            server.set_nonblocking(false).unwrap();
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"ping");
            server.send_to(b"pong", from).unwrap();

            client.set_nonblocking(false).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"pong"[..], saddr));
        }
    }
}
