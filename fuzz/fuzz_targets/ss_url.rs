//! `ss://` links (SIP002) on arbitrary text: `Ok` or `Err`, never a panic; an error never
//! holds the password; a link that parses writes back (`format_ss_url`) to one that parses to
//! the same server.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::config::server_entry::{format_ss_url, parse_ss_url, to_json};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_ss_url(&text) {
        Ok(e) => {
            let again = parse_ss_url(&format_ss_url(&e));
            assert_eq!(again.as_ref(), Ok(&e), "{text}");
            let _ = to_json(&e);
        }
        Err(_) => {}
    }
});
