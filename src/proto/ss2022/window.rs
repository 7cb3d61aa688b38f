//! The per-session packet-id filter of Shadowsocks 2022 UDP: a sliding window over the highest
//! id seen, WireGuard's (wireguard-go `replay.Filter`, RFC 6479), as shadowsocks-rust uses.
//!
//! ```text
//! ring of BLOCKS u64 bitmaps, bit (id mod 64) of block (id / 64 mod BLOCKS)
//!   id >  last             accept; clear the blocks the window slides over; last = id
//!   last - id >= WINDOW    refuse (too old)
//!   otherwise              accept iff its bit was clear, then set it
//! ```
//! `WINDOW = (BLOCKS - 1) * 64` = 1984 ids with 32 blocks: 256 bytes per session. The block of
//! `last` is only partly inside the window, which is why one block is held back.
//!
//! The spec's order: a packet's id may be [`check`](PacketWindow::check)ed as soon as the
//! separate header is decrypted, but only [`accept`](PacketWindow::accept)ed (recorded) after
//! the whole packet authenticated and its header validated.

const BLOCKS: usize = 32;
/// `BLOCKS` is a power of two: a slot is the block number masked.
const SLOT_MASK: u64 = BLOCKS as u64 - 1;
const BLOCK_BITS: u64 = 64;
/// Ids this far below the highest one seen are refused.
pub const WINDOW: u64 = (BLOCKS as u64 - 1) * BLOCK_BITS;

/// See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketWindow {
    last: u64,
    ring: [u64; BLOCKS],
}

impl Default for PacketWindow {
    fn default() -> Self {
        PacketWindow::new()
    }
}

/// The block number of an id (id / 64).
fn block_of(id: u64) -> u64 {
    id.wrapping_shr(6)
}

/// Ring slot of a block number.
fn slot_of(block: u64) -> usize {
    // Masked to 0..32: the cast cannot truncate.
    (block & SLOT_MASK) as usize
}

/// Ring slot and bit of an id.
fn slot(id: u64) -> (usize, u64) {
    // id & 63 < 64: a valid shift.
    (
        slot_of(block_of(id)),
        1u64.wrapping_shl((id & (BLOCK_BITS - 1)) as u32),
    )
}

impl PacketWindow {
    /// A window that has seen nothing (id 0 is the first a sender uses).
    pub const fn new() -> PacketWindow {
        PacketWindow {
            last: 0,
            ring: [0; BLOCKS],
        }
    }

    /// Whether `id` would be accepted; changes nothing.
    pub fn check(&self, id: u64) -> bool {
        if id > self.last {
            return true;
        }
        if self.last.wrapping_sub(id) >= WINDOW {
            return false;
        }
        let (block, bit) = slot(id);
        self.ring.get(block).is_some_and(|b| b & bit == 0)
    }

    /// Records `id` if it is acceptable; `false` (and no change) if it is a repeat or too old.
    pub fn accept(&mut self, id: u64) -> bool {
        if !self.check(id) {
            return false;
        }
        if id > self.last {
            let current = block_of(self.last);
            // id > last, so block_of(id) >= current: the window moves forward by `diff`
            // blocks, and at most every slot is cleared once.
            let diff = block_of(id).wrapping_sub(current).min(BLOCKS as u64);
            for i in 1..=diff {
                if let Some(b) = self.ring.get_mut(slot_of(current.wrapping_add(i))) {
                    *b = 0;
                }
            }
            self.last = id;
        }
        let (block, bit) = slot(id);
        if let Some(b) = self.ring.get_mut(block) {
            *b |= bit;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]
    use super::*;

    #[test]
    fn in_window_duplicates_and_too_old() {
        let mut w = PacketWindow::new();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(!w.check(5));
        assert!(w.check(4));
        // Jump ahead: everything within the window below stays acceptable once.
        assert!(w.accept(5000));
        assert!(!w.check(5000 - WINDOW));
        assert!(w.check(5000 - WINDOW + 1));
        assert!(w.accept(5000 - WINDOW + 1));
        assert!(!w.accept(5000 - WINDOW + 1));
        assert!(!w.accept(4));
        assert!(w.accept(4999));
        assert!(!w.accept(4999));
    }

    #[test]
    fn sliding_forward_forgets_the_old_bits() {
        let mut w = PacketWindow::new();
        for id in 0..10_000u64 {
            assert!(w.accept(id), "{id}");
            assert!(!w.accept(id), "{id} twice");
        }
        // Every id of the last WINDOW is remembered, in any order of arrival.
        for id in (10_000 - WINDOW)..10_000 {
            assert!(!w.check(id), "{id}");
        }
        // Out of order within the window: every id exactly once.
        let mut w = PacketWindow::new();
        assert!(w.accept(3000));
        for id in (3000 - WINDOW + 1..3000).rev() {
            assert!(w.accept(id), "{id}");
            assert!(!w.accept(id));
        }
    }

    #[test]
    fn huge_ids_do_not_overflow() {
        let mut w = PacketWindow::new();
        assert!(w.accept(u64::MAX));
        assert!(!w.accept(u64::MAX));
        assert!(w.accept(u64::MAX - 1));
        assert!(!w.accept(0));
    }
}
