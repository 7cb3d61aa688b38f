//! Pure decisions the relays consult: which sources are banned, which targets ss-server may
//! reach, which server a client connection tries next, which UDP association to keep, which
//! unfinished handshake gives way, how many buffers the address space allows, how often a
//! repeated warning is logged. No sockets, no async and no clock: callers pass `now` (the event
//! loop's clock), so every rule is tested with simulated time.

pub mod assoc;
pub mod ban;
pub mod breaker;
pub mod handshakes;
pub mod memory;
pub mod targets;
pub mod throttle;
