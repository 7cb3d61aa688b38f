//! The AEAD TCP stream decoder (`tcp::Decryptor::decode`), fed in pieces whose sizes come from
//! the input, the way a relay hands it whatever a read returned.
//!
//! Input: `[method][mode][rest]`. The method is `METHODS[byte % len]` with a fixed key.
//!
//! * even `mode`: `rest` is the raw wire. Random bytes almost never authenticate, so this
//!   mostly checks salt/length framing and `NeedMore` accounting on garbage.
//! * odd `mode`: `rest` describes a valid stream (salt, payloads) that is sealed with
//!   `tcp::Encryptor`, then left intact, truncated or has one bit flipped (chosen by the
//!   input), and decoded. That reaches the length and payload logic. Checked properties:
//!   - intact: decodes to exactly the payloads, chunk by chunk, ending on a boundary;
//!   - truncated: a prefix of the payloads, never `Invalid`;
//!   - bit flipped: a prefix of the payloads, then `Invalid(BadTag)` (if there was a chunk).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::cipher::{MasterKey, Method, METHODS};
use ss_smol::proto::tcp::{Decryptor, Encryptor, HEADER_LEN, MAX_PAYLOAD, OVERHEAD};
use ss_smol::proto::{Invalid, ParseError};

/// Keeps one execution fast: at most this much plaintext in a built stream.
const MAX_TOTAL: usize = 64 * 1024;

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
        1 + (b as usize - 0x80) * 257
    }
}

/// How a decode run ended.
#[derive(Debug, PartialEq)]
enum End {
    /// All input used; `clean` if the decoder sits between chunks with nothing pending.
    Exhausted { clean: bool },
    Invalid(Invalid),
}

/// Feeds `wire` to a fresh decoder in pieces; returns every non-empty plaintext and the end.
fn decode(method: Method, key: &MasterKey, wire: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, End) {
    let mut dec = Decryptor::new(method, key);
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
            match dec.decode(&mut buf) {
                Ok(step) => {
                    assert!(step.consumed > 0 && step.consumed <= buf.len(), "{step:?} of {}", buf.len());
                    assert!(step.plain.start <= step.plain.end && step.plain.end <= step.consumed);
                    if !step.plain.is_empty() {
                        chunks.push(buf[step.plain.clone()].to_vec());
                    }
                    buf.drain(..step.consumed);
                }
                Err(ParseError::NeedMore(more)) => {
                    // Waiting for more than the element needs could stall a relay.
                    assert!(more > 0, "NeedMore(0)");
                    assert!(
                        buf.len() + more <= dec.element_len(),
                        "NeedMore({more}) with {} buffered, element is {}",
                        buf.len(),
                        dec.element_len()
                    );
                    break;
                }
                Err(ParseError::Invalid(why)) => {
                    // A failed stream stays failed.
                    assert!(matches!(dec.decode(&mut buf), Err(ParseError::Invalid(_))));
                    return (chunks, End::Invalid(why));
                }
            }
        }
        if rest.is_empty() {
            return (chunks, End::Exhausted { clean: dec.at_boundary() && buf.is_empty() });
        }
    }
}

/// Seals `payloads` into a complete stream, laid out as the relay does it.
fn seal_stream(method: Method, key: &MasterKey, salt: &[u8], payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = Encryptor::new(method, key, salt);
    let mut wire = enc.salt().to_vec();
    assert_eq!(wire, &salt[..method.salt_len()]);
    for p in payloads {
        let mut frame = vec![0u8; p.len() + OVERHEAD];
        frame[HEADER_LEN..HEADER_LEN + p.len()].copy_from_slice(p);
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

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let method = METHODS[input.byte() as usize % METHODS.len()];
    let key = MasterKey::from_password(method, b"fuzz");
    let mode = input.byte();

    if mode % 2 == 0 {
        // Raw wire: `[n sizes][sizes…][wire…]`.
        let n = input.byte() as usize % 8;
        let sizes = input.take(n);
        let _ = decode(method, &key, input.0, sizes);
        return;
    }

    // Built stream: `[mutation][position u32][4 sizes][salt…][payload specs…]`, where a
    // payload spec is `[len u16][bytes…]`: len is 1..=MAX_PAYLOAD, and bytes missing from the
    // input are filled with a pattern so long chunks stay cheap to reach.
    let mutation = (mode >> 1) % 3;
    let position = input.u32() as usize;
    let sizes = input.take(4);
    let mut salt = [0u8; 32];
    let given = input.take(method.salt_len());
    salt[..given.len()].copy_from_slice(given);

    let mut payloads = Vec::new();
    let mut total = 0;
    while !input.is_empty() && total < MAX_TOTAL {
        let len = (1 + input.u16() as usize % MAX_PAYLOAD).min(MAX_TOTAL - total).max(1);
        let mut p = input.take(len).to_vec();
        let fill = p.len() as u8;
        p.extend((p.len()..len).map(|i| (i as u8).wrapping_mul(31) ^ fill));
        total += p.len();
        payloads.push(p);
    }

    let mut wire = seal_stream(method, &key, &salt, &payloads);
    let expect_len: usize = method.salt_len() + total + payloads.len() * OVERHEAD;
    assert_eq!(wire.len(), expect_len);

    match mutation {
        0 => {
            let (got, end) = decode(method, &key, &wire, sizes);
            assert_eq!(end, End::Exhausted { clean: true });
            assert!(got == payloads, "intact stream decoded to different chunks");
        }
        1 => {
            wire.truncate(position % (wire.len() + 1));
            let (got, end) = decode(method, &key, &wire, sizes);
            assert!(matches!(end, End::Exhausted { .. }), "truncated stream: {end:?}");
            assert!(is_prefix(&got, &payloads), "truncated stream decoded to other chunks");
        }
        _ => {
            let bit = position % (wire.len() * 8);
            wire[bit / 8] ^= 1 << (bit % 8);
            let (got, end) = decode(method, &key, &wire, sizes);
            assert!(is_prefix(&got, &payloads), "flipped stream decoded to other chunks");
            if !payloads.is_empty() {
                assert_eq!(end, End::Invalid(Invalid::BadTag), "bit {bit} flipped");
                assert!(got.len() < payloads.len());
            }
        }
    }
});
