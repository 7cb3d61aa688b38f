//! AEAD UDP packets: every datagram is sealed on its own with a fresh salt and a zero nonce.
//!
//! ```text
//! +-----------+-------------------------------------+-----+
//! | salt      | seal( ADDRESS | payload )           | tag |
//! +-----------+-------------------------------------+-----+
//!   salt_len     plaintext length                      16
//! ```
//! Client→server the address is the target; server→client it is the remote peer.

use super::cipher::{open_packet, seal_packet, MasterKey, Method, TAG_LEN};
use super::{Invalid, SealError};
use core::ops::Range;

/// Bytes a sealed packet adds to its plaintext.
pub fn overhead(method: Method) -> usize {
    // At most 32 + 16.
    method.salt_len().saturating_add(TAG_LEN)
}

/// Seals `packet` in place. Layout on entry: `[salt_len bytes, ignored][plaintext][16 bytes,
/// ignored]`; `salt` (salt_len bytes) is copied to the front and the tag to the end.
/// On error nothing may be sent: the packet has no valid tag.
#[must_use = "an unsealed packet must not be sent"]
pub fn seal(
    method: Method,
    key: &MasterKey,
    salt: &[u8],
    packet: &mut [u8],
) -> Result<(), SealError> {
    let salt_len = method.salt_len();
    let salt = salt.get(..salt_len).ok_or(SealError::ShortSalt)?;
    let (head, rest) = packet
        .split_at_mut_checked(salt_len)
        .ok_or(SealError::NoRoom)?;
    let (body, tag_out) = rest
        .split_last_chunk_mut::<TAG_LEN>()
        .ok_or(SealError::NoRoom)?;
    head.copy_from_slice(salt);
    *tag_out = seal_packet(method, key, salt, body)?;
    Ok(())
}

/// Opens `packet` in place; returns where the plaintext (address + payload) now lies.
pub fn open(method: Method, key: &MasterKey, packet: &mut [u8]) -> Result<Range<usize>, Invalid> {
    let salt_len = method.salt_len();
    let (salt, rest) = packet
        .split_at_mut_checked(salt_len)
        .ok_or(Invalid::ShortPacket)?;
    let (body, tag) = rest
        .split_last_chunk_mut::<TAG_LEN>()
        .ok_or(Invalid::ShortPacket)?;
    let body_len = body.len();
    open_packet(method, key, salt, body, tag)?;
    // The body lies inside `packet`, so the end cannot overflow.
    Ok(salt_len..salt_len.saturating_add(body_len))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )]
    use super::*;
    use crate::proto::cipher::METHODS;

    #[test]
    fn roundtrip_every_method() {
        for m in METHODS {
            let key = MasterKey::from_password(m, b"udp");
            let salt = [0x5a; 32];
            let plain = b"\x01\x7f\x00\x00\x01\x00\x35hello";
            let mut pkt = vec![0u8; overhead(m) + plain.len()];
            pkt[m.salt_len()..m.salt_len() + plain.len()].copy_from_slice(plain);
            seal(m, &key, &salt, &mut pkt).unwrap();
            assert_eq!(&pkt[..m.salt_len()], &salt[..m.salt_len()]);
            let r = open(m, &key, &mut pkt).unwrap();
            assert_eq!(&pkt[r], plain);
        }
    }

    #[test]
    fn rejects_short_and_forged() {
        let m = Method::Aes128Gcm;
        let key = MasterKey::from_password(m, b"udp");
        assert_eq!(open(m, &key, &mut [0u8; 31]), Err(Invalid::ShortPacket));
        let mut pkt = [0u8; 40];
        assert_eq!(open(m, &key, &mut pkt), Err(Invalid::BadTag));
        assert_eq!(
            seal(m, &key, &[0; 16], &mut [0u8; 20]),
            Err(SealError::NoRoom)
        );
        assert_eq!(
            seal(m, &key, &[0; 15], &mut [0u8; 40]),
            Err(SealError::ShortSalt)
        );
    }
}
