//! SIP023 identity headers: which user a Shadowsocks 2022 stream or packet belongs to, for a
//! server with several users (and relays in front of it). AES methods only.
//!
//! ```text
//! user hash       = BLAKE3(uPSK)[0..16]
//! TCP, after the salt, one per identity key iPSK_i (next_i = iPSK_{i+1}, or the user key):
//!   EIH_i = AES(derive_key("shadowsocks 2022 identity subkey", iPSK_i || salt))(hash(next_i))
//! UDP, after the separate header (which iPSK_0 encrypts, not the user key):
//!   EIH_i = AES(iPSK_i)(hash(next_i) XOR separate header plaintext)
//! ```
//! The stream and the packets' bodies are then keyed with the user's PSK; so are the server's
//! answers (separate header included). The headers are not authenticated themselves: a wrong
//! one names no user, or the wrong one, and the body then fails its tag.

use super::udp::UdpCipher;
use super::{subkey, Psk, IDENTITY_CONTEXT, IDENTITY_LEN};
use ss_aead::AesBlock;

/// The first 16 bytes of BLAKE3 of a key: how identity headers name it.
pub fn user_hash(psk: &Psk) -> [u8; IDENTITY_LEN] {
    let full = ss_aead::blake3::hash(psk.as_bytes()).unwrap_or([0; 32]);
    let mut out = [0u8; IDENTITY_LEN];
    for (o, b) in out.iter_mut().zip(full) {
        *o = b;
    }
    out
}

/// The AES key schedule of a stream's identity subkey.
fn stream_block(identity: &Psk, salt: &[u8]) -> Option<AesBlock> {
    let key = subkey(IDENTITY_CONTEXT, identity, salt);
    AesBlock::new(key.get(..identity.method().key_len())?)
}

/// A TCP identity header naming `next` to the holder of `identity`, for the stream under
/// `salt`; `None` for a ChaCha key (no identity headers there).
pub fn seal_stream_header(identity: &Psk, next: &Psk, salt: &[u8]) -> Option<[u8; IDENTITY_LEN]> {
    let mut block = user_hash(next);
    stream_block(identity, salt)?.encrypt(&mut block);
    Some(block)
}

/// The user hash a TCP identity header carries, read with the server's key.
pub fn open_stream_header(
    identity: &Psk,
    salt: &[u8],
    header: &[u8; IDENTITY_LEN],
) -> Option<[u8; IDENTITY_LEN]> {
    let mut block = *header;
    stream_block(identity, salt)?.decrypt(&mut block);
    Some(block)
}

/// One user of a multi-user server.
pub struct User {
    pub name: Box<str>,
    pub psk: Psk,
    hash: [u8; IDENTITY_LEN],
    /// The user's packet cipher: bodies and the server's answers.
    pub udp: UdpCipher,
}

/// A server's users, found by the hash an identity header carries.
pub struct Users(Vec<User>);

impl Users {
    pub fn new(users: impl IntoIterator<Item = (Box<str>, Psk)>) -> Users {
        Users(
            users
                .into_iter()
                .map(|(name, psk)| User {
                    name,
                    hash: user_hash(&psk),
                    udp: UdpCipher::new(&psk),
                    psk,
                })
                .collect(),
        )
    }

    /// The user whose key hashes to `hash`, and its index.
    pub fn find(&self, hash: &[u8; IDENTITY_LEN]) -> Option<(usize, &User)> {
        self.0.iter().enumerate().find(|(_, u)| u.hash == *hash)
    }

    pub fn get(&self, index: usize) -> Option<&User> {
        self.0.get(index)
    }
}
