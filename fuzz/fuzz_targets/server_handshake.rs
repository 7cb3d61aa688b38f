//! `proto::handshake::ServerHandshake` fed arbitrary bytes in arbitrary pieces, for every
//! method (picked by the first byte): never panics, never consumes more than it was given, and
//! an early payload it reports lies inside its input. With the second byte's low bit set, the
//! rest is first sealed as a real client's opening chunk, so the Connect path runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::cipher::{MasterKey, METHODS};
use ss_smol::proto::handshake::{Next, ServerHandshake};
use ss_smol::proto::replay::ReplayFilter;
use ss_smol::proto::tcp::{Encryptor, HEADER_LEN, OVERHEAD};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Some((&how, rest)) = rest.split_first() else { return };
    let method = METHODS[pick as usize % METHODS.len()];
    let key = MasterKey::from_password(method, b"fuzz");
    let mut wire = if how & 1 == 1 && !rest.is_empty() && rest.len() <= 0x3FFF {
        let mut enc = Encryptor::new(method, &key, &[7u8; 32]);
        let mut out = enc.salt().to_vec();
        let mut frame = vec![0u8; rest.len() + OVERHEAD];
        frame[HEADER_LEN..HEADER_LEN + rest.len()].copy_from_slice(rest);
        enc.seal_chunk(&mut frame).expect("a frame of a valid length seals");
        out.extend_from_slice(&frame);
        out
    } else {
        rest.to_vec()
    };
    // Pieces of 1..=16 bytes (from the high bits of `how`) after the head.
    let piece = usize::from(how >> 4) + 1;
    let mut hs = ServerHandshake::new(method, &key);
    let mut replay = ReplayFilter::new(16);
    let (mut consumed, mut have) = (0, hs.head_len().min(wire.len()));
    loop {
        let input = &mut wire[consumed..have];
        let len = input.len();
        let step = hs.handle(input, &mut replay);
        assert!(step.consumed <= len);
        consumed += step.consumed;
        match step.next {
            Next::NeedMore(n) => {
                assert!(n > 0);
                if have == wire.len() {
                    return;
                }
                have = (have + piece).min(wire.len());
            }
            Next::Connect { early, .. } => {
                assert!(early.start <= early.end && early.end <= len);
                return;
            }
            Next::Probe(_) | Next::BadRequest(_) => return,
            // Shadowsocks 2022's answers: the AEAD-2017 handshake never gives them.
            Next::Refused(_) | Next::Busy => panic!("AEAD-2017 handshake answered {:?}", step.next),
        }
    }
});
