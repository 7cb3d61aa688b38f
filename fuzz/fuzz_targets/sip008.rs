//! SIP008 documents on arbitrary text: `Ok` or `Err`, never a panic; every entry that is
//! kept has a host and a port, and a warning for each one left out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::config::sip008::parse_sip008;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((entries, _warnings)) = parse_sip008(&text) {
        for e in &entries {
            assert!(!e.host.is_empty() && e.port != 0);
        }
    }
});
