//! AES as a bare block cipher (one 16-byte block, "ECB" of a single block), for Shadowsocks
//! 2022's UDP separate header and SIP023's identity headers.
//!
//! ```text
//! separate header (plaintext) = session_id (8) | packet_id (u64 BE)
//! on the wire                 = AES_PSK(separate header)        one block, no IV, no tag
//! ```

use crate::gcm;
use aes::cipher::{BlockCipherDecrypt, Key, KeyInit};
use aes::{Aes128, Aes256};
use alloc::boxed::Box;

/// An AES key schedule for single blocks; boxed like [`crate::Aead`].
pub struct AesBlock(Keyed);

enum Keyed {
    Aes128(Box<Aes128>),
    Aes256(Box<Aes256>),
}

impl AesBlock {
    /// AES-128 keyed with a 16-byte key, AES-256 with a 32-byte one; other lengths are `None`.
    #[inline(never)]
    pub fn new(key: &[u8]) -> Option<AesBlock> {
        Some(AesBlock(match key.len() {
            16 => Keyed::Aes128(Box::new(Aes128::new(&Key::<Aes128>::from_fn(|i| key[i])))),
            32 => Keyed::Aes256(Box::new(Aes256::new(&Key::<Aes256>::from_fn(|i| key[i])))),
            _ => return None,
        }))
    }

    /// Encrypts one block in place.
    #[inline(never)]
    pub fn encrypt(&self, block: &mut [u8; 16]) {
        let mut b = [aes::Block::from(*block)];
        match &self.0 {
            Keyed::Aes128(k) => gcm::encrypt(&**k, &mut b),
            Keyed::Aes256(k) => gcm::encrypt(&**k, &mut b),
        }
        *block = b[0].into();
    }

    /// Decrypts one block in place.
    #[inline(never)]
    pub fn decrypt(&self, block: &mut [u8; 16]) {
        let mut b = aes::Block::from(*block);
        match &self.0 {
            Keyed::Aes128(k) => k.decrypt_block(&mut b),
            Keyed::Aes256(k) => k.decrypt_block(&mut b),
        }
        *block = b.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fips_197_appendix_c() {
        // FIPS-197 C.1 and C.3: plaintext 00112233445566778899aabbccddeeff, key 00 01 02 ...
        let plain: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let cases: [(&[u8], [u8; 16]); 2] = [
            (
                &key[..16],
                [
                    0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70,
                    0xb4, 0xc5, 0x5a,
                ],
            ),
            (
                &key[..],
                [
                    0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf, 0xea, 0xfc, 0x49, 0x90, 0x4b,
                    0x49, 0x60, 0x89,
                ],
            ),
        ];
        for (k, want) in cases {
            let aes = AesBlock::new(k).unwrap();
            let mut b = plain;
            aes.encrypt(&mut b);
            assert_eq!(b, want);
            aes.decrypt(&mut b);
            assert_eq!(b, plain);
        }
        assert!(AesBlock::new(&key[..24]).is_none());
        assert!(AesBlock::new(&[]).is_none());
    }
}
