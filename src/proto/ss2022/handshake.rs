//! ss-server's side of a Shadowsocks 2022 stream's start, as a sans-IO state machine with the
//! same steps as the AEAD-2017 one (`proto::handshake`), so that one read loop drives both.
//!
//! ```text
//! | salt | seal(type, timestamp, length) tag | seal(ADDRESS padding_len padding payload) tag | chunks
//!  \______________ head (one read) _______/   \______________ body (length + 16) ___________/
//! ```
//! The head decides between "read the body" and a probe (bad tag, wrong type, a timestamp 30 s
//! off, a replayed salt); only a head that authenticated and is fresh puts its salt into the
//! [`SaltPool`]. The body yields the target and the first payload, or a header that breaks the
//! padding rules (only a key holder can send one).

use super::identity::{open_stream_header, Users};
use super::salts::SaltPool;
use super::stream::StreamOpener;
use super::tcp::{open_request_fixed, open_request_variable, request_fixed_len, RequestFixed};
use super::{Error, Psk, IDENTITY_LEN, MAX_KEY_LEN, TAG_LEN};
use crate::proto::handshake::{Next, Probe, Step};
use crate::proto::ParseError;
use std::rc::Rc;

enum State {
    Head,
    Body(RequestFixed),
    /// Decided (target found or refused): nothing more to decode here.
    Done(Option<RequestFixed>),
}

/// See the module documentation.
pub struct RequestHandshake {
    /// The server's key; once an identity header named a user, that user's.
    psk: Psk,
    /// A multi-user server's users (SIP023): every request then names one.
    users: Option<Rc<Users>>,
    user: Option<usize>,
    state: State,
}

impl RequestHandshake {
    pub fn new(psk: &Psk, users: Option<Rc<Users>>) -> RequestHandshake {
        RequestHandshake {
            psk: psk.clone(),
            users,
            user: None,
            state: State::Head,
        }
    }

    /// The salt, an identity header on a multi-user server, and the sealed fixed header: what
    /// to read before any decision.
    pub fn head_len(&self) -> usize {
        let eih = if self.users.is_some() {
            IDENTITY_LEN
        } else {
            0
        };
        request_fixed_len(self.psk.method()).saturating_add(eih)
    }

    /// The name of the user the request came from, on a multi-user server.
    pub fn user_name(&self) -> Option<&str> {
        let users = self.users.as_ref()?;
        Some(&users.get(self.user?)?.name)
    }

    /// Bytes the element awaited takes in all (up to 0xFFFF + 16 for the body).
    pub fn element_len(&self) -> usize {
        match &self.state {
            State::Head | State::Done(_) => self.head_len(),
            State::Body(fixed) => usize::from(fixed.variable_len).saturating_add(TAG_LEN),
        }
    }

    /// Decodes the head or the body at the start of `input`, in place. `now` is unix seconds.
    pub fn handle(&mut self, input: &mut [u8], salts: &mut SaltPool, now: u64) -> Step {
        let need = self.element_len();
        let Some(element) = input.get_mut(..need) else {
            return Step {
                consumed: 0,
                next: Next::NeedMore(need.saturating_sub(input.len())),
            };
        };
        let next = match core::mem::replace(&mut self.state, State::Done(None)) {
            State::Head => match self
                .identify(element)
                .and_then(|head| open_request_fixed(&self.psk, head, now, salts))
            {
                Ok(fixed) => {
                    let body = usize::from(fixed.variable_len).saturating_add(TAG_LEN);
                    self.state = State::Body(fixed);
                    Next::NeedMore(body)
                }
                Err(e) => refusal(e),
            },
            State::Body(mut fixed) => match open_request_variable(&mut fixed, element) {
                Ok(header) => {
                    self.state = State::Done(Some(fixed));
                    Next::Connect {
                        target: header.target,
                        early: header.payload,
                    }
                }
                Err(e) => refusal(e),
            },
            State::Done(_) => Next::Probe(Probe::BadChunk),
        };
        Step {
            consumed: need,
            next,
        }
    }

    /// On a multi-user server: finds the user the identity header after the salt names and
    /// keys the request with that user's PSK; returns the head without the identity header
    /// (its salt moved up to sit before the fixed header).
    fn identify<'b>(&mut self, head: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
        let Some(users) = &self.users else {
            return Ok(head);
        };
        let salt_len = self.psk.method().salt_len();
        let (salt, rest) = head
            .split_at_mut_checked(salt_len)
            .ok_or(Error::ShortPacket)?;
        let header = rest
            .first_chunk::<IDENTITY_LEN>()
            .ok_or(Error::ShortPacket)?;
        let hash = open_stream_header(&self.psk, salt, header).ok_or(Error::BadTag)?;
        let (index, user) = users.find(&hash).ok_or(Error::BadTag)?;
        self.psk = user.psk.clone();
        self.user = Some(index);
        // salt | header | fixed  →  … | salt | fixed
        let mut saved = [0u8; MAX_KEY_LEN];
        let saved = saved.get_mut(..salt_len).ok_or(Error::ShortPacket)?;
        saved.copy_from_slice(salt);
        let head = head.get_mut(IDENTITY_LEN..).ok_or(Error::ShortPacket)?;
        head.get_mut(..salt_len)
            .ok_or(Error::ShortPacket)?
            .copy_from_slice(saved);
        Ok(head)
    }

    /// The stream's opening half, positioned after the request (once it named a target).
    pub fn into_opener(self) -> Option<StreamOpener> {
        match self.state {
            State::Done(Some(fixed)) => Some(StreamOpener::after_request(&self.psk, fixed)),
            _ => None,
        }
    }
}

/// What a failed head or body calls for: the same silence for every probe, a bad request for
/// an authenticated header that breaks the rules.
fn refusal(e: Error) -> Next {
    match e {
        Error::ClockSkew { timestamp, now } => Next::Probe(Probe::Timestamp { timestamp, now }),
        Error::Replay => Next::Probe(Probe::Replayed),
        Error::SaltPoolFull => Next::Busy,
        Error::Address(why) => Next::BadRequest(ParseError::Invalid(why)),
        e @ (Error::PaddingTooLong(_) | Error::NoPaddingNoPayload | Error::HeaderOverrun) => {
            Next::Refused(e)
        }
        _ => Next::Probe(Probe::BadTag),
    }
}
