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
use super::Invalid;
use core::ops::Range;

/// Bytes a sealed packet adds to its plaintext.
pub fn overhead(method: Method) -> usize {
    method.salt_len() + TAG_LEN
}

/// Seals `packet` in place. Layout on entry: `[salt_len bytes, ignored][plaintext][16 bytes,
/// ignored]`; `salt` (salt_len bytes) is copied to the front and the tag to the end.
/// Returns `None` if `packet` cannot hold salt + tag.
pub fn seal(method: Method, key: &MasterKey, salt: &[u8], packet: &mut [u8]) -> Option<()> {
    let salt_len = method.salt_len();
    let salt = salt.get(..salt_len)?;
    let body_end = packet.len().checked_sub(TAG_LEN)?;
    if body_end < salt_len {
        return None;
    }
    let (head, rest) = packet.split_at_mut(salt_len);
    head.copy_from_slice(salt);
    let (body, tag_out) = rest.split_at_mut(body_end - salt_len);
    let tag = seal_packet(method, key, salt, body);
    tag_out.copy_from_slice(&tag);
    Some(())
}

/// Opens `packet` in place; returns where the plaintext (address + payload) now lies.
pub fn open(method: Method, key: &MasterKey, packet: &mut [u8]) -> Result<Range<usize>, Invalid> {
    let salt_len = method.salt_len();
    if packet.len() < salt_len + TAG_LEN {
        return Err(Invalid::ShortPacket);
    }
    let body_end = packet.len() - TAG_LEN;
    let (salt, rest) = packet.split_at_mut(salt_len);
    let (body, tag) = rest.split_at_mut(body_end - salt_len);
    open_packet(method, key, salt, body, tag)?;
    Ok(salt_len..body_end)
}

#[cfg(test)]
mod tests {
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
        assert!(seal(m, &key, &[0; 16], &mut [0u8; 20]).is_none());
    }
}
