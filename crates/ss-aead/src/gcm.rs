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

use crate::keystream::xor;
use crate::{Error, MAX_KEY_LEN, TAG_LEN};
use aes::cipher::consts::U16;
use aes::cipher::{BlockCipherEncrypt, BlockSizeUser, Key, KeyInit};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;

/// Counter blocks encrypted per step (512 bytes of keystream), so that AES's parallel
/// backends (8 blocks with AES-NI, bitsliced pairs in software) always have full batches.
const STEP_BLOCKS: usize = 32;

/// AES-128, -192 or -256.
pub trait Aes: KeyInit + BlockCipherEncrypt + BlockSizeUser<BlockSize = U16> {}
impl<A: KeyInit + BlockCipherEncrypt + BlockSizeUser<BlockSize = U16>> Aes for A {}

/// The expanded AES key and the GHASH key derived from it.
pub struct Gcm<A> {
    aes: A,
    ghash: GHash,
}

impl<A: Aes> Gcm<A> {
    /// Keys AES with the first 16, 24 or 32 bytes of `key`, as `A` needs.
    pub fn new(key: &[u8; MAX_KEY_LEN]) -> Self {
        // Key sizes are at most MAX_KEY_LEN, so the index is always in bounds.
        let aes = A::new(&Key::<A>::from_fn(|i| key[i]));
        let mut h = ghash::Key::default();
        aes.encrypt_block(&mut h);
        Gcm {
            aes,
            ghash: GHash::new(&h),
        }
    }

    pub fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        Mode::new(&|blocks| self.aes.encrypt_blocks(blocks), &self.ghash).seal(nonce, buf)
    }

    /// Authenticates first and decrypts only a message that passed.
    pub fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        Mode::new(&|blocks| self.aes.encrypt_blocks(blocks), &self.ghash).open(nonce, buf, tag)
    }
}

/// GCM itself, shared by the three AES key sizes (only the block cipher differs): compiled
/// once instead of three times, about 6 KiB less MIPS code.
struct Mode<'a> {
    /// AES with the key, over a batch of blocks in place.
    encrypt: &'a dyn Fn(&mut [aes::Block]),
    ghash: &'a GHash,
}

impl<'a> Mode<'a> {
    fn new(encrypt: &'a dyn Fn(&mut [aes::Block]), ghash: &'a GHash) -> Self {
        Mode { encrypt, ghash }
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
        let mut ks = [aes::Block::default(); STEP_BLOCKS];
        for piece in buf.chunks_mut(16 * STEP_BLOCKS) {
            let blocks = &mut ks[..piece.len().div_ceil(16)];
            for block in blocks.iter_mut() {
                counter = counter.wrapping_add(1);
                block[..12].copy_from_slice(&j0[..12]);
                block[12..].copy_from_slice(&counter.to_be_bytes());
            }
            (self.encrypt)(blocks);
            for (data, block) in piece.chunks_mut(16).zip(blocks.iter()) {
                xor(data, block);
            }
        }
    }

    /// GHASH of the ciphertext and lengths.
    fn hash(&self, ciphertext: &[u8]) -> GHash {
        let mut ghash = self.ghash.clone();
        ghash.update_padded(ciphertext);
        let mut lengths = ghash::Block::default();
        lengths[8..].copy_from_slice(&(ciphertext.len() as u64 * 8).to_be_bytes());
        ghash.update(&[lengths]);
        ghash
    }

    #[inline(never)]
    fn seal(&self, nonce: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        let (j0, mask) = self.start(nonce)?;
        self.apply_ctr(&j0, buf);
        let mut tag: [u8; TAG_LEN] = self.hash(buf).finalize().into();
        for (t, m) in tag.iter_mut().zip(mask) {
            *t ^= m;
        }
        Ok(tag)
    }

    #[inline(never)]
    fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        let (j0, mask) = self.start(nonce)?;
        // T = mask ^ GHASH  <=>  GHASH = T ^ mask; `verify` compares in constant time.
        let mut expected = ghash::Block::from(*tag);
        for (e, m) in expected.iter_mut().zip(mask) {
            *e ^= m;
        }
        self.hash(buf)
            .verify(&expected)
            .map_err(|_| Error::BadTag)?;
        self.apply_ctr(&j0, buf);
        Ok(())
    }
}
