//! `Address::parse` on arbitrary bytes: never panics, and whatever it accepts re-encodes to
//! exactly the bytes it consumed (domain names are taken only as UTF-8, so nothing is lost).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::address::Address;

fuzz_target!(|data: &[u8]| {
    if let Ok((addr, used)) = Address::parse(data) {
        assert!(used <= data.len(), "consumed {used} of {} bytes", data.len());
        assert_eq!(addr.wire_len(), used);
        assert_eq!(&addr.to_wire()[..], &data[..used], "round trip of {addr}");
    }
});
