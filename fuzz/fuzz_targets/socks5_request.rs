//! SOCKS5 greeting and request parsers on arbitrary bytes: never panic, never claim to have
//! consumed more than they were given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::socks5::{parse_greeting, parse_request};

fuzz_target!(|data: &[u8]| {
    if let Ok((_, used)) = parse_greeting(data) {
        assert!(used <= data.len());
    }
    if let Ok((req, used)) = parse_request(data) {
        assert!(used <= data.len());
        assert_eq!(used, 3 + req.address.wire_len());
    }
});
