//! `dns::wire::decode_response` on arbitrary bytes as the answer to fixed A and AAAA queries:
//! never panics, and whatever it returns is consistent (a TTL exactly when there are
//! addresses, of the family asked for).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::dns::wire::{decode_response, encode_query};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, msg)) = data.split_first() else { return };
    let (qtype, v6) = if pick % 2 == 0 { (1u16, false) } else { (28u16, true) };
    let query = encode_query(0x1234, "www.example.test", qtype).expect("valid name");
    // Let the input reuse the query's header and question so the answer walk is reached: the
    // next byte is the answer count (the query's header says none, so without it the records
    // that follow would never be walked), the rest the records.
    let mut owned;
    let msg = if pick & 2 != 0 {
        let Some((&answers, records)) = msg.split_first() else { return };
        owned = query.clone();
        owned[2] |= 0x80;
        owned[7] = answers;
        owned.extend_from_slice(records);
        &owned[..]
    } else {
        msg
    };
    if let Ok(r) = decode_response(msg, &query) {
        assert_eq!(r.ttl.is_some(), !r.addrs.is_empty());
        assert!(r.addrs.iter().all(|a| a.is_ipv6() == v6));
    }
});
