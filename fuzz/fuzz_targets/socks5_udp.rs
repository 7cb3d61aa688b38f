//! SOCKS5 UDP request header parser on arbitrary bytes: never panics, and an accepted header
//! is written back identically by `write_udp_header`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::proto::socks5::{parse_udp_header, udp_header_len, write_udp_header};

fuzz_target!(|data: &[u8]| {
    if let Ok((addr, used)) = parse_udp_header(data) {
        assert!(used <= data.len());
        assert_eq!(udp_header_len(&addr), used);
        let mut out = [0u8; 3 + ss_smol::proto::address::MAX_LEN];
        assert_eq!(write_udp_header(&addr, &mut out), Some(used));
        assert_eq!(&out[..used], &data[..used]);
    }
});
