//! The libev JSON config parser on arbitrary text: `Ok` or `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ss_smol::config::file::parse_json_config;

fuzz_target!(|data: &[u8]| {
    // Files that are not UTF-8 are refused before parsing (read_config_file), so only text
    // reaches the parser; the lossy conversion keeps non-UTF-8 inputs useful to the fuzzer.
    let text = String::from_utf8_lossy(data);
    let _ = parse_json_config(&text);
});
