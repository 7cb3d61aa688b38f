//! AES-GCM with a 96-bit nonce and a 128-bit tag (NIST SP 800-38D), composed from the `aes`
//! and `ghash` crates so that the keystream XOR is ours (see [`crate::keystream`]). The counter
//! mode is written here too: it is a few lines, and the `ctr` crate's buffered wrapper cost
//! about 5 KiB of MIPS code per AES key size. No associated data: Shadowsocks uses none.
//!
//! ```text
//! H  = AES_K(0^128)                       GHASH key, computed once per key
//! J0 = nonce || 00 00 00 01               counter block 0 (32-bit big-endian counter)
//! C  = P xor AES-CTR_K(J0 + 1, ...)
//! T  = AES_K(J0) xor GHASH_H(C zero-padded to 16 | be64(0) | be64(8 * len(C)))
//! ```
//!
//! GHASH is computed with POLYVAL, as RFC 8452 appendix A gives it:
//! `GHASH(H, X) = rev(POLYVAL(mulX(rev(H)), rev(X1), ..., rev(Xn)))`, where `rev` reverses the
//! 16 bytes of a block. That is what the `ghash` crate does too, but it reverses each block
//! with a byte loop that stays scalar in our "z" + LTO build (a fifth of the AES-GCM client's
//! CPU in perf); here a block is reversed as one `u128` byte swap.

use crate::keystream::{self, xor};
use crate::{Error, MAX_KEY_LEN, TAG_LEN};
use aes::cipher::consts::U16;
use aes::cipher::{
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, Key, KeyInit,
    ParBlocks,
};
use polyval::hazmat::FieldElement;
use polyval::universal_hash::UniversalHash;
use polyval::Polyval;

/// AES-128, -192 or -256.
pub trait Aes: KeyInit + BlockCipherEncrypt + BlockSizeUser<BlockSize = U16> {}
impl<A: KeyInit + BlockCipherEncrypt + BlockSizeUser<BlockSize = U16>> Aes for A {}

/// Encrypts `blocks` in place; one copy per key size, whoever calls.
#[inline(never)]
pub fn encrypt<A: BlockCipherEncrypt + BlockSizeUser<BlockSize = U16>>(
    aes: &A,
    blocks: &mut [aes::Block],
) {
    aes.encrypt_with_backend(Batches(blocks));
}

/// Blocks encrypted only through the backend's parallel path, a short batch padded to a whole
/// one. The software backend's single-block path (16-bit bitslicing) is a second copy of AES
/// per key size, 2 KiB of MIPS code each. Going without it costs the padding: one wasted
/// block per short batch in software, a few with AES instructions, where they are cheap.
///
/// Size over speed, measured on mipsel (cross/throughput.py under qemu, 2026-12-05): with the
/// two call sites below LLVM keeps the software AES out of line, its column mixing not
/// inlined: 14.6 client MB per CPU-second with AES-256-GCM against 17.3 before. One call site
/// (every batch copied through one buffer) inlines it all again, at 5.1 KB more than the
/// router budget has.
struct Batches<'a>(&'a mut [aes::Block]);

impl BlockSizeUser for Batches<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for Batches<'_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let (whole, tail) = ParBlocks::<B>::slice_as_chunks_mut(self.0);
        for batch in whole {
            backend.encrypt_par_blocks(batch.into());
        }
        if !tail.is_empty() {
            let mut batch = ParBlocks::<B>::default();
            for (b, t) in batch.iter_mut().zip(tail.iter()) {
                *b = *t;
            }
            backend.encrypt_par_blocks((&mut batch).into());
            for (t, b) in tail.iter_mut().zip(batch.iter()) {
                *t = *b;
            }
        }
    }
}

/// The expanded AES key and the hash key derived from it.
pub struct Gcm<A> {
    aes: A,
    polyval: Polyval,
}

/// A block with its 16 bytes in reverse order: GHASH's bit order as POLYVAL's.
fn rev(block: [u8; 16]) -> polyval::Block {
    u128::from_be_bytes(block).to_le_bytes().into()
}

/// Blocks reversed per `update` call.
const HASH_BLOCKS: usize = 32;

impl<A: Aes> Gcm<A> {
    /// Keys AES with the first 16, 24 or 32 bytes of `key`, as `A` needs.
    pub fn new(key: &[u8; MAX_KEY_LEN]) -> Self {
        // Key sizes are at most MAX_KEY_LEN, so the index is always in bounds.
        let aes = A::new(&Key::<A>::from_fn(|i| key[i]));
        let mut h = [aes::Block::default()];
        encrypt(&aes, &mut h);
        let key = FieldElement::from(rev(h[0].into())).mulx();
        Gcm {
            aes,
            polyval: Polyval::new(&key.into()),
        }
    }

    pub fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        Mode::new(&|blocks| encrypt(&self.aes, blocks), &self.polyval).seal(nonce, buf)
    }

    /// Authenticates first and decrypts only a message that passed.
    pub fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        Mode::new(&|blocks| encrypt(&self.aes, blocks), &self.polyval).open(nonce, buf, tag)
    }
}

/// GCM itself, shared by the three AES key sizes (only the block cipher differs): compiled
/// once instead of three times, about 6 KiB less MIPS code.
struct Mode<'a> {
    /// AES with the key, over a batch of blocks in place.
    encrypt: &'a dyn Fn(&mut [aes::Block]),
    polyval: &'a Polyval,
}

impl<'a> Mode<'a> {
    fn new(encrypt: &'a dyn Fn(&mut [aes::Block]), polyval: &'a Polyval) -> Self {
        Mode { encrypt, polyval }
    }

    /// Counter block J0 for `nonce`, and the tag mask AES_K(J0).
    fn start(&self, nonce: &[u8]) -> Result<(aes::Block, [u8; TAG_LEN]), Error> {
        if nonce.len() != 12 {
            return Err(Error::BadLength);
        }
        let mut j0 = aes::Block::default();
        j0[..12].copy_from_slice(nonce);
        j0[15] = 1;
        let mut mask = [j0];
        (self.encrypt)(&mut mask);
        Ok((j0, mask[0].into()))
    }

    /// `buf ^= AES-CTR keystream` from counter block J0 + 1 (32-bit big-endian counter in the
    /// last four bytes, wrapping as GCM's inc32 does).
    fn apply_ctr(&self, j0: &aes::Block, buf: &mut [u8]) {
        let mut counter = u32::from_be_bytes([j0[12], j0[13], j0[14], j0[15]]);
        // Counter blocks encrypted per step: 64, so that AES's parallel backends (up to 32
        // blocks with VAES-512, bitsliced pairs in software) always have full batches.
        let mut ks = [0u8; keystream::STEP];
        for piece in buf.chunks_mut(keystream::STEP) {
            let (blocks, _) =
                aes::Block::slice_as_chunks_mut(&mut ks[..piece.len().next_multiple_of(16)]);
            for block in blocks.iter_mut() {
                counter = counter.wrapping_add(1);
                block[..12].copy_from_slice(&j0[..12]);
                block[12..].copy_from_slice(&counter.to_be_bytes());
            }
            (self.encrypt)(blocks);
            // One XOR over the whole piece: per block, the call cost as much as the XOR.
            xor(piece, &ks);
        }
    }

    /// GHASH of the ciphertext and lengths, in POLYVAL's byte order (see the module
    /// documentation): finalize and reverse for the GHASH value.
    fn hash(&self, ciphertext: &[u8]) -> Polyval {
        let mut polyval = self.polyval.clone();
        let mut blocks = [polyval::Block::default(); HASH_BLOCKS];
        let whole = ciphertext.chunks_exact(16);
        let last = whole.remainder();
        let mut n = 0;
        for chunk in whole {
            // Fixed-size copies: a copy of run-time length was a `memcpy` call per block.
            let mut b = [0u8; 16];
            b.copy_from_slice(chunk);
            blocks[n] = rev(b);
            n += 1;
            if n == HASH_BLOCKS {
                polyval.update(&blocks);
                n = 0;
            }
        }
        polyval.update(&blocks[..n]);
        if !last.is_empty() {
            let mut b = [0u8; 16];
            b[..last.len()].copy_from_slice(last);
            polyval.update(&[rev(b)]);
        }
        let mut lengths = [0u8; 16];
        lengths[8..].copy_from_slice(&(ciphertext.len() as u64 * 8).to_be_bytes());
        polyval.update(&[rev(lengths)]);
        polyval
    }

    #[inline(never)]
    fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        let (j0, mask) = self.start(nonce)?;
        self.apply_ctr(&j0, buf);
        let mut tag: [u8; TAG_LEN] = rev(self.hash(buf).finalize().into()).into();
        for (t, m) in tag.iter_mut().zip(mask) {
            *t ^= m;
        }
        Ok(tag)
    }

    #[inline(never)]
    fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        let (j0, mask) = self.start(nonce)?;
        // T = mask ^ GHASH  <=>  rev(T ^ mask) is the POLYVAL value; `verify` compares in
        // constant time.
        let mut expected = *tag;
        for (e, m) in expected.iter_mut().zip(mask) {
            *e ^= m;
        }
        self.hash(buf)
            .verify(&rev(expected))
            .map_err(|_| Error::BadTag)?;
        self.apply_ctr(&j0, buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::{Aes128, Aes192, Aes256};

    /// Batches of every length up to past two counter steps, against one block at a time.
    fn batches_match_single_blocks<A: Aes>() {
        let aes = A::new(&Key::<A>::from_fn(|i| i as u8 ^ 0x5a));
        let plain: alloc::vec::Vec<aes::Block> = (0..140u8)
            .map(|n| aes::Block::from_fn(|i| n.wrapping_mul(7) ^ i as u8))
            .collect();
        for len in 0..plain.len() {
            let mut batch = plain[..len].to_vec();
            encrypt(&aes, &mut batch);
            for (got, p) in batch.iter().zip(&plain) {
                let mut one = *p;
                aes.encrypt_block(&mut one);
                assert_eq!(*got, one, "length {len}");
            }
        }
    }

    #[test]
    fn every_key_size() {
        batches_match_single_blocks::<Aes128>();
        batches_match_single_blocks::<Aes192>();
        batches_match_single_blocks::<Aes256>();
    }
}
