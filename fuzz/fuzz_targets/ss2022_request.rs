//! ss-server's Shadowsocks 2022 request handshake (`proto::ss2022::handshake::RequestHandshake`),
//! single-key and multi-user (SIP023 identity headers), fed in pieces of 1..=64 bytes.
//!
//! Input: `[method][mode][piece][position u32][rest]`. Even `mode`: `rest` is raw wire. Odd
//! `mode`: `rest` is the payload of a real request (to 192.0.2.1:80) sealed by user A, user B
//! or a stranger (bits 1-2), on a server with users when bit 3 is set (an AES method then),
//! then left intact, truncated at `position`, or with the bit at `position` flipped (bits 4-5).
//!
//! Checked always: no panic, `consumed` within the input, `NeedMore` of at least one byte, the
//! early payload inside the input. For real requests: intact ones from a user of the server
//! connect to the target with that user's name and exactly the sealed payload; a stranger's, a
//! truncated one and a flipped one never connect.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::address::Address;
use ss_smol::proto::handshake::Next;
use ss_smol::proto::ss2022::handshake::RequestHandshake;
use ss_smol::proto::ss2022::identity::{seal_stream_header, Users};
use ss_smol::proto::ss2022::salts::SaltPool;
use ss_smol::proto::ss2022::{tcp, Method, Psk, METHODS};
use std::rc::Rc;

const NOW: u64 = 1_700_000_000;
const SALT: [u8; 32] = [0x17; 32];

fn key(method: Method, fill: u8) -> Psk {
    Psk::from_bytes(method, &[fill; 32][..method.key_len()]).unwrap()
}

/// What a run of the handshake ended with.
enum End {
    Connect { user: Option<String>, early: Vec<u8> },
    Other,
}

fn run(hs: &mut RequestHandshake, wire: &mut [u8], piece: usize) -> End {
    let mut salts = SaltPool::new(4);
    let (mut consumed, mut have) = (0, piece.min(wire.len()));
    loop {
        let input = &mut wire[consumed..have];
        let len = input.len();
        let step = hs.handle(input, &mut salts, NOW);
        assert!(step.consumed <= len);
        match step.next {
            Next::NeedMore(n) => {
                assert!(n > 0);
                consumed += step.consumed;
                // A decoded element: the next may already be in the input.
                if step.consumed > 0 {
                    continue;
                }
                if have == wire.len() {
                    return End::Other;
                }
                have = (have + piece).min(wire.len());
            }
            Next::Connect { early, .. } => {
                assert!(early.start <= early.end && early.end <= len);
                let early = input[early].to_vec();
                return End::Connect { user: hs.user_name().map(str::to_string), early };
            }
            _ => return End::Other,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(7));
    let mut h = [0u8; 7];
    h[..head.len()].copy_from_slice(head);
    let [pick, mode, piece, p0, p1, p2, p3] = h;
    let multi = mode & 8 != 0;
    // Identity headers exist for the AES methods only.
    let method = if multi {
        [Method::Aes128Gcm, Method::Aes256Gcm][pick as usize % 2]
    } else {
        METHODS[pick as usize % METHODS.len()]
    };
    let (server, alice, bob, stranger) =
        (key(method, 1), key(method, 2), key(method, 3), key(method, 4));
    let users = multi.then(|| {
        Rc::new(Users::new([("alice".into(), alice.clone()), ("bob".into(), bob.clone())]))
    });
    let mut hs = RequestHandshake::new(&server, users);
    let piece = usize::from(piece % 64) + 1;

    if mode & 1 == 0 {
        let mut wire = rest.to_vec();
        run(&mut hs, &mut wire, piece);
        return;
    }
    let payload = &rest[..rest.len().min(4096)];
    let padding = u16::from(payload.is_empty());
    let (sender, name) = match (mode >> 1) & 3 {
        0 => (&alice, Some("alice")),
        1 => (&bob, Some("bob")),
        _ => (&stranger, None),
    };
    let user_key = if multi { sender } else { &server };
    let target = Address::from_host_port("192.0.2.1:80").unwrap();
    let Some(len) = tcp::request_len(method, &target, padding, payload.len()) else { return };
    let mut wire = vec![0u8; len];
    tcp::seal_request(user_key, &SALT[..method.key_len()], NOW, &target, padding, payload, &mut wire)
        .expect("a valid request seals");
    if multi {
        let eih = seal_stream_header(&server, sender, &SALT[..method.key_len()]).unwrap();
        let at = method.key_len();
        wire.splice(at..at, eih);
    }
    let position = u32::from_be_bytes([p0, p1, p2, p3]) as usize;
    let mutation = (mode >> 4) & 3;
    match mutation {
        1 => wire.truncate(position % wire.len()),
        2 | 3 => {
            let bit = position % (wire.len() * 8);
            wire[bit / 8] ^= 1 << (bit % 8);
        }
        _ => {}
    }
    let end = run(&mut hs, &mut wire, piece);
    let known = !multi || name.is_some();
    match end {
        End::Connect { user, early } => {
            assert!(mutation == 0 && known, "a request that must fail connected");
            assert_eq!(user.as_deref(), if multi { name } else { None });
            assert_eq!(early, payload);
        }
        End::Other => assert!(mutation != 0 || !known, "a user's intact request failed"),
    }
});
