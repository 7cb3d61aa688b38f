//! The client's Shadowsocks 2022 stream opener (`proto::ss2022::stream::StreamOpener`, made with
//! `StreamOpener::response` and clocked with `set_clock`), fed in pieces whose sizes come from
//! the input, the way the relay hands it whatever a read returned: the response header, its
//! first payload, then length-prefixed chunks.
//!
//! Input: `[method][mode][rest]`; the method is `METHODS[byte % 3]` with a fixed PSK, the
//! client's clock a fixed `NOW`.
//!
//! * even `mode`: `rest` is `[n sizes][sizes…][wire…]`, raw wire after a request with a fixed
//!   salt. Random bytes never authenticate: framing and `NeedMore` accounting on garbage.
//! * odd `mode`: `rest` describes a response (`[mutation][position u32][4 sizes][skew i8]
//!   [echo][salt…][payload specs…]`, a spec being `[len u16][bytes…]`) that `StreamSealer::
//!   response` seals: stamped `NOW + skew`, echoing the request's salt unless `echo` is odd.
//!   Then left intact, truncated, or with one bit flipped. Checked: intact decodes to exactly
//!   the payloads and ends between chunks (or fails by cause at the header: `ClockSkew` when
//!   `|skew| > 30`, `SaltMismatch` when it echoes another salt, with no plaintext); truncated
//!   gives a prefix and never fails; flipped gives a prefix, then `BadTag`.
//!
//! Always: a step consumes at least one byte and no more than it has, its plaintext lies inside
//! what it consumed, `NeedMore` asks for at least one byte and never past the element, and a
//! failed stream stays failed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::ss2022::stream::{StreamOpener, StreamSealer};
use ss_smol::proto::ss2022::tcp::{LENGTH_LEN, MAX_PAYLOAD, OVERHEAD};
use ss_smol::proto::ss2022::{Method, Psk, MAX_TIME_DIFF, METHODS, TAG_LEN};
use ss_smol::proto::{Invalid, ParseError};

const NOW: u64 = 1_700_000_000;
/// The request's salt, which the response must echo.
const REQUEST_SALT: [u8; 32] = [0x5a; 32];
/// Keeps one execution fast: at most this much plaintext in a built stream.
const MAX_TOTAL: usize = 160 * 1024;

/// A cursor over the fuzz input; reads past the end give zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Piece sizes cycle through these; small ones split elements, big ones hold several.
fn piece_size(b: u8) -> usize {
    if b < 0x80 {
        1 + (b as usize % 48)
    } else {
        1 + (b as usize - 0x80) * 521
    }
}

/// How a decode run ended.
#[derive(Debug, PartialEq)]
enum End {
    /// All input used; `clean` if the opener sits between chunks with nothing pending.
    Exhausted {
        clean: bool,
    },
    Invalid(Invalid),
}

/// Feeds `wire` to a fresh client opener in pieces; returns every non-empty plaintext and how
/// it ended.
fn decode(psk: &Psk, wire: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, End) {
    let mut dec = StreamOpener::response(psk, &REQUEST_SALT[..psk.method().salt_len()]);
    assert_eq!(dec.request_salt(), &REQUEST_SALT[..psk.method().salt_len()]);
    assert!(dec.awaiting_head() && dec.at_boundary() && !dec.answered());
    dec.set_clock(NOW);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunks = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    loop {
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            piece_size(sizes[i % sizes.len()]).min(rest.len())
        };
        i += 1;
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(piece);
        loop {
            let element = dec.element_len();
            assert!(dec.payload_offset() <= element);
            let was_head = dec.awaiting_head();
            match dec.decode(&mut buf) {
                Ok(step) => {
                    assert_eq!(step.consumed, element, "a step is one whole element");
                    assert!(step.consumed > 0 && step.consumed <= buf.len());
                    assert!(step.plain.start <= step.plain.end && step.plain.end <= step.consumed);
                    assert!(dec.answered(), "a step before the header authenticated");
                    if was_head {
                        assert!(step.plain.is_empty() && !dec.awaiting_head());
                    }
                    if !step.plain.is_empty() {
                        chunks.push(buf[step.plain.clone()].to_vec());
                    }
                    buf.drain(..step.consumed);
                }
                Err(ParseError::NeedMore(more)) => {
                    // Waiting for more than the element needs could stall a relay.
                    assert!(more > 0, "NeedMore(0)");
                    assert_eq!(
                        buf.len() + more,
                        element,
                        "NeedMore({more}) with {}",
                        buf.len()
                    );
                    break;
                }
                Err(ParseError::Invalid(why)) => {
                    // A failed stream stays failed, whatever it is fed next.
                    assert!(matches!(dec.decode(&mut buf), Err(ParseError::Invalid(_))));
                    assert!(matches!(
                        dec.decode(&mut vec![0u8; 0x10100]),
                        Err(ParseError::Invalid(_))
                    ));
                    return (chunks, End::Invalid(why));
                }
            }
        }
        if rest.is_empty() {
            return (
                chunks,
                End::Exhausted {
                    clean: dec.at_boundary() && buf.is_empty(),
                },
            );
        }
    }
}

/// Seals `payloads` (each 1..=0xFFFF bytes, at least one) into a whole response stream, the
/// first with the header, laid out as the relay does it.
fn seal_stream(psk: &Psk, salt: &[u8], echo: &[u8], now: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = StreamSealer::response(psk, salt, echo);
    assert!(enc.before_first() && enc.first_gap() == 0);
    let head = enc.first_len();
    let first = &payloads[0];
    let mut wire = vec![0u8; head + first.len() + TAG_LEN];
    wire[head..head + first.len()].copy_from_slice(first);
    if let Err(e) = enc.seal_first(&mut wire, now) {
        panic!("seal_first refused {} bytes: {e}", first.len());
    }
    assert_eq!(&wire[..psk.method().salt_len()], enc.salt());
    assert_eq!(enc.first_len(), LENGTH_LEN);
    for p in &payloads[1..] {
        let mut frame = vec![0u8; p.len() + OVERHEAD];
        frame[LENGTH_LEN..LENGTH_LEN + p.len()].copy_from_slice(p);
        if let Err(e) = enc.seal_chunk(&mut frame) {
            panic!("seal_chunk refused {} bytes: {e}", p.len());
        }
        wire.extend_from_slice(&frame);
    }
    wire
}

fn is_prefix(got: &[Vec<u8>], of: &[Vec<u8>]) -> bool {
    got.len() <= of.len() && got.iter().zip(of).all(|(a, b)| a == b)
}

fn psk_for(method: Method) -> Psk {
    Psk::from_bytes(method, &[0x42; 32][..method.key_len()]).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let method = METHODS[input.byte() as usize % METHODS.len()];
    let psk = psk_for(method);
    let mode = input.byte();

    if mode % 2 == 0 {
        let n = input.byte() as usize % 8;
        let sizes = input.take(n);
        let (got, end) = decode(&psk, input.0, sizes);
        // Random bytes do not authenticate a header.
        assert!(got.is_empty(), "raw wire decoded to plaintext");
        if let End::Invalid(why) = end {
            assert!(
                matches!(
                    why,
                    Invalid::BadTag | Invalid::HeaderType(_) | Invalid::SaltMismatch
                ),
                "{why:?}"
            );
        }
        return;
    }

    let mutation = (mode >> 1) % 3;
    let position = input.u32() as usize;
    let sizes = input.take(4);
    let skew = input.byte() as i8;
    let echo_ours = input.byte() % 2 == 0;
    let mut salt = [0u8; 32];
    let given = input.take(method.salt_len());
    salt[..given.len()].copy_from_slice(given);
    let salt = &salt[..method.salt_len()];

    let mut payloads = Vec::new();
    let mut total = 0;
    while (payloads.is_empty() || !input.is_empty()) && total < MAX_TOTAL {
        let len = (1 + input.u16() as usize % MAX_PAYLOAD)
            .min(MAX_TOTAL - total)
            .max(1);
        let mut p = input.take(len).to_vec();
        let fill = p.len() as u8;
        p.extend((p.len()..len).map(|i| (i as u8).wrapping_mul(31) ^ fill));
        total += p.len();
        payloads.push(p);
    }

    let mut echo = REQUEST_SALT;
    if !echo_ours {
        echo[0] ^= 1;
    }
    let now = NOW.wrapping_add_signed(i64::from(skew));
    let mut wire = seal_stream(&psk, salt, &echo[..method.salt_len()], now, &payloads);
    let head = method.salt_len() + (1 + 8 + method.salt_len() + 2) + TAG_LEN;
    assert_eq!(
        wire.len(),
        head + total + TAG_LEN + (payloads.len() - 1) * OVERHEAD
    );
    let on_time = u64::from(skew.unsigned_abs()) <= MAX_TIME_DIFF;

    match mutation {
        0 => {
            let (got, end) = decode(&psk, &wire, sizes);
            if !on_time {
                assert_eq!(
                    end,
                    End::Invalid(Invalid::ClockSkew {
                        timestamp: now,
                        now: NOW
                    })
                );
                assert!(got.is_empty());
            } else if !echo_ours {
                assert_eq!(end, End::Invalid(Invalid::SaltMismatch));
                assert!(got.is_empty());
            } else {
                assert_eq!(end, End::Exhausted { clean: true });
                assert!(got == payloads, "intact stream decoded to different chunks");
            }
        }
        1 => {
            let cut = position % (wire.len() + 1);
            wire.truncate(cut);
            let (got, end) = decode(&psk, &wire, sizes);
            assert!(
                is_prefix(&got, &payloads),
                "truncated stream decoded to other chunks"
            );
            if cut < head {
                // Not even the header: nothing decided yet, clean only before any byte.
                assert!(got.is_empty());
                assert_eq!(end, End::Exhausted { clean: cut == 0 });
            } else if on_time && echo_ours {
                let between = is_between_chunks(cut, head, &payloads);
                assert_eq!(end, End::Exhausted { clean: between }, "cut at {cut}");
            }
        }
        _ => {
            let bit = position % (wire.len() * 8);
            wire[bit / 8] ^= 1 << (bit % 8);
            let (got, end) = decode(&psk, &wire, sizes);
            assert!(
                is_prefix(&got, &payloads),
                "flipped stream decoded to other chunks"
            );
            assert!(got.len() < payloads.len());
            // Every byte is the salt (which keys the stream), sealed or a tag.
            if bit / 8 < head || (on_time && echo_ours) {
                assert_eq!(end, End::Invalid(Invalid::BadTag), "bit {bit} flipped");
            }
        }
    }
});

/// Whether `cut` falls between two chunks: after the first payload's tag or after a chunk's.
fn is_between_chunks(cut: usize, head: usize, payloads: &[Vec<u8>]) -> bool {
    let mut at = head + payloads[0].len() + TAG_LEN;
    for p in &payloads[1..] {
        if at >= cut {
            break;
        }
        at += p.len() + OVERHEAD;
    }
    at == cut
}
