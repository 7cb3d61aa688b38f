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

use super::salts::SaltPool;
use super::stream::StreamOpener;
use super::tcp::{open_request_fixed, open_request_variable, request_fixed_len, RequestFixed};
use super::{Error, Psk, TAG_LEN};
use crate::proto::handshake::{Next, Probe, Step};
use crate::proto::ParseError;

enum State {
    Head,
    Body(RequestFixed),
    /// Decided (target found or refused): nothing more to decode here.
    Done(Option<RequestFixed>),
}

/// See the module documentation.
pub struct RequestHandshake {
    psk: Psk,
    state: State,
}

impl RequestHandshake {
    pub fn new(psk: &Psk) -> RequestHandshake {
        RequestHandshake {
            psk: psk.clone(),
            state: State::Head,
        }
    }

    /// The salt and sealed fixed header: what to read before any decision.
    pub fn head_len(&self) -> usize {
        request_fixed_len(self.psk.method())
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
            State::Head => match open_request_fixed(&self.psk, element, now, salts) {
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
