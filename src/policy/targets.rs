//! Which targets ss-server will connect to on a client's behalf.
//!
//! A Shadowsocks server is an open door for whoever has the password, and the password is often
//! shared. Without a policy, a client could reach the server's own loopback services (the
//! router's admin page, a local DNS resolver, ss-manager) and the LAN behind it. So by default
//! ss-server refuses targets that are not globally routable unicast, and `allow_private_targets`
//! turns that off for setups that really want it (a server inside a private network).
//!
//! Documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and benchmarking
//! (198.18.0.0/15) ranges stay allowed: no one routes them on the Internet, and test setups use
//! them inside network namespaces.
//!
//! Check the address actually connected to, after name resolution: a name may resolve to
//! 127.0.0.1 (DNS rebinding), and checking the name would miss it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a client may connect to `ip`. Pure: no I/O.
pub fn target_allowed(ip: IpAddr, allow_private: bool) -> bool {
    if allow_private {
        return true;
    }
    // `::ffff:127.0.0.1` reaches 127.0.0.1 through a dual-stack socket: judge it as IPv4.
    match ip.to_canonical() {
        IpAddr::V4(a) => public_v4(a),
        IpAddr::V6(a) => public_v6(a),
    }
}

fn public_v4(a: Ipv4Addr) -> bool {
    let [b0, b1, ..] = a.octets();
    let refused =
        // 0.0.0.0/8 "this network": connecting to 0.0.0.0 reaches the local host on Linux.
        b0 == 0
        || a.is_loopback() // 127.0.0.0/8
        || a.is_private() // 10/8, 172.16/12, 192.168/16
        || a.is_link_local() // 169.254/16, also cloud metadata services (169.254.169.254)
        || (b0 == 100 && (b1 & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT (RFC 6598)
        || a.is_multicast() // 224/4
        // 240.0.0.0/4 reserved, including 255.255.255.255 broadcast: never a unicast host.
        || b0 >= 240;
    !refused
}

fn public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let refused =
        // ::/96: unspecified (::), loopback (::1) and the deprecated IPv4-compatible addresses.
        s[..6] == [0; 6]
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 deprecated site-local (private by another name)
        || a.is_multicast(); // ff00::/8
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(s: &str) -> bool {
        target_allowed(s.parse().unwrap(), false)
    }

    #[test]
    fn refused_by_default() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:0.0.0.0",
            "::ffff:169.254.169.254",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ] {
            assert!(!allowed(s), "{s} allowed");
        }
    }

    #[test]
    fn public_and_documentation_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "169.253.0.1",
            "223.255.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.200",
            "198.18.0.1",
            "2001:db8::1",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:192.0.2.1",
            "::1:0:0:1",
            "fbff::1",
            "fe00::1",
        ] {
            assert!(allowed(s), "{s} refused");
        }
    }

    #[test]
    fn allow_private_allows_everything() {
        for s in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(target_allowed(s.parse().unwrap(), true), "{s}");
        }
    }
}
