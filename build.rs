//! Records when the binary was built (`SOURCE_DATE_EPOCH` when set, for reproducible builds),
//! as unix seconds in `SS_SMOL_BUILT`: a clock that reads earlier than that at start is wrong,
//! which Shadowsocks 2022 cannot work with (serve::startup::check_clock).

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=SS_SMOL_BUILT={built}");
}
