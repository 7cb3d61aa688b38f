//! Known-answer tests with every header laid out by hand from the spec (the plaintexts are
//! written out byte by byte here and sealed with `ss_aead` directly, under the published
//! subkey vector where the key allows), round trips, and exhaustive truncation and bit-flip
//! checks of every decoder.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use super::salts::SaltPool;
use super::tcp::*;
use super::udp::{self, *};
use super::*;
use crate::proto::address::Address;
use ss_aead::{AesBlock, Algorithm};

use crate::proto::hex;

const KAT_PSK: &str = "2dcded4f1d0163a649fdf0b03b1dc9bc5d08fda9e1c0904ee69dbe140e5571ee";
const KAT_SALT: &str = "de814ed15c8bc862389c537433d3feeb6bcf343fcbeaff088a781a3c95936c90";
const KAT_SUBKEY: &str = "11d344fb853c7559c74f4fa9a001432b66dd9707eb1d3eb5b1436bf5660f87e1";
const NOW: u64 = 1_700_000_000;

fn kat_psk(method: Method) -> Psk {
    Psk::from_bytes(method, &hex(KAT_PSK)[..method.key_len()]).unwrap()
}

fn key32(k: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..k.len()].copy_from_slice(k);
    a
}

/// Seals `plain` with `alg` under `key` and `nonce`: ciphertext || tag.
fn sealed(alg: Algorithm, key: &[u8], nonce: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    let tag = ss_aead::Aead::new(alg, &key32(key))
        .seal(nonce, &mut buf)
        .unwrap();
    buf.extend_from_slice(&tag);
    buf
}

fn nonce(n: u8) -> [u8; 12] {
    let mut a = [0u8; 12];
    a[0] = n;
    a
}

fn example_com() -> Address {
    Address::from_host_port("example.com:443").unwrap()
}

#[test]
fn session_subkey_known_answer() {
    let psk = kat_psk(Method::Aes256Gcm);
    assert_eq!(
        session_subkey(&psk, &hex(KAT_SALT)).to_vec(),
        hex(KAT_SUBKEY)
    );
    let chacha = kat_psk(Method::ChaCha20Poly1305);
    assert_eq!(
        session_subkey(&chacha, &hex(KAT_SALT)).to_vec(),
        hex(KAT_SUBKEY)
    );
    // AES-128: 16-byte PSK and salt, subkey the first 16 bytes of derive_key, rest zero.
    let psk = kat_psk(Method::Aes128Gcm);
    let salt = &hex(KAT_SALT)[..16];
    let mut material = hex(KAT_PSK)[..16].to_vec();
    material.extend_from_slice(salt);
    let full = ss_aead::blake3::derive_key(SUBKEY_CONTEXT, &material).unwrap();
    let mut want = [0u8; 32];
    want[..16].copy_from_slice(&full[..16]);
    assert_eq!(session_subkey(&psk, salt), want);
}

#[test]
fn psk_parsing_errors_by_cause() {
    let b64 = "Lc3tTx0BY6ZJ/fCwOx3JvF0I/anhwJBO5p2+FA5Vce4=";
    let psk = Psk::from_base64(Method::Aes256Gcm, &format!(" {b64}\n")).unwrap();
    assert_eq!(psk.as_bytes(), &hex(KAT_PSK)[..]);
    assert_eq!(format!("{psk:?}"), "Psk(2022-blake3-aes-256-gcm, ..)");
    assert_eq!(
        Psk::from_base64(Method::Aes256Gcm, "not base64!"),
        Err(KeyError::NotBase64)
    );
    let e = Psk::from_base64(Method::Aes128Gcm, b64).unwrap_err();
    assert_eq!(
        e,
        KeyError::WrongLength {
            method: Method::Aes128Gcm,
            got: 32,
            want: 16
        }
    );
    let msg = e.to_string();
    assert!(msg.contains("head -c 16 /dev/urandom | base64"), "{msg}");
    assert!(KeyError::NotBase64
        .to_string()
        .contains("head -c 32 /dev/urandom | base64"));
    assert_eq!(
        Method::from_name("2022-BLAKE3-AES-128-GCM"),
        Some(Method::Aes128Gcm)
    );
    assert_eq!(Method::from_name("aes-128-gcm"), None);
}

/// The request of the KAT: salt, fixed and variable header laid out by hand, sealed with the
/// published subkey at nonces 0 and 1.
fn kat_request(padding: u16, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let salt = hex(KAT_SALT);
    let subkey = hex(KAT_SUBKEY);
    let mut var = vec![0x03, 11];
    var.extend_from_slice(b"example.com");
    var.extend_from_slice(&[0x01, 0xbb]); // port 443
    var.extend_from_slice(&padding.to_be_bytes());
    var.extend(std::iter::repeat_n(0, usize::from(padding)));
    var.extend_from_slice(payload);
    let mut fixed = vec![0x00]; // type: client stream
    fixed.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x65, 0x53, 0xf1, 0x00]); // 1700000000
    fixed.extend_from_slice(&(var.len() as u16).to_be_bytes());
    let mut wire = salt.clone();
    wire.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(0), &fixed));
    wire.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(1), &var));
    (wire, var)
}

#[test]
fn tcp_request_known_answer_and_decode() {
    let psk = kat_psk(Method::Aes256Gcm);
    let payload = b"GET / HTTP/1.1\r\n\r\n";
    let (want, var) = kat_request(0, payload);
    let target = example_com();
    let len = request_len(Method::Aes256Gcm, &target, 0, payload.len()).unwrap();
    assert_eq!(len, want.len());
    let mut out = vec![0u8; len + 5];
    let (n, mut sealer) =
        seal_request(&psk, &hex(KAT_SALT), NOW, &target, 0, payload, &mut out).unwrap();
    assert_eq!(&out[..n], &want[..]);

    // The following chunk uses nonces 2 (length) and 3 (payload).
    let mut frame = vec![0u8; 3 + OVERHEAD];
    frame[LENGTH_LEN..LENGTH_LEN + 3].copy_from_slice(b"abc");
    sealer.seal_chunk(&mut frame).unwrap();
    let subkey = hex(KAT_SUBKEY);
    let mut chunk = sealed(Algorithm::Aes256Gcm, &subkey, &nonce(2), &[0, 3]);
    chunk.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(3), b"abc"));
    assert_eq!(frame, chunk);

    // Decode what the hand-made layout says.
    let mut wire = want.clone();
    let mut pool = SaltPool::new(8);
    let fixed_len = request_fixed_len(Method::Aes256Gcm);
    assert_eq!(fixed_len, 32 + 11 + 16);
    let mut fixed = open_request_fixed(&psk, &mut wire, NOW + 30, &mut pool).unwrap();
    assert_eq!(fixed.salt(), &hex(KAT_SALT)[..]);
    assert_eq!(usize::from(fixed.variable_len), var.len());
    assert_eq!(fixed.timestamp, NOW);
    let rest = &mut wire[fixed_len..];
    let head = open_request_variable(&mut fixed, rest).unwrap();
    assert_eq!(head.target, target);
    assert_eq!(head.padding, 0);
    assert_eq!(&rest[head.payload.clone()], payload);
    let n = fixed.opener.open_length(&mut chunk).unwrap();
    assert_eq!(n, 3);
    fixed
        .opener
        .open_payload(n, &mut chunk[LENGTH_LEN..])
        .unwrap();
    assert_eq!(&chunk[LENGTH_LEN..LENGTH_LEN + 3], b"abc");

    // The same salt again is a replay.
    let mut again = want.clone();
    assert!(matches!(
        open_request_fixed(&psk, &mut again, NOW, &mut pool),
        Err(Error::Replay)
    ));
}

#[test]
fn tcp_request_padding_only() {
    let psk = kat_psk(Method::Aes256Gcm);
    let (want, _) = kat_request(7, b"");
    let target = example_com();
    let mut out = vec![0u8; want.len()];
    let (n, _) = seal_request(&psk, &hex(KAT_SALT), NOW, &target, 7, b"", &mut out).unwrap();
    assert_eq!(&out[..n], &want[..]);
    let mut pool = SaltPool::new(8);
    let mut wire = want;
    let mut fixed = open_request_fixed(&psk, &mut wire, NOW, &mut pool).unwrap();
    let head = open_request_variable(&mut fixed, &mut wire[59..]).unwrap();
    assert_eq!((head.padding, head.payload.is_empty()), (7, true));

    // The encoder refuses what the decoder must refuse.
    assert!(seal_request(&psk, &hex(KAT_SALT), NOW, &target, 0, b"", &mut out).is_err());
    assert!(seal_request(&psk, &hex(KAT_SALT), NOW, &target, 901, b"", &mut out).is_err());
    let mut r = || 0xffffu16;
    let p = padding_for(0, &mut r);
    assert!((1..=900).contains(&p), "{p}");
    assert_eq!(padding_for(0, &mut || 0), 1);
    assert_eq!(padding_for(0, &mut || 899), 900);
    assert_eq!(padding_for(5, &mut || 7), 0);
}

/// A request whose sealed plaintexts are given by hand, to reach every validation.
fn custom_request(fixed: &[u8], var: &[u8]) -> Vec<u8> {
    let subkey = hex(KAT_SUBKEY);
    let mut wire = hex(KAT_SALT);
    wire.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(0), fixed));
    wire.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(1), var));
    wire
}

fn fixed_plain(ty: u8, ts: u64, len: usize) -> Vec<u8> {
    let mut f = vec![ty];
    f.extend_from_slice(&ts.to_be_bytes());
    f.extend_from_slice(&(len as u16).to_be_bytes());
    f
}

fn decode_request(wire: &mut [u8], now: u64) -> Result<RequestHeader, Error> {
    let psk = kat_psk(Method::Aes256Gcm);
    let mut fixed = open_request_fixed(&psk, wire, now, &mut SaltPool::new(4))?;
    open_request_variable(&mut fixed, &mut wire[59..])
}

#[test]
fn tcp_request_validation_by_cause() {
    let addr = [0x01, 10, 0, 0, 1, 0x00, 0x50];
    let var = |pad: u16, padding: usize, payload: &[u8]| {
        let mut v = addr.to_vec();
        v.extend_from_slice(&pad.to_be_bytes());
        v.extend(std::iter::repeat_n(0, padding));
        v.extend_from_slice(payload);
        v
    };
    let ok = var(0, 0, b"x");
    assert!(decode_request(
        &mut custom_request(&fixed_plain(0, NOW, ok.len()), &ok),
        NOW
    )
    .is_ok());
    // Type.
    let mut w = custom_request(&fixed_plain(1, NOW, ok.len()), &ok);
    assert_eq!(decode_request(&mut w, NOW).err(), Some(Error::BadType(1)));
    // Timestamp: 30 s either way is fine, 31 is not.
    for (ts, good) in [
        (NOW - 30, true),
        (NOW + 30, true),
        (NOW - 31, false),
        (NOW + 31, false),
    ] {
        let mut w = custom_request(&fixed_plain(0, ts, ok.len()), &ok);
        let got = decode_request(&mut w, NOW);
        assert_eq!(got.is_ok(), good, "{ts}: {got:?}");
        if !good {
            assert_eq!(
                got.err(),
                Some(Error::ClockSkew {
                    timestamp: ts,
                    now: NOW
                })
            );
        }
    }
    // Padding limits.
    let v = var(901, 901, b"");
    let mut w = custom_request(&fixed_plain(0, NOW, v.len()), &v);
    assert_eq!(
        decode_request(&mut w, NOW).err(),
        Some(Error::PaddingTooLong(901))
    );
    let v = var(900, 900, b"");
    let mut w = custom_request(&fixed_plain(0, NOW, v.len()), &v);
    assert!(decode_request(&mut w, NOW).is_ok());
    let v = var(0, 0, b"");
    let mut w = custom_request(&fixed_plain(0, NOW, v.len()), &v);
    assert_eq!(
        decode_request(&mut w, NOW).err(),
        Some(Error::NoPaddingNoPayload)
    );
    // Padding past the end of the chunk.
    let v = var(10, 9, b"");
    let mut w = custom_request(&fixed_plain(0, NOW, v.len()), &v);
    assert_eq!(
        decode_request(&mut w, NOW).err(),
        Some(Error::HeaderOverrun)
    );
    // Address cut by the chunk's end, and a bad address type.
    let v = addr[..4].to_vec();
    let mut w = custom_request(&fixed_plain(0, NOW, v.len()), &v);
    assert_eq!(
        decode_request(&mut w, NOW).err(),
        Some(Error::HeaderOverrun)
    );
    let mut v = ok.clone();
    v[0] = 0x05;
    let mut w = custom_request(&fixed_plain(0, NOW, v.len()), &v);
    assert_eq!(
        decode_request(&mut w, NOW).err(),
        Some(Error::Address(crate::proto::Invalid::AddressType(5)))
    );
}

#[test]
fn tcp_request_every_truncation_and_bit_flip_fails_cleanly() {
    for method in METHODS {
        let psk = kat_psk(method);
        let salt = hex(KAT_SALT);
        let target = example_com();
        let mut out = vec![0u8; 200];
        let (n, _) = seal_request(&psk, &salt, NOW, &target, 0, b"hello", &mut out).unwrap();
        let wire = out[..n].to_vec();
        let fixed_len = request_fixed_len(method);
        let decode = |w: &mut [u8]| -> Result<RequestHeader, Error> {
            let mut fixed = open_request_fixed(&psk, w, NOW, &mut SaltPool::new(2))?;
            let rest = w.get_mut(fixed_len..).unwrap();
            open_request_variable(&mut fixed, rest)
        };
        assert!(decode(&mut wire.clone()).is_ok());
        for cut in 0..wire.len() {
            let mut w = wire[..cut].to_vec();
            match decode(&mut w) {
                Err(Error::NeedMore(k)) => {
                    let element_end = if cut < fixed_len { fixed_len } else { n };
                    assert_eq!(k, element_end - cut, "{method:?} cut {cut}");
                }
                other => panic!("{method:?} cut {cut}: {other:?}"),
            }
        }
        for bit in 0..wire.len() * 8 {
            let mut w = wire.clone();
            w[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                decode(&mut w).err(),
                Some(Error::BadTag),
                "{method:?} bit {bit}"
            );
        }
    }
}

#[test]
fn tcp_response_known_answer_round_trip_and_checks() {
    let psk = kat_psk(Method::Aes256Gcm);
    // The response's own salt is the KAT salt, so the published subkey keys it.
    let salt = hex(KAT_SALT);
    let request_salt = [0xa5u8; 32];
    let payload = b"HTTP/1.1 200 OK\r\n";
    let mut fixed = vec![0x01];
    fixed.extend_from_slice(&NOW.to_be_bytes());
    fixed.extend_from_slice(&request_salt);
    fixed.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    let subkey = hex(KAT_SUBKEY);
    let mut want = salt.clone();
    want.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(0), &fixed));
    want.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(1), payload));

    let head = response_fixed_len(Method::Aes256Gcm);
    assert_eq!(head, 32 + 1 + 8 + 32 + 2 + 16);
    let mut frame = vec![0u8; head + payload.len() + TAG_LEN];
    frame[head..head + payload.len()].copy_from_slice(payload);
    let mut sealer = seal_response(&psk, &salt, NOW, &request_salt, &mut frame).unwrap();
    assert_eq!(frame, want);
    let mut chunk = vec![0u8; 1 + OVERHEAD];
    chunk[LENGTH_LEN] = b'!';
    sealer.seal_chunk(&mut chunk).unwrap();
    let mut hand = sealed(Algorithm::Aes256Gcm, &subkey, &nonce(2), &[0, 1]);
    hand.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(3), b"!"));
    assert_eq!(chunk, hand);

    let mut w = want.clone();
    let mut r = open_response_fixed(&psk, &request_salt, &mut w, NOW - 30).unwrap();
    assert_eq!(usize::from(r.first_len), payload.len());
    r.opener.open_payload(r.first_len, &mut w[head..]).unwrap();
    assert_eq!(&w[head..head + payload.len()], payload);

    // Another request's salt, a stale clock, a request where a response belongs.
    let mut w = want.clone();
    assert!(matches!(
        open_response_fixed(&psk, &[0xa4; 32], &mut w, NOW),
        Err(Error::SaltMismatch)
    ));
    let mut w = want.clone();
    assert!(matches!(
        open_response_fixed(&psk, &request_salt, &mut w, NOW + 31),
        Err(Error::ClockSkew { .. })
    ));
    let mut fixed0 = fixed.clone();
    fixed0[0] = 0;
    let mut w = salt.clone();
    w.extend(sealed(Algorithm::Aes256Gcm, &subkey, &nonce(0), &fixed0));
    assert!(matches!(
        open_response_fixed(&psk, &request_salt, &mut w, NOW),
        Err(Error::BadType(0))
    ));
    // Truncations and bit flips of the fixed header.
    for cut in 0..head {
        let mut w = want[..cut].to_vec();
        assert!(matches!(
            open_response_fixed(&psk, &request_salt, &mut w, NOW),
            Err(Error::NeedMore(k)) if k == head - cut
        ));
    }
    for bit in 0..head * 8 {
        let mut w = want.clone();
        w[bit / 8] ^= 1 << (bit % 8);
        assert!(matches!(
            open_response_fixed(&psk, &request_salt, &mut w, NOW),
            Err(Error::BadTag)
        ));
    }
    // The encoder refuses an empty first payload.
    let mut empty = vec![0u8; head + TAG_LEN];
    assert!(seal_response(&psk, &salt, NOW, &request_salt, &mut empty).is_err());
}

#[test]
fn tcp_chunks_round_trip_up_to_0xffff() {
    for method in METHODS {
        let psk = kat_psk(method);
        let mut out = vec![0u8; 300];
        let salt = [3u8; 32];
        let target = example_com();
        let (n, mut sealer) = seal_request(&psk, &salt, NOW, &target, 0, b"x", &mut out).unwrap();
        let mut fixed = open_request_fixed(&psk, &mut out, NOW, &mut SaltPool::new(1)).unwrap();
        open_request_variable(&mut fixed, &mut out[request_fixed_len(method)..n]).unwrap();
        let mut opener = fixed.opener;
        for len in [1usize, 2, 0x3fff, 0x4000, MAX_PAYLOAD] {
            let mut frame = vec![0u8; len + OVERHEAD];
            for (i, b) in frame[LENGTH_LEN..LENGTH_LEN + len].iter_mut().enumerate() {
                *b = i as u8;
            }
            sealer.seal_chunk(&mut frame).unwrap();
            assert_eq!(usize::from(opener.open_length(&mut frame).unwrap()), len);
            opener
                .open_payload(len as u16, &mut frame[LENGTH_LEN..])
                .unwrap();
            assert!(frame[LENGTH_LEN..LENGTH_LEN + len]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == i as u8));
        }
        let mut too_big = vec![0u8; MAX_PAYLOAD + 1 + OVERHEAD];
        assert!(sealer.seal_chunk(&mut too_big).is_err());
        let mut empty = vec![0u8; OVERHEAD];
        assert!(sealer.seal_chunk(&mut empty).is_err());
        assert_eq!(opener.open_length(&mut [0u8; 5]), Err(Error::NeedMore(13)));
    }
}

// ---- UDP ----

const SID: u64 = 0x0102_0304_0506_0708;
const CSID: u64 = 0x1112_1314_1516_1718;

/// The main header of the KAT packets, by hand: target/source 10.0.0.1:53, 3 bytes padding.
fn main_header(server: bool) -> Vec<u8> {
    let mut h = vec![if server { 1 } else { 0 }];
    h.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x65, 0x53, 0xf1, 0x00]);
    if server {
        h.extend_from_slice(&CSID.to_be_bytes());
    }
    h.extend_from_slice(&[0x00, 0x03, 0, 0, 0]);
    h.extend_from_slice(&[0x01, 10, 0, 0, 1, 0x00, 0x35]);
    h
}

fn udp_header(target: &Address, server: bool) -> udp::Header<'_> {
    udp::Header {
        session_id: SID,
        packet_id: 9,
        timestamp: NOW,
        client_session_id: server.then_some(CSID),
        padding: 3,
        target,
    }
}

fn seal_udp(cipher: &UdpCipher, h: &udp::Header, payload: &[u8], n: &[u8; 24]) -> Vec<u8> {
    let prefix = prefix_len(cipher.method(), h);
    let mut buf = vec![0u8; prefix + payload.len() + TAG_LEN];
    buf[prefix..prefix + payload.len()].copy_from_slice(payload);
    seal_packet(cipher, &cipher.session(h.session_id), h, n, &mut buf).unwrap();
    buf
}

fn open_udp(cipher: &UdpCipher, buf: &mut [u8], sender: Sender) -> Result<Packet, Error> {
    let sep = open_separate_header(cipher, buf)?;
    let session = cipher.session(sep.session_id);
    open_body(cipher, &session, sep, buf, NOW, sender)
}

#[test]
fn udp_aes_known_answer() {
    for method in [Method::Aes128Gcm, Method::Aes256Gcm] {
        for server in [false, true] {
            let psk = kat_psk(method);
            let k = psk.as_bytes();
            let mut sep = [0u8; 16];
            sep[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            sep[8..].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
            let mut material = k.to_vec();
            material.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            let subkey = ss_aead::blake3::derive_key(SUBKEY_CONTEXT, &material).unwrap();
            let mut body = main_header(server);
            body.extend_from_slice(b"query");
            let alg = method.algorithm();
            let sealed_body = sealed(alg, &subkey[..k.len()], &sep[4..], &body);
            let mut want = sep;
            AesBlock::new(k).unwrap().encrypt(&mut want);
            let mut want = want.to_vec();
            want.extend(sealed_body);

            let cipher = UdpCipher::new(&psk);
            let target = Address::from_host_port("10.0.0.1:53").unwrap();
            let got = seal_udp(&cipher, &udp_header(&target, server), b"query", &[0; 24]);
            assert_eq!(got, want, "{method:?} server {server}");

            let sender = if server {
                Sender::Server
            } else {
                Sender::Client
            };
            let mut buf = want.clone();
            let p = open_udp(&cipher, &mut buf, sender).unwrap();
            assert_eq!((p.session_id, p.packet_id, p.timestamp), (SID, 9, NOW));
            assert_eq!(p.client_session_id, server.then_some(CSID));
            assert_eq!((p.padding, p.address), (3, target));
            assert_eq!(&buf[p.payload], b"query");
            // A packet from the other side is refused by type.
            let other = if server {
                Sender::Client
            } else {
                Sender::Server
            };
            let mut buf = want.clone();
            assert_eq!(
                open_udp(&cipher, &mut buf, other).err(),
                Some(Error::BadType(u8::from(server)))
            );
        }
    }
}

#[test]
fn udp_chacha_known_answer() {
    let psk = kat_psk(Method::ChaCha20Poly1305);
    let n: [u8; 24] = core::array::from_fn(|i| 0xc0 + i as u8);
    for server in [false, true] {
        let mut body = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 9];
        body.extend(main_header(server));
        body.extend_from_slice(b"query");
        let mut want = n.to_vec();
        want.extend(sealed(
            Algorithm::XChaCha20Poly1305,
            psk.as_bytes(),
            &n,
            &body,
        ));
        let cipher = UdpCipher::new(&psk);
        let target = Address::from_host_port("10.0.0.1:53").unwrap();
        let got = seal_udp(&cipher, &udp_header(&target, server), b"query", &n);
        assert_eq!(got, want, "server {server}");
        let sender = if server {
            Sender::Server
        } else {
            Sender::Client
        };
        let mut buf = want;
        let p = open_udp(&cipher, &mut buf, sender).unwrap();
        assert_eq!((p.session_id, p.packet_id), (SID, 9));
        assert_eq!(&buf[p.payload], b"query");
    }
}

#[test]
fn udp_every_truncation_and_bit_flip_fails_cleanly() {
    for method in METHODS {
        let cipher = UdpCipher::new(&kat_psk(method));
        let target = example_com();
        for server in [false, true] {
            let sender = if server {
                Sender::Server
            } else {
                Sender::Client
            };
            let wire = seal_udp(&cipher, &udp_header(&target, server), b"payload", &[7; 24]);
            assert!(open_udp(&cipher, &mut wire.clone(), sender).is_ok());
            for cut in 0..wire.len() {
                let mut w = wire[..cut].to_vec();
                let got = open_udp(&cipher, &mut w, sender);
                assert!(
                    matches!(got, Err(Error::ShortPacket | Error::BadTag)),
                    "{method:?} cut {cut}: {got:?}"
                );
            }
            for bit in 0..wire.len() * 8 {
                let mut w = wire.clone();
                w[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    open_udp(&cipher, &mut w, sender).err(),
                    Some(Error::BadTag),
                    "{method:?} bit {bit}"
                );
            }
        }
    }
}

#[test]
fn udp_header_validation() {
    for method in METHODS {
        let cipher = UdpCipher::new(&kat_psk(method));
        let target = example_com();
        let mut h = udp_header(&target, false);
        h.timestamp = NOW - 31;
        let mut w = seal_udp(&cipher, &h, b"p", &[1; 24]);
        assert_eq!(
            open_udp(&cipher, &mut w, Sender::Client).err(),
            Some(Error::ClockSkew {
                timestamp: NOW - 31,
                now: NOW
            })
        );
        // Empty payload and no padding are fine for UDP.
        h.timestamp = NOW;
        h.padding = 0;
        let mut w = seal_udp(&cipher, &h, b"", &[1; 24]);
        let p = open_udp(&cipher, &mut w, Sender::Client).unwrap();
        assert!(p.payload.is_empty());
        // Another session's cipher does not open the body (AES).
        if method != Method::ChaCha20Poly1305 {
            let mut w = seal_udp(&cipher, &h, b"p", &[1; 24]);
            let sep = open_separate_header(&cipher, &mut w).unwrap();
            let wrong = cipher.session(SID + 1);
            assert_eq!(
                open_body(&cipher, &wrong, sep, &mut w, NOW, Sender::Client).err(),
                Some(Error::BadTag)
            );
        }
        // No room: the encoder refuses.
        let mut small = vec![0u8; prefix_len(method, &h) + TAG_LEN - 1];
        assert!(seal_packet(&cipher, &cipher.session(SID), &h, &[0; 24], &mut small).is_err());
    }
}
