//! One Shadowsocks 2022 TCP stream as the relay drives it: a sealing half that writes the
//! request (client) or response (server) header with the first payload and plain chunks after
//! it, and an opening half fed with whatever bytes arrived, like the AEAD-2017 pair in
//! `proto::tcp`.
//!
//! ```text
//! sealing, client:  first frame = salt | fixed | tag | ADDRESS padding_len [padding] payload | tag
//! sealing, server:  first frame = salt | fixed (echoes the request salt) | tag | payload | tag
//! then both:        chunk = seal(len) tag | seal(payload) tag
//! opening, client:  Head (salt, fixed) → Payload(first_len) → Length → Payload(n) → Length …
//! opening, server:  Length → Payload(n) → …   (ingress::shadowsocks read the request header)
//! ```
//! The first frame's header is longer than a chunk's length field ([`StreamSealer::first_len`])
//! and a client's first payload carries the padding length between the address and the data
//! ([`StreamSealer::first_gap`]). Timestamps come from the caller: the opening half checks the
//! server's against the clock given by [`StreamOpener::set_clock`].

use super::identity::seal_stream_header;
use super::tcp::{
    open_response_fixed, request_fixed_len, response_fixed_len, seal_request_in_place,
    seal_response, Opener, RequestFixed, Sealer, LENGTH_LEN,
};
use super::{Error, Psk, IDENTITY_LEN, MAX_KEY_LEN, MAX_PADDING, TAG_LEN};
use crate::proto::tcp::Step;
use crate::proto::{Invalid, ParseError, SealError};
use std::rc::Rc;

type Salt = [u8; MAX_KEY_LEN];

fn own(salt: &[u8]) -> Salt {
    let mut s = [0u8; MAX_KEY_LEN];
    for (d, b) in s.iter_mut().zip(salt) {
        *d = *b;
    }
    s
}

enum SealState {
    Request {
        psk: Psk,
        padding: u16,
        /// SIP023: the identity keys whose headers follow the salt, outermost first.
        identities: Option<Rc<[Psk]>>,
    },
    Response {
        psk: Psk,
        request_salt: Salt,
    },
    Chunks(Sealer),
    Failed,
}

/// The sealing half (see the module documentation).
pub struct StreamSealer {
    salt: Salt,
    salt_len: u8,
    state: SealState,
}

impl StreamSealer {
    /// A client's stream under `salt` (fresh random bytes). `padding` is any random u16: it
    /// becomes 1..=900 bytes of padding if the first write carries no data.
    pub fn request(
        psk: &Psk,
        salt: &[u8],
        padding: u16,
        identities: Option<Rc<[Psk]>>,
    ) -> StreamSealer {
        StreamSealer {
            salt: own(salt),
            // At most 32.
            salt_len: psk.method().salt_len() as u8,
            state: SealState::Request {
                psk: psk.clone(),
                padding: (padding % MAX_PADDING).saturating_add(1),
                identities,
            },
        }
    }

    /// A server's reply stream to the request that came with `request_salt`.
    pub fn response(psk: &Psk, salt: &[u8], request_salt: &[u8]) -> StreamSealer {
        StreamSealer {
            salt: own(salt),
            salt_len: psk.method().salt_len() as u8,
            state: SealState::Response {
                psk: psk.clone(),
                request_salt: own(request_salt),
            },
        }
    }

    /// This stream's salt (a client checks the response against it).
    pub fn salt(&self) -> &[u8] {
        self.salt.get(..usize::from(self.salt_len)).unwrap_or(&[])
    }

    /// True until the first frame was sealed.
    pub fn before_first(&self) -> bool {
        matches!(
            self.state,
            SealState::Request { .. } | SealState::Response { .. }
        )
    }

    /// Bytes in front of the next frame's payload: the salt and the header for the first
    /// frame, a sealed length after it.
    pub fn first_len(&self) -> usize {
        match &self.state {
            SealState::Request {
                psk, identities, ..
            } => request_fixed_len(psk.method()).saturating_add(
                IDENTITY_LEN.saturating_mul(identities.as_ref().map_or(0, |i| i.len())),
            ),
            SealState::Response { psk, .. } => response_fixed_len(psk.method()),
            SealState::Chunks(_) | SealState::Failed => LENGTH_LEN,
        }
    }

    /// Bytes the first payload of a client keeps between the target address and the data:
    /// the padding length.
    pub fn first_gap(&self) -> usize {
        match self.state {
            SealState::Request { .. } => 2,
            _ => 0,
        }
    }

    /// Fills the gap of a client's first payload, `payload[..prefix_len]` being the address
    /// and gap and `data_len` bytes of data following it; with no data, appends the padding.
    /// Returns the payload's length.
    pub fn fill_gap(&self, payload: &mut [u8], prefix_len: usize, data_len: usize) -> usize {
        let SealState::Request { padding, .. } = self.state else {
            return prefix_len.saturating_add(data_len);
        };
        let padding = if data_len == 0 { padding } else { 0 };
        let pad_at = prefix_len.saturating_sub(2);
        let end = prefix_len.saturating_add(usize::from(padding));
        if let Some(field) = payload
            .get_mut(pad_at..prefix_len)
            .and_then(|f| f.first_chunk_mut::<2>())
        {
            *field = padding.to_be_bytes();
        }
        match payload.get_mut(prefix_len..end) {
            Some(pad) => pad.fill(0),
            // No room for the padding: leave it out (the seal then refuses the frame).
            None => return prefix_len,
        }
        end.saturating_add(data_len)
    }

    /// Seals the first frame, `[first_len spare][payload][TAG_LEN spare]`, stamped `now`
    /// (unix seconds).
    #[must_use = "an unsealed frame must not be sent"]
    pub fn seal_first(&mut self, frame: &mut [u8], now: u64) -> Result<(), SealError> {
        let salt = own(self.salt());
        let salt = salt.get(..usize::from(self.salt_len)).unwrap_or(&[]);
        let sealer = match &self.state {
            SealState::Request {
                psk, identities, ..
            } => seal_request_with_identities(psk, identities.as_deref(), salt, now, frame),
            SealState::Response { psk, request_salt } => {
                seal_response(psk, salt, now, request_salt, frame)
            }
            SealState::Chunks(_) | SealState::Failed => return Err(SealError::Cipher),
        };
        match sealer {
            Ok(s) => {
                self.state = SealState::Chunks(s);
                Ok(())
            }
            Err(e) => {
                self.state = SealState::Failed;
                Err(e)
            }
        }
    }

    /// Seals a chunk after the first frame: `[LENGTH_LEN spare][payload][TAG_LEN spare]`.
    #[must_use = "an unsealed chunk must not be sent"]
    pub fn seal_chunk(&mut self, frame: &mut [u8]) -> Result<(), SealError> {
        match &mut self.state {
            SealState::Chunks(s) => s.seal_chunk(frame),
            _ => Err(SealError::Cipher),
        }
    }
}

/// A request's first frame, `[salt][identity headers][fixed][tag][variable][tag]`.
fn seal_request_with_identities(
    psk: &Psk,
    identities: Option<&[Psk]>,
    salt: &[u8],
    now: u64,
    frame: &mut [u8],
) -> Result<Sealer, SealError> {
    let ids = identities.unwrap_or(&[]);
    let eih_len = IDENTITY_LEN.saturating_mul(ids.len());
    // Sealed after the headers' room, salt first; the salt then goes in front of the headers.
    let sealer = seal_request_in_place(
        psk,
        salt,
        now,
        frame.get_mut(eih_len..).ok_or(SealError::NoRoom)?,
    )?;
    let (salt_out, rest) = frame
        .split_at_mut_checked(salt.len())
        .ok_or(SealError::NoRoom)?;
    salt_out.copy_from_slice(salt);
    for (i, (id, out)) in ids
        .iter()
        .zip(rest.chunks_exact_mut(IDENTITY_LEN))
        .enumerate()
    {
        let next = ids.get(i.saturating_add(1)).unwrap_or(psk);
        let header = seal_stream_header(id, next, salt).ok_or(SealError::Cipher)?;
        out.copy_from_slice(&header);
    }
    Ok(sealer)
}

enum Expect {
    Head,
    Length,
    Payload(u16),
    Failed,
}

/// The opening half (see the module documentation).
pub struct StreamOpener {
    psk: Psk,
    request_salt: Salt,
    opener: Option<Opener>,
    expect: Expect,
    /// Unix seconds to check the response header against.
    now: u64,
}

impl StreamOpener {
    /// A client's: expects the server's response header to the request sent under
    /// `request_salt`.
    pub fn response(psk: &Psk, request_salt: &[u8]) -> StreamOpener {
        StreamOpener {
            psk: psk.clone(),
            request_salt: own(request_salt),
            opener: None,
            expect: Expect::Head,
            now: 0,
        }
    }

    /// A server's, positioned after the request header `fixed` opened (and its variable
    /// header, which the caller opened with `fixed`).
    pub fn after_request(psk: &Psk, fixed: RequestFixed) -> StreamOpener {
        let request_salt = own(fixed.salt());
        StreamOpener {
            psk: psk.clone(),
            request_salt,
            opener: Some(fixed.opener),
            expect: Expect::Length,
            now: 0,
        }
    }

    /// The key the stream is under (a user's, on a multi-user server).
    pub fn psk(&self) -> &Psk {
        &self.psk
    }

    /// The request's salt: what the response echoes.
    pub fn request_salt(&self) -> &[u8] {
        self.request_salt
            .get(..self.psk.method().salt_len())
            .unwrap_or(&[])
    }

    /// True while the response header has not arrived: the clock is needed.
    pub fn awaiting_head(&self) -> bool {
        matches!(self.expect, Expect::Head)
    }

    pub fn set_clock(&mut self, now: u64) {
        self.now = now;
    }

    /// True once the peer's header authenticated.
    pub fn answered(&self) -> bool {
        self.opener.is_some()
    }

    /// True between chunks (or before anything): a clean place for the stream to end.
    pub fn at_boundary(&self) -> bool {
        matches!(self.expect, Expect::Head | Expect::Length)
    }

    /// Bytes from the start of the element awaited to the next payload.
    pub fn payload_offset(&self) -> usize {
        match self.expect {
            Expect::Head => response_fixed_len(self.psk.method()),
            Expect::Length | Expect::Failed => LENGTH_LEN,
            Expect::Payload(_) => 0,
        }
    }

    /// Bytes the element awaited takes (at most 0xFFFF + 16).
    pub fn element_len(&self) -> usize {
        match self.expect {
            Expect::Head => response_fixed_len(self.psk.method()),
            Expect::Length | Expect::Failed => LENGTH_LEN,
            Expect::Payload(n) => usize::from(n).saturating_add(TAG_LEN),
        }
    }

    /// Decodes the next element at the start of `buf`, in place; after an `Invalid` the
    /// stream is dead for good.
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<Step, ParseError> {
        let result = self.step(buf);
        if let Err(ParseError::Invalid(_)) = result {
            self.expect = Expect::Failed;
        }
        result
    }

    fn step(&mut self, buf: &mut [u8]) -> Result<Step, ParseError> {
        if let Expect::Failed = self.expect {
            return Err(Invalid::BadTag.into());
        }
        let need = self.element_len();
        let have = buf.len();
        let buf = buf
            .get_mut(..need)
            .ok_or(ParseError::NeedMore(need.saturating_sub(have)))?;
        let empty = Step {
            consumed: need,
            plain: 0..0,
        };
        match (&self.expect, &mut self.opener) {
            (Expect::Failed, _) => Err(Invalid::BadTag.into()),
            (Expect::Head, _) => {
                let salt = self
                    .request_salt
                    .get(..self.psk.method().salt_len())
                    .unwrap_or(&[]);
                let fixed =
                    open_response_fixed(&self.psk, salt, buf, self.now).map_err(parse_error)?;
                self.opener = Some(fixed.opener);
                self.expect = Expect::Payload(fixed.first_len);
                Ok(empty)
            }
            (Expect::Length, Some(opener)) => {
                let len = opener.open_length(buf).map_err(parse_error)?;
                self.expect = Expect::Payload(len);
                Ok(empty)
            }
            (&Expect::Payload(len), Some(opener)) => {
                opener.open_payload(len, buf).map_err(parse_error)?;
                self.expect = Expect::Length;
                Ok(Step {
                    consumed: need,
                    plain: 0..usize::from(len),
                })
            }
            // Length and Payload come only after the header made the opener.
            (_, None) => Err(Invalid::BadTag.into()),
        }
    }
}

/// A decoder's error as the stream's `ParseError`, by cause.
pub fn parse_error(e: Error) -> ParseError {
    ParseError::Invalid(match e {
        Error::NeedMore(n) => return ParseError::NeedMore(n),
        Error::BadType(t) => Invalid::HeaderType(t),
        Error::ClockSkew { timestamp, now } => Invalid::ClockSkew { timestamp, now },
        Error::SaltMismatch => Invalid::SaltMismatch,
        Error::Address(why) => why,
        Error::ShortPacket => Invalid::ShortPacket,
        _ => Invalid::BadTag,
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::arithmetic_side_effects
    )]
    use super::super::salts::SaltPool;
    use super::super::tcp::{open_request_fixed, open_request_variable, OVERHEAD};
    use super::super::METHODS;
    use super::*;
    use crate::proto::address::Address;

    const NOW: u64 = 1_700_000_000;

    fn psk(m: super::super::Method) -> Psk {
        Psk::from_bytes(m, &[7u8; 32][..m.key_len()]).unwrap()
    }

    /// A client's first frame as the relay lays it out: address, gap, data.
    fn client_first(enc: &mut StreamSealer, target: &Address, data: &[u8]) -> Vec<u8> {
        let addr = target.to_wire();
        let head = enc.first_len();
        let prefix = addr.len() + enc.first_gap();
        let mut frame = vec![0u8; head + prefix + 1000 + data.len() + TAG_LEN];
        frame[head..head + addr.len()].copy_from_slice(&addr);
        frame[head + prefix..head + prefix + data.len()].copy_from_slice(data);
        let len = enc.fill_gap(&mut frame[head..], prefix, data.len());
        frame.truncate(head + len + TAG_LEN);
        enc.seal_first(&mut frame, NOW).unwrap();
        frame
    }

    fn chunk(enc: &mut StreamSealer, data: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; data.len() + OVERHEAD];
        frame[LENGTH_LEN..LENGTH_LEN + data.len()].copy_from_slice(data);
        enc.seal_chunk(&mut frame).unwrap();
        frame
    }

    /// Feeds `wire` to `dec` in pieces of `step`, as a relay would; returns the plaintext.
    fn open_all(dec: &mut StreamOpener, wire: &[u8], step: usize) -> Result<Vec<u8>, ParseError> {
        let (mut pending, mut out) = (Vec::new(), Vec::new());
        for piece in wire.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                match dec.decode(&mut pending) {
                    Ok(s) => {
                        out.extend_from_slice(&pending[s.plain.clone()]);
                        pending.drain(..s.consumed);
                    }
                    Err(ParseError::NeedMore(_)) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        assert!(pending.is_empty() && dec.at_boundary());
        Ok(out)
    }

    /// The server's side of a request: fixed header, variable header, then the stream.
    fn server_open(psk: &Psk, wire: &mut [u8]) -> (Address, Vec<u8>, StreamOpener, usize) {
        let fixed_len = request_fixed_len(psk.method());
        let mut pool = SaltPool::new(8);
        let mut fixed = open_request_fixed(psk, &mut wire[..fixed_len], NOW, &mut pool).unwrap();
        let var_end = fixed_len + usize::from(fixed.variable_len) + TAG_LEN;
        let header = open_request_variable(&mut fixed, &mut wire[fixed_len..var_end]).unwrap();
        let early = wire[fixed_len..var_end][header.payload].to_vec();
        (
            header.target,
            early,
            StreamOpener::after_request(psk, fixed),
            var_end,
        )
    }

    #[test]
    fn a_whole_exchange_every_method() {
        let target = Address::from_host_port("example.com:443").unwrap();
        for m in METHODS {
            let psk = psk(m);
            let mut up = StreamSealer::request(&psk, &[1; 32], 5, None);
            assert_eq!(up.first_gap(), 2);
            let mut wire = client_first(&mut up, &target, b"GET /");
            wire.extend(chunk(&mut up, &[9u8; 0x3000]));
            let (t, early, mut dec, used) = server_open(&psk, &mut wire);
            assert_eq!((t, &early[..]), (target.clone(), &b"GET /"[..]));
            assert_eq!(
                open_all(&mut dec, &wire[used..], 7).unwrap(),
                vec![9u8; 0x3000]
            );

            // The response, its first payload with it, then a chunk as long as 2022 allows.
            let mut down = StreamSealer::response(&psk, &[2; 32], &[1; 32]);
            assert_eq!(down.first_gap(), 0);
            let head = down.first_len();
            let mut reply = vec![0u8; head + 3 + TAG_LEN];
            reply[head..head + 3].copy_from_slice(b"200");
            down.seal_first(&mut reply, NOW + 29).unwrap();
            reply.extend(chunk(&mut down, &vec![4u8; 0xFFFF]));
            for step in [1, 1000, reply.len()] {
                let mut back = StreamOpener::response(&psk, &[1; 32][..m.salt_len()]);
                back.set_clock(NOW);
                assert!(!back.answered());
                let got = open_all(&mut back, &reply, step).unwrap();
                assert!(back.answered());
                assert_eq!(&got[..3], b"200");
                assert_eq!(got.len(), 3 + 0xFFFF);
            }
        }
    }

    #[test]
    fn a_request_without_data_is_padded() {
        let target = Address::from_host_port("10.0.0.1:22").unwrap();
        let psk = psk(super::super::Method::Aes128Gcm);
        for random in [0u16, 899, 900, u16::MAX] {
            let mut up = StreamSealer::request(&psk, &[3; 16], random, None);
            let mut wire = client_first(&mut up, &target, b"");
            let (_, early, _, _) = server_open(&psk, &mut wire);
            assert!(early.is_empty());
            let pad = wire.len() - request_fixed_len(psk.method()) - target.wire_len() - 2 - 16;
            assert_eq!(pad, usize::from(random % 900) + 1);
        }
    }

    #[test]
    fn a_response_is_checked_for_time_salt_and_type() {
        let m = super::super::Method::Aes256Gcm;
        let psk = psk(m);
        let reply_at = |now: u64, request_salt: [u8; 32]| {
            let mut down = StreamSealer::response(&psk, &[2; 32], &request_salt);
            let head = down.first_len();
            let mut reply = vec![0u8; head + 1 + TAG_LEN];
            down.seal_first(&mut reply, now).unwrap();
            reply
        };
        let mut back = StreamOpener::response(&psk, &[1; 32]);
        back.set_clock(NOW);
        assert_eq!(
            open_all(&mut back, &reply_at(NOW - 31, [1; 32]), 100),
            Err(ParseError::Invalid(Invalid::ClockSkew {
                timestamp: NOW - 31,
                now: NOW
            }))
        );
        let mut back = StreamOpener::response(&psk, &[1; 32]);
        back.set_clock(NOW);
        assert_eq!(
            open_all(&mut back, &reply_at(NOW, [5; 32]), 100),
            Err(ParseError::Invalid(Invalid::SaltMismatch))
        );
        // A client's request where a response belongs.
        let mut up = StreamSealer::request(&psk, &[1; 32], 1, None);
        let mut wire = client_first(&mut up, &Address::from_host_port("a:1").unwrap(), b"x");
        let mut back = StreamOpener::response(&psk, &[1; 32]);
        back.set_clock(NOW);
        let fixed = response_fixed_len(m);
        wire.resize(wire.len().max(fixed), 0);
        assert!(matches!(
            back.decode(&mut wire),
            Err(ParseError::Invalid(
                Invalid::BadTag | Invalid::HeaderType(0)
            ))
        ));
        // Dead for good after a failure.
        assert_eq!(back.decode(&mut [0u8; 3]), Err(Invalid::BadTag.into()));
    }

    #[test]
    fn chunks_need_the_first_frame_and_say_their_lengths() {
        let psk = psk(super::super::Method::ChaCha20Poly1305);
        let mut up = StreamSealer::request(&psk, &[1; 32], 1, None);
        assert!(up.before_first());
        assert_eq!(up.first_len(), 32 + 11 + 16);
        assert_eq!(
            up.seal_chunk(&mut [0u8; OVERHEAD + 1]),
            Err(SealError::Cipher)
        );
        let _ = client_first(&mut up, &Address::from_host_port("a:1").unwrap(), b"x");
        assert!(!up.before_first());
        assert_eq!(up.first_len(), LENGTH_LEN);
        let dec = StreamOpener::response(&psk, &[1; 32]);
        assert_eq!(dec.element_len(), 32 + 1 + 8 + 32 + 2 + 16);
        assert_eq!(dec.payload_offset(), dec.element_len());
        assert!(dec.awaiting_head() && dec.at_boundary());
    }
}
