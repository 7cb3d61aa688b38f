//! `udp::open` on arbitrary packets for every method (picked by the first byte): never
//! panics, and a plaintext range it returns lies inside the packet. The second byte, when
//! set, makes the target seal the rest first, so the tag checks out and the Ok path runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::cipher::{MasterKey, METHODS};
use ss_smol::proto::udp;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let method = METHODS[pick as usize % METHODS.len()];
    let key = MasterKey::from_password(method, b"fuzz");
    let seal_first = pick as usize / METHODS.len() % 2 == 1;

    let mut packet = rest.to_vec();
    let plain = if seal_first {
        // rest = [salt][plaintext]; append room for the tag and seal it.
        let salt = packet.get(..method.salt_len()).map(<[u8]>::to_vec);
        let Some(salt) = salt else { return };
        packet.extend_from_slice(&[0u8; 16]);
        udp::seal(method, &key, &salt, &mut packet).expect("room for salt and tag");
        Some(rest[method.salt_len()..].to_vec())
    } else {
        None
    };

    match udp::open(method, &key, &mut packet) {
        Ok(range) => {
            assert!(range.start <= range.end && range.end <= packet.len());
            if let Some(plain) = plain {
                assert_eq!(&packet[range], &plain[..]);
            }
        }
        Err(why) => assert!(plain.is_none(), "sealed packet failed to open: {why}"),
    }
});
