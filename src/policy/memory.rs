//! How much buffer memory a configuration may commit: the size of one pool block, and the most
//! blocks this target's address space allows. Config checks `--pool-blocks` against it; the
//! pool (`relay::pool`) is built from it.

use crate::proto::cipher::MAX_SALT_LEN;
use crate::proto::tcp::MAX_CHUNK;

/// One block holds a salt and two full AEAD chunks (the most one read is sealed into), with a
/// few bytes to spare for relay/tcp.rs to align payloads, rounded so that every block in the
/// arena starts 16-byte aligned.
pub const BLOCK_SIZE: usize = (4 + MAX_SALT_LEN + 2 * MAX_CHUNK).next_multiple_of(16);

/// Most blocks a pool may have on this target; `--pool-blocks` is checked against it.
pub const MAX_BLOCKS: usize = max_blocks(usize::BITS);

/// The block cap for a target whose pointers are `pointer_bits` wide. The pool and its spill
/// budget (as large again) together take at most a quarter of the address space, so on a 32-bit
/// router they leave room for the program, its libraries and the stack (65,536 blocks would be
/// 4 GiB there, and the allocation could only fail); on 64-bit targets the cap is 65,536, what a
/// typo would be.
pub const fn max_blocks(pointer_bits: u32) -> usize {
    let quarter = 1u64 << (pointer_bits - 2);
    let by_address_space = quarter / 2 / BLOCK_SIZE as u64;
    let cap = 1 << 16;
    if by_address_space < cap {
        by_address_space as usize
    } else {
        cap as usize
    }
}
