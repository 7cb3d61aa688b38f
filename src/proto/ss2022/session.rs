//! Shadowsocks 2022 UDP sessions, the state each side keeps per flow. Sans-IO: the caller
//! passes `now` (unix seconds), session ids and nonces (random), and keeps the sessions in its
//! own bounded tables.
//!
//! ```text
//! client, per local source:  id, next packet id, body cipher      → sealing
//!                            the server sessions answering it (2) → opening, a window each
//! server, per client session: the client's window and body cipher → opening
//!                            its own id, next packet id, cipher   → sealing replies
//! ```
//! A client keeps the current and the previous server session, so that the replies of a
//! server that restarted (a new server session) are taken while the old one's still arrive.
//! A packet id is checked against the window before the body is opened and recorded only
//! after it authenticated (the spec's order).

use super::udp::{
    open_body, open_separate_header, prefix_len, seal_packet, Header, Packet, Sender,
    SessionCipher, UdpCipher, NONCE_LEN,
};
use super::window::PacketWindow;
use super::{Error, Method};
use crate::proto::address::Address;
use crate::proto::SealError;

/// Bytes a client packet of `udp` needs before its payload, for `target` (identity headers
/// included).
pub fn client_prefix_len(udp: &UdpCipher, target: &Address) -> usize {
    udp.identity_len().saturating_add(prefix_len(
        udp.method(),
        &Header {
            session_id: 0,
            packet_id: 0,
            timestamp: 0,
            client_session_id: None,
            padding: 0,
            target,
        },
    ))
}

/// Bytes a server packet needs before its payload, for a reply from `from`.
pub fn server_prefix_len(method: Method, from: &Address) -> usize {
    prefix_len(
        method,
        &Header {
            session_id: 0,
            packet_id: 0,
            timestamp: 0,
            client_session_id: Some(0),
            padding: 0,
            target: from,
        },
    )
}

/// One side's sending state: its session id and the next packet id.
struct Sending {
    id: u64,
    next: u64,
    cipher: SessionCipher,
}

impl Sending {
    fn new(udp: &UdpCipher, id: u64) -> Sending {
        Sending {
            id,
            next: 0,
            cipher: udp.session(id),
        }
    }

    /// Seals `buf` (`[prefix spare][payload][TAG_LEN spare]`) as the next packet.
    fn seal(
        &mut self,
        udp: &UdpCipher,
        answering: Option<u64>,
        address: &Address,
        now: u64,
        nonce: &[u8; NONCE_LEN],
        buf: &mut [u8],
    ) -> Result<(), SealError> {
        let header = Header {
            session_id: self.id,
            packet_id: self.next,
            timestamp: now,
            client_session_id: answering,
            padding: 0,
            target: address,
        };
        seal_packet(udp, &self.cipher, &header, nonce, buf)?;
        // A u64 of packets is never reached; wrapping would only make the peer drop them.
        self.next = self.next.wrapping_add(1);
        Ok(())
    }
}

/// A server session answering a client session.
struct Answering {
    id: u64,
    cipher: SessionCipher,
    window: PacketWindow,
}

/// A client's session (one per local source).
pub struct ClientSession {
    out: Sending,
    /// The current server session, then the previous one.
    servers: [Option<Answering>; 2],
}

impl ClientSession {
    /// A new session with the random id `id`.
    pub fn new(udp: &UdpCipher, id: u64) -> ClientSession {
        ClientSession {
            out: Sending::new(udp, id),
            servers: [None, None],
        }
    }

    pub fn id(&self) -> u64 {
        self.out.id
    }

    /// Seals a packet to `target`: `buf` is `[client_prefix_len spare][payload][TAG_LEN
    /// spare]`; `nonce` is fresh random bytes (used by the ChaCha method only).
    pub fn seal(
        &mut self,
        udp: &UdpCipher,
        target: &Address,
        now: u64,
        nonce: &[u8; NONCE_LEN],
        buf: &mut [u8],
    ) -> Result<(), SealError> {
        self.out.seal(udp, None, target, now, nonce, buf)
    }

    /// Opens a server's packet (a whole datagram) in place.
    pub fn open(&mut self, udp: &UdpCipher, buf: &mut [u8], now: u64) -> Result<Packet, Error> {
        let sep = open_separate_header(udp, buf)?;
        let known = self
            .servers
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.id == sep.session_id));
        let fresh;
        let server = match known
            .and_then(|i| self.servers.get(i))
            .and_then(Option::as_ref)
        {
            Some(s) => {
                if !s.window.check(sep.packet_id) {
                    return Err(Error::PacketId(sep.packet_id));
                }
                s
            }
            None => {
                fresh = Answering {
                    id: sep.session_id,
                    cipher: udp.session(sep.session_id),
                    window: PacketWindow::new(),
                };
                &fresh
            }
        };
        let packet = open_body(udp, &server.cipher, sep, buf, now, Sender::Server)?;
        if packet.client_session_id != Some(self.out.id) {
            return Err(Error::SessionMismatch);
        }
        match known
            .and_then(|i| self.servers.get_mut(i))
            .and_then(Option::as_mut)
        {
            Some(s) => {
                s.window.accept(sep.packet_id);
            }
            None => {
                // A new server session (the server restarted): it becomes the current one and
                // the current one the previous.
                let mut fresh = Answering {
                    id: sep.session_id,
                    cipher: udp.session(sep.session_id),
                    window: PacketWindow::new(),
                };
                fresh.window.accept(sep.packet_id);
                let [current, previous] = &mut self.servers;
                *previous = current.take();
                *current = Some(fresh);
            }
        }
        Ok(packet)
    }
}

/// A server's state for one client session.
pub struct ServerSession {
    client: u64,
    cipher: SessionCipher,
    window: PacketWindow,
    out: Sending,
}

impl ServerSession {
    /// Opens the first packet of a client session not seen before (`buf`, whose separate
    /// header `open_separate_header` gave `sep`); on success the session exists, answering
    /// under the random id `server_id`.
    pub fn open_first(
        udp: &UdpCipher,
        sep: super::udp::SeparateHeader,
        buf: &mut [u8],
        now: u64,
        server_id: u64,
    ) -> Result<(ServerSession, Packet), Error> {
        let cipher = udp.session(sep.session_id);
        let packet = open_body(udp, &cipher, sep, buf, now, Sender::Client)?;
        let mut window = PacketWindow::new();
        window.accept(sep.packet_id);
        let session = ServerSession {
            client: sep.session_id,
            cipher,
            window,
            out: Sending::new(udp, server_id),
        };
        Ok((session, packet))
    }

    /// Opens a later packet of this session.
    pub fn open(
        &mut self,
        udp: &UdpCipher,
        sep: super::udp::SeparateHeader,
        buf: &mut [u8],
        now: u64,
    ) -> Result<Packet, Error> {
        if sep.session_id != self.client {
            return Err(Error::SessionMismatch);
        }
        if !self.window.check(sep.packet_id) {
            return Err(Error::PacketId(sep.packet_id));
        }
        let packet = open_body(udp, &self.cipher, sep, buf, now, Sender::Client)?;
        self.window.accept(sep.packet_id);
        Ok(packet)
    }

    /// Seals a reply from `from`: `buf` is `[server_prefix_len spare][payload][TAG_LEN
    /// spare]`.
    pub fn seal(
        &mut self,
        udp: &UdpCipher,
        from: &Address,
        now: u64,
        nonce: &[u8; NONCE_LEN],
        buf: &mut [u8],
    ) -> Result<(), SealError> {
        self.out.seal(udp, Some(self.client), from, now, nonce, buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::arithmetic_side_effects
    )]
    use super::super::{Psk, METHODS, TAG_LEN};
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn packet(prefix: usize, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; prefix + payload.len() + TAG_LEN];
        buf[prefix..prefix + payload.len()].copy_from_slice(payload);
        buf
    }

    #[test]
    fn a_client_and_a_server_talk_and_refuse_replays() {
        let target = Address::from_host_port("192.0.2.1:53").unwrap();
        for m in METHODS {
            let psk = Psk::from_bytes(m, &[9u8; 32][..m.key_len()]).unwrap();
            let udp = UdpCipher::new(&psk);
            let mut client = ClientSession::new(&udp, 0x1111);
            let mut server: Option<ServerSession> = None;
            for round in 0..3u8 {
                let mut up = packet(client_prefix_len(&udp, &target), &[round; 5]);
                client
                    .seal(&udp, &target, NOW, &[round; 24], &mut up)
                    .unwrap();
                let recorded = up.clone();
                let sep = open_separate_header(&udp, &mut up).unwrap();
                assert_eq!(sep.session_id, 0x1111);
                let p = match &mut server {
                    None => {
                        let (s, p) =
                            ServerSession::open_first(&udp, sep, &mut up, NOW, 0x2222).unwrap();
                        server = Some(s);
                        p
                    }
                    Some(s) => s.open(&udp, sep, &mut up, NOW).unwrap(),
                };
                assert_eq!(
                    (p.address, &up[p.payload]),
                    (target.clone(), &[round; 5][..])
                );
                // The same packet again: its id is in the window now.
                let mut again = recorded;
                let sep = open_separate_header(&udp, &mut again).unwrap();
                let s = server.as_mut().unwrap();
                assert_eq!(
                    s.open(&udp, sep, &mut again, NOW),
                    Err(Error::PacketId(u64::from(round)))
                );

                let mut down = packet(server_prefix_len(m, &target), b"answer");
                s.seal(&udp, &target, NOW, &[7; 24], &mut down).unwrap();
                let recorded = down.clone();
                let p = client.open(&udp, &mut down, NOW).unwrap();
                assert_eq!(&down[p.payload], b"answer");
                let mut again = recorded;
                assert!(matches!(
                    client.open(&udp, &mut again, NOW),
                    Err(Error::PacketId(_))
                ));
            }
        }
    }

    #[test]
    fn a_client_takes_a_restarted_server_and_refuses_other_clients_answers() {
        let m = Method::Aes128Gcm;
        let target = Address::from_host_port("192.0.2.1:53").unwrap();
        let psk = Psk::from_bytes(m, &[3u8; 16]).unwrap();
        let udp = UdpCipher::new(&psk);
        let mut client = ClientSession::new(&udp, 1);
        let reply = |server: &mut ServerSession| {
            let mut down = packet(server_prefix_len(m, &target), b"x");
            server
                .seal(&udp, &target, NOW, &[0; 24], &mut down)
                .unwrap();
            down
        };
        let first = |client_id: u64, server_id: u64| {
            let mut c = ClientSession::new(&udp, client_id);
            let mut up = packet(client_prefix_len(&udp, &target), b"q");
            c.seal(&udp, &target, NOW, &[0; 24], &mut up).unwrap();
            let sep = open_separate_header(&udp, &mut up).unwrap();
            ServerSession::open_first(&udp, sep, &mut up, NOW, server_id)
                .unwrap()
                .0
        };
        let mut old = first(1, 10);
        let mut new = first(1, 20);
        let mut other = first(2, 30);
        assert!(client.open(&udp, &mut reply(&mut old), NOW).is_ok());
        assert!(client.open(&udp, &mut reply(&mut new), NOW).is_ok());
        // The old session's late packets are still taken.
        assert!(client.open(&udp, &mut reply(&mut old), NOW).is_ok());
        assert_eq!(
            client.open(&udp, &mut reply(&mut other), NOW),
            Err(Error::SessionMismatch)
        );
        // A stale timestamp.
        assert!(matches!(
            client.open(&udp, &mut reply(&mut new), NOW + 31),
            Err(Error::ClockSkew { .. })
        ));
    }
}
