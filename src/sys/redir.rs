//! Transparent proxying for ss-redir: recovering where an intercepted connection or datagram
//! was going, and answering UDP clients from that address.
//!
//! TCP uses either iptables/nft REDIRECT (original destination from conntrack via
//! `SO_ORIGINAL_DST`) or TPROXY (listener with `IP_TRANSPARENT`; the accepted socket's local
//! address is the original destination). UDP always uses TPROXY: the listener gets the
//! destination of each datagram as an `IP_ORIGDSTADDR` control message, and replies go out
//! of a socket bound (transparently) to that non-local address so the client's stack
//! accepts them.

use super::net::{bind_listener, new_socket, prepare_listener, tcp_listener_with};
use super::{ctx, ctx_hint};
use nix::errno::Errno;
use nix::sys::socket::{
    bind, getsockname, getsockopt, recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags,
    SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

/// Original destination of a REDIRECTed TCP connection: `SOL_IP`/`SO_ORIGINAL_DST`, or
/// `SOL_IPV6`/`IP6T_SO_ORIGINAL_DST` for IPv6 connections.
///
/// The family is chosen from the socket's local address, so IPv4 clients accepted on a
/// dual-stack `[::]` listener (local address `::ffff:a.b.c.d`) are asked about IPv4
/// conntrack and get an IPv4 answer. Not for TPROXY'd connections: use `local_addr()`.
pub fn original_dst(stream: &impl AsFd) -> io::Result<SocketAddr> {
    let fd = stream.as_fd();
    let local: SockaddrStorage = getsockname(fd.as_raw_fd())?;
    let ipv4 = match (local.as_sockaddr_in(), local.as_sockaddr_in6()) {
        (Some(_), _) => true,
        (None, Some(a)) => a.ip().to_ipv4_mapped().is_some(),
        (None, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "original_dst: not an IP socket",
            ));
        }
    };
    let found = if ipv4 {
        getsockopt(&fd, sockopt::OriginalDst)
            .map(|sin| SocketAddr::V4(SockaddrIn::from(sin).into()))
    } else {
        getsockopt(&fd, sockopt::Ip6tOriginalDst)
            .map(|sin6| SocketAddr::V6(SockaddrIn6::from(sin6).into()))
    };
    found.map_err(|e| match e {
        Errno::ENOENT => ctx_hint(
            e,
            "SO_ORIGINAL_DST",
            "no NAT entry: was the connection REDIRECTed?",
        ),
        Errno::ENOPROTOOPT => ctx_hint(
            e,
            "SO_ORIGINAL_DST",
            "conntrack/NAT not loaded for this family",
        ),
        _ => ctx(e, "SO_ORIGINAL_DST"),
    })
}

/// Sets `IP_TRANSPARENT`, needed on a TPROXY listener (TCP or UDP) and on a socket that
/// binds to a non-local address. Needs CAP_NET_ADMIN.
///
/// Works for IPv6 sockets too: Linux routes `SOL_IP` options on non-raw IPv6 sockets to
/// the IPv4 handler, which sets the transparency bit both families share (nix 0.29 has no
/// `IPV6_TRANSPARENT` wrapper).
pub fn set_ip_transparent(sock: &impl AsFd) -> io::Result<()> {
    setsockopt(sock, sockopt::IpTransparent, &true).map_err(|e| match e {
        Errno::EPERM => ctx_hint(
            e,
            "IP_TRANSPARENT",
            "transparent proxying needs CAP_NET_ADMIN",
        ),
        _ => ctx(e, "IP_TRANSPARENT"),
    })
}

/// Non-blocking UDP socket for a TPROXY rule's `--on-port`: like
/// [`udp_listener`](super::udp_listener) plus `IP_TRANSPARENT` and the original-destination
/// control messages read by [`recv_orig_dst`]. Needs CAP_NET_ADMIN.
pub fn udp_tproxy_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let fd = new_socket(addr, SockType::Datagram)?;
    prepare_listener(&fd, addr, false, reuse_port)?;
    set_ip_transparent(&fd)?;
    // IPv4 datagrams on a dual-stack IPv6 socket report their destination through the IPv4
    // option, so an IPv6 socket needs both.
    setsockopt(&fd, sockopt::Ipv4OrigDstAddr, &true).map_err(|e| ctx(e, "IP_RECVORIGDSTADDR"))?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6OrigDstAddr, &true)
            .map_err(|e| ctx(e, "IPV6_RECVORIGDSTADDR"))?;
    }
    bind_listener(&fd, addr, "UDP")?;
    Ok(UdpSocket::from(fd))
}

/// TCP listener for a TPROXY rule's `--on-port` (ss-redir `-T`): [`tcp_listener`] with
/// `IP_TRANSPARENT` before the bind, so the kernel hands it connections to any address; an
/// accepted socket's local address is where the client was going. Needs CAP_NET_ADMIN.
///
/// [`tcp_listener`]: super::tcp_listener
pub fn tcp_tproxy_listener(
    addr: SocketAddr,
    reuse_port: bool,
    fast_open: bool,
) -> io::Result<TcpListener> {
    tcp_listener_with(addr, reuse_port, fast_open, true)
}

/// Whether `ip` is an address of this host (in this network namespace): a plain socket can
/// bind to it. Tells a destination that is ss-redir itself (a client that connected to the
/// redir port directly, without a redirect rule) from a remote one.
pub fn is_local_address(ip: IpAddr) -> bool {
    let probe = SocketAddr::new(ip, 0);
    let Ok(fd) = new_socket(probe, SockType::Datagram) else {
        return false;
    };
    bind(fd.as_raw_fd(), &SockaddrStorage::from(probe)).is_ok()
}

/// Control-message space for [`recv_orig_dst`], allocated once per socket so receiving does
/// not allocate.
#[derive(Debug)]
pub struct OrigDstBuf(Vec<u8>);

impl OrigDstBuf {
    pub fn new() -> Self {
        // One message is expected; room for both families in case a kernel sends two.
        OrigDstBuf(nix::cmsg_space!(
            nix::libc::sockaddr_in6,
            nix::libc::sockaddr_in
        ))
    }
}

impl Default for OrigDstBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// Receives one datagram from a [`udp_tproxy_listener`] socket: `(length, client address,
/// original destination)`. IPv4-mapped addresses are returned as IPv4, so the destination
/// can be handed straight to [`udp_tproxy_reply_socket`] and the client used with it.
///
/// `WouldBlock` when nothing is queued (drive it with `Async::read_with`). A datagram larger
/// than `buf` is consumed and reported as `InvalidData`; the socket stays usable.
pub fn recv_orig_dst(
    sock: &impl AsFd,
    buf: &mut [u8],
    cmsg: &mut OrigDstBuf,
) -> io::Result<(usize, SocketAddr, SocketAddr)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut cmsg.0),
        MsgFlags::empty(),
    )?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "UDP datagram larger than the buffer",
        ));
    }
    let src = msg.address.as_ref().and_then(to_std).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram without an IP source address",
        )
    })?;
    let mut dst = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4OrigDstAddr(sin) => {
                dst = Some(SocketAddr::V4(SockaddrIn::from(sin).into()));
            }
            ControlMessageOwned::Ipv6OrigDstAddr(sin6) => {
                dst = Some(unmap(SocketAddr::V6(SockaddrIn6::from(sin6).into())));
            }
            _ => {}
        }
    }
    let dst = dst.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram without IP_ORIGDSTADDR (socket not made by udp_tproxy_listener?)",
        )
    })?;
    Ok((msg.bytes, src, dst))
}

/// Non-blocking UDP socket bound to the non-local address `from` (a TPROXY'd datagram's
/// original destination), so replies reach the client from the address it sent to. Several
/// clients may talk to the same remote, hence SO_REUSEADDR. Needs CAP_NET_ADMIN.
pub fn udp_tproxy_reply_socket(from: SocketAddr) -> io::Result<UdpSocket> {
    let fd = new_socket(from, SockType::Datagram)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| ctx(e, "SO_REUSEADDR"))?;
    set_ip_transparent(&fd)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(from))
        .map_err(|e| ctx(e, format_args!("bind transparent reply socket to {from}")))?;
    Ok(UdpSocket::from(fd))
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(sin) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*sin)));
    }
    a.as_sockaddr_in6()
        .map(|sin6| unmap(SocketAddr::V6(SocketAddrV6::from(*sin6))))
}

fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::V4(SocketAddrV4::new(ip, v6.port())),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{is_root, tcp_listener, udp_listener};
    use std::net::TcpStream;
    use std::time::Duration;

    fn accepted(listen: &str, connect_ip: &str) -> (SocketAddr, TcpStream) {
        let l = tcp_listener(listen.parse().unwrap(), false, false).unwrap();
        let port = l.local_addr().unwrap().port();
        let target = SocketAddr::new(connect_ip.parse().unwrap(), port);
        let _c = TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap();
        l.set_nonblocking(false).unwrap();
        (target, l.accept().unwrap().0)
    }

    #[test]
    fn original_dst_without_redirect() {
        // With conntrack active an un-NATed connection's original destination is its real
        // one; without conntrack the lookup fails. Either way: no panic, a clear error.
        for (listen, connect) in [
            ("127.0.0.1:0", "127.0.0.1"),
            ("[::1]:0", "::1"),
            ("[::]:0", "127.0.0.1"),
        ] {
            let (target, s) = accepted(listen, connect);
            match original_dst(&s) {
                Ok(dst) => assert_eq!(dst, target),
                Err(e) => assert!(e.to_string().contains("SO_ORIGINAL_DST"), "{e}"),
            }
        }
    }

    #[test]
    fn original_dst_rejects_non_ip_sockets() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(
            original_dst(&a).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    fn recv_blocking(
        sock: &UdpSocket,
        buf: &mut [u8],
        cmsg: &mut OrigDstBuf,
    ) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        for _ in 0..500 {
            match recv_orig_dst(sock, buf, cmsg) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                r => return r,
            }
        }
        panic!("no datagram arrived");
    }

    #[test]
    fn tproxy_udp_reports_destination() {
        let Ok(l) = udp_tproxy_listener("127.0.0.1:0".parse().unwrap(), false) else {
            let e = udp_tproxy_listener("127.0.0.1:0".parse().unwrap(), false).unwrap_err();
            assert!(!is_root(), "{e}");
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            return;
        };
        drop(l);
        let mut cmsg = OrigDstBuf::new();
        let mut buf = [0u8; 64];
        for (listen, send_to_ip) in [
            ("127.0.0.1:0", "127.0.0.1"),
            ("[::1]:0", "::1"),
            ("[::]:0", "127.0.0.1"),
        ] {
            let l = udp_tproxy_listener(listen.parse().unwrap(), false).unwrap();
            assert_eq!(
                recv_orig_dst(&l, &mut buf, &mut cmsg).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            let dst = SocketAddr::new(send_to_ip.parse().unwrap(), l.local_addr().unwrap().port());
            let any: SocketAddr = if dst.is_ipv4() {
                "127.0.0.1:0"
            } else {
                "[::1]:0"
            }
            .parse()
            .unwrap();
            let client = udp_listener(any, false).unwrap();
            client.send_to(&[7u8; 100], dst).unwrap();
            client.send_to(b"hi", dst).unwrap();

            let e = recv_blocking(&l, &mut buf[..10], &mut cmsg).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let (n, src, orig) = recv_blocking(&l, &mut buf, &mut cmsg).unwrap();
            assert_eq!(&buf[..n], b"hi");
            assert_eq!(src, client.local_addr().unwrap(), "{listen}");
            assert_eq!(orig, dst, "{listen}");
        }
    }

    #[test]
    fn tproxy_reply_comes_from_foreign_address() {
        let from: SocketAddr = "192.0.2.1:5353".parse().unwrap();
        let reply = match udp_tproxy_reply_socket(from) {
            Ok(s) => s,
            Err(e) => {
                assert!(!is_root(), "{e}");
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
                assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
                return;
            }
        };
        assert_eq!(reply.local_addr().unwrap(), from);
        // A second client of the same remote gets its own socket on the same address.
        let _second = udp_tproxy_reply_socket(from).unwrap();
        // IPv6 non-local bind proves IP_TRANSPARENT took effect on an IPv6 socket.
        let from6: SocketAddr = "[2001:db8::1]:5353".parse().unwrap();
        assert_eq!(
            udp_tproxy_reply_socket(from6)
                .unwrap()
                .local_addr()
                .unwrap(),
            from6
        );
        // Without IP_TRANSPARENT the same bind is refused.
        let plain = UdpSocket::bind("192.0.2.1:0");
        assert!(plain.is_err());

        let client = udp_listener("127.0.0.1:0".parse().unwrap(), false).unwrap();
        reply
            .send_to(b"answer", client.local_addr().unwrap())
            .unwrap();
        client.set_nonblocking(false).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, src) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], src), (&b"answer"[..], from));
    }
}
