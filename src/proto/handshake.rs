//! ss-server's side of a connection's start: the salt, the first chunk, and the target address
//! at the start of its plaintext, as one sans-IO state machine.
//!
//! ```text
//! +------+---------------------------+----------------------------------------------+----
//! | salt | seal(len) | tag           | seal( ADDRESS | early payload ) | tag        | more chunks
//! +------+---------------------------+----------------------------------------------+----
//!  \_____________ head ____________/  \_____________ first chunk body _____________/
//! ```
//!
//! Bytes go in; out comes what to do next: read `n` more, treat the peer as a probe (the key
//! did not authenticate, or the salt was seen before), or connect to the target with the early
//! payload. The caller reads the head into a small buffer of its own and only then lends a pool
//! block for the body, so a peer without the key cannot hold a block. Only an authenticated
//! first chunk puts its salt into the replay filter, so only a key holder can fill the filter.

use super::address::Address;
use super::cipher::{MasterKey, Method};
use super::replay::ReplayFilter;
use super::tcp::{Decryptor, HEADER_LEN};
use super::{Invalid, ParseError};
use core::ops::Range;

/// Why a connection is treated as a probe. Each looks the same to the peer; the log says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The length or payload tag failed: wrong key, random bytes, a replay with a bad tag.
    BadTag,
    /// The chunk length broke the framing rules (reserved bits, zero).
    BadChunk,
    /// Authenticated, but its salt was seen before: a recorded connection sent again.
    Replayed,
    /// A Shadowsocks 2022 header stamped more than 30 s from our clock: an old recording sent
    /// again, or a client whose clock is wrong.
    Timestamp { timestamp: u64, now: u64 },
}

impl core::fmt::Display for Probe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Probe::BadTag => "authentication failed (wrong password or a probe)",
            Probe::BadChunk => "authentication failed (invalid chunk)",
            Probe::Replayed => "replayed salt (a recorded connection sent again)",
            Probe::Timestamp { timestamp, now } => {
                return super::Invalid::ClockSkew {
                    timestamp: *timestamp,
                    now: *now,
                }
                .fmt(f)
            }
        })
    }
}

/// What the bytes fed so far call for. Returned once per step and consumed at once, so the
/// inline address costs nothing lasting.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// At least this many more bytes, past what was consumed.
    NeedMore(usize),
    /// Hold the connection without answering (and count a failure against the source).
    Probe(Probe),
    /// Connect to `target`; the client's first payload is at `early` in the input, and the
    /// bytes after the consumed ones belong to the chunks that follow.
    Connect {
        target: Address,
        early: Range<usize>,
    },
    /// An authenticated client sent a request that cannot be served (bad address).
    BadRequest(ParseError),
    /// An authenticated Shadowsocks 2022 header that breaks the padding rules.
    Refused(super::ss2022::Error),
    /// Too many new Shadowsocks 2022 sessions in the last minute (see `SaltPool`).
    Busy,
}

/// One step: how many input bytes were used, and what comes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub next: Next,
}

/// The state machine. Feed it with [`ServerHandshake::handle`] until it answers something
/// other than `NeedMore`; then the decryptor goes on with the rest of the stream.
pub struct ServerHandshake {
    dec: Decryptor,
}

impl ServerHandshake {
    pub fn new(method: Method, key: &MasterKey) -> ServerHandshake {
        ServerHandshake {
            dec: Decryptor::new(method, key),
        }
    }

    /// Bytes the salt and the sealed length of the first chunk take: what to read before any
    /// decision, and before lending a block.
    pub fn head_len(&self) -> usize {
        self.dec.element_len().saturating_add(HEADER_LEN)
    }

    /// Decodes as much of `input` (received bytes not yet consumed) as it can, in place.
    pub fn handle(&mut self, input: &mut [u8], replay: &mut ReplayFilter) -> Step {
        let mut at = 0usize;
        loop {
            let Some(rest) = input.get_mut(at..) else {
                return Step {
                    consumed: at,
                    next: Next::NeedMore(1),
                };
            };
            let step = match self.dec.decode(rest) {
                Ok(step) => step,
                Err(ParseError::NeedMore(n)) => {
                    return Step {
                        consumed: at,
                        next: Next::NeedMore(n),
                    }
                }
                Err(ParseError::Invalid(why)) => {
                    return Step {
                        consumed: at,
                        next: Next::Probe(probe(why)),
                    }
                }
            };
            let start = at;
            at = at.saturating_add(step.consumed);
            if step.plain.is_empty() {
                continue;
            }
            // The first payload authenticated: now, and only now, the salt counts.
            if self
                .dec
                .salt()
                .is_some_and(|salt| replay.check_and_insert(salt))
            {
                return Step {
                    consumed: at,
                    next: Next::Probe(Probe::Replayed),
                };
            }
            let plain =
                start.saturating_add(step.plain.start)..start.saturating_add(step.plain.end);
            let next = match input.get(plain.clone()).map(Address::parse) {
                Some(Ok((target, used))) => Next::Connect {
                    target,
                    early: plain.start.saturating_add(used)..plain.end,
                },
                Some(Err(e)) => Next::BadRequest(e),
                None => Next::BadRequest(ParseError::NeedMore(0)),
            };
            return Step { consumed: at, next };
        }
    }

    /// Bytes the element being waited for needs in total (to know when it is all queued).
    pub fn element_len(&self) -> usize {
        self.dec.element_len()
    }

    /// The stream's decryptor, positioned after the first chunk.
    pub fn into_decryptor(self) -> Decryptor {
        self.dec
    }
}

fn probe(why: Invalid) -> Probe {
    match why {
        Invalid::BadTag => Probe::BadTag,
        _ => Probe::BadChunk,
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )]
    use super::*;
    use crate::proto::cipher::METHODS;
    use crate::proto::tcp::{Encryptor, OVERHEAD};

    /// A client's opening bytes: salt, then one chunk per payload.
    fn client_stream(m: Method, key: &MasterKey, salt: &[u8], chunks: &[&[u8]]) -> Vec<u8> {
        let mut enc = Encryptor::new(m, key, salt);
        let mut out = enc.salt().to_vec();
        for c in chunks {
            let mut frame = vec![0u8; c.len() + OVERHEAD];
            frame[HEADER_LEN..HEADER_LEN + c.len()].copy_from_slice(c);
            enc.seal_chunk(&mut frame).unwrap();
            out.extend_from_slice(&frame);
        }
        out
    }

    fn request(target: &str, early: &[u8]) -> Vec<u8> {
        let mut r = Address::from_host_port(target).unwrap().to_wire().to_vec();
        r.extend_from_slice(early);
        r
    }

    /// Feeds `wire` as the relay does: the head first, then the rest `piece` bytes at a time.
    fn drive(hs: &mut ServerHandshake, wire: &mut [u8], piece: usize) -> (Next, usize) {
        let mut replay = ReplayFilter::new(64);
        drive_with(hs, wire, piece, &mut replay)
    }

    fn drive_with(
        hs: &mut ServerHandshake,
        wire: &mut [u8],
        piece: usize,
        replay: &mut ReplayFilter,
    ) -> (Next, usize) {
        let mut consumed = 0;
        let mut have = hs.head_len().min(wire.len());
        loop {
            let step = hs.handle(&mut wire[consumed..have], replay);
            let base = consumed;
            consumed += step.consumed;
            match step.next {
                Next::NeedMore(n) if have < wire.len() => {
                    assert!(n > 0);
                    have = (have + piece.max(1)).min(wire.len());
                }
                Next::Connect { target, early } => {
                    return (
                        Next::Connect {
                            target,
                            early: base + early.start..base + early.end,
                        },
                        consumed,
                    )
                }
                other => return (other, consumed),
            }
        }
    }

    #[test]
    fn an_authenticated_request_names_its_target_and_early_data() {
        for m in METHODS {
            let key = MasterKey::from_password(m, b"pw");
            let first = request("example.com:443", b"GET / HTTP/1.1\r\n");
            let mut wire = client_stream(m, &key, &[3; 32], &[&first, b"second chunk"]);
            for piece in [1, 7, 4096] {
                let mut w = wire.clone();
                let mut hs = ServerHandshake::new(m, &key);
                let (next, consumed) = drive(&mut hs, &mut w, piece);
                let Next::Connect { target, early } = next else {
                    panic!("{m:?} {piece}: {next:?}");
                };
                assert_eq!(target, Address::from_host_port("example.com:443").unwrap());
                assert_eq!(&w[early], b"GET / HTTP/1.1\r\n");
                // What is left is exactly the second chunk, for the relay's decryptor.
                assert_eq!(consumed, m.salt_len() + OVERHEAD + first.len());
                let mut dec = hs.into_decryptor();
                let rest = &mut w[consumed..];
                let len = dec.decode(rest).unwrap();
                let body = dec.decode(&mut rest[len.consumed..]).unwrap();
                let at = len.consumed;
                assert_eq!(
                    &rest[at + body.plain.start..at + body.plain.end],
                    b"second chunk"
                );
            }
            wire.clear();
        }
    }

    #[test]
    fn needs_the_head_then_the_whole_first_chunk() {
        let m = Method::Aes128Gcm;
        let key = MasterKey::from_password(m, b"pw");
        let first = request("192.0.2.1:80", b"abc");
        let mut wire = client_stream(m, &key, &[1; 16], &[&first]);
        let mut replay = ReplayFilter::new(64);
        let mut hs = ServerHandshake::new(m, &key);
        assert_eq!(hs.head_len(), 16 + HEADER_LEN);
        let step = hs.handle(&mut wire[..10], &mut replay);
        assert_eq!(
            step,
            Step {
                consumed: 0,
                next: Next::NeedMore(6)
            }
        );
        let head = hs.head_len();
        let step = hs.handle(&mut wire[..head], &mut replay);
        let body = first.len() + 16;
        assert_eq!(
            step,
            Step {
                consumed: head,
                next: Next::NeedMore(body)
            }
        );
        assert_eq!(hs.element_len(), body);
        let step = hs.handle(&mut wire[head..head + body - 1], &mut replay);
        assert_eq!(step.next, Next::NeedMore(1));
        let step = hs.handle(&mut wire[head..], &mut replay);
        assert!(matches!(step.next, Next::Connect { .. }), "{step:?}");
    }

    #[test]
    fn a_wrong_key_or_garbage_is_a_probe_decided_on_the_head() {
        let m = Method::ChaCha20Poly1305;
        let right = MasterKey::from_password(m, b"right");
        let wrong = MasterKey::from_password(m, b"wrong");
        let mut wire = client_stream(m, &wrong, &[5; 32], &[&request("192.0.2.1:80", b"")]);
        let mut hs = ServerHandshake::new(m, &right);
        let head = hs.head_len();
        let mut replay = ReplayFilter::new(64);
        let step = hs.handle(&mut wire[..head], &mut replay);
        assert_eq!(step.next, Next::Probe(Probe::BadTag));
        let mut garbage = vec![0x5a; head];
        let step = ServerHandshake::new(m, &right).handle(&mut garbage, &mut replay);
        assert_eq!(step.next, Next::Probe(Probe::BadTag));
    }

    #[test]
    fn a_replayed_salt_is_a_probe_and_only_authenticated_salts_count() {
        let m = Method::ChaCha20Poly1305;
        let key = MasterKey::from_password(m, b"pw");
        let wire = client_stream(m, &key, &[9; 32], &[&request("192.0.2.1:80", b"x")]);
        let mut replay = ReplayFilter::new(64);
        // A forgery with the same salt does not put the salt in the filter...
        let mut forged = wire.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let (next, _) = drive_with(
            &mut ServerHandshake::new(m, &key),
            &mut forged,
            64,
            &mut replay,
        );
        assert_eq!(next, Next::Probe(Probe::BadTag));
        // ...so the real connection goes through, and its replay does not.
        let (next, _) = drive_with(
            &mut ServerHandshake::new(m, &key),
            &mut wire.clone(),
            64,
            &mut replay,
        );
        assert!(matches!(next, Next::Connect { .. }), "{next:?}");
        let (next, _) = drive_with(
            &mut ServerHandshake::new(m, &key),
            &mut wire.clone(),
            64,
            &mut replay,
        );
        assert_eq!(next, Next::Probe(Probe::Replayed));
    }

    #[test]
    fn a_bad_address_from_a_key_holder_is_a_bad_request_not_a_probe() {
        let m = Method::ChaCha20Poly1305;
        let key = MasterKey::from_password(m, b"pw");
        for body in [&[0x07, 1, 2, 3][..], &[0x03, 0][..], &[0x01, 192, 0][..]] {
            let mut wire = client_stream(m, &key, &[4; 32], &[body]);
            let (next, _) = drive(&mut ServerHandshake::new(m, &key), &mut wire, 64);
            assert!(matches!(next, Next::BadRequest(_)), "{body:?}: {next:?}");
        }
    }
}
