//! The README's Quick start, run from the README text itself: the ```sh block under
//! "## Quick start", line by line, so the two cannot drift apart.
//!
//! The build and the package install are the harness's job (tests/run-all.sh has done both);
//! every other line runs as written, in a network namespace the test creates, so the fixed
//! ports the README uses are free whatever this host runs (shadowsocks-libev's own service on
//! 8388, for one). `./target/release/ss-smol` becomes the binary under test.

mod support;

use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// The commands of the Quick start block: comments and blank lines dropped.
fn quick_start_commands(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("README has no \"## Quick start\" section");
    let section = section.split("\n## ").next().unwrap();
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("no ```sh block under Quick start");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs root (ip netns), shadowsocks-libev, curl and python3; bash tests/run-all.sh runs it"]
fn the_readme_quick_start_serves_the_page_through_ss_smol() {
    let _watchdog = Watchdog::new("quick start", Duration::from_secs(120));
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let commands = quick_start_commands(&readme);
    let bin = ss_smol_bin();
    let ns = NetNs::new("quickstart", &[]);

    let mut background = Vec::new();
    let mut page = None;
    for line in &commands {
        if line == "cargo build --release" || line.contains("apt-get install") {
            continue;
        }
        let line = line.replace("./target/release/ss-smol", bin.to_str().unwrap());
        if let Some(bg) = line.strip_suffix('&') {
            let mut cmd = ns.command("sh".as_ref());
            // exec: the guard's pid is the program itself, so dropping the guard stops it.
            cmd.current_dir(root)
                .args(["-c", &format!("exec {}", bg.trim())]);
            background.push(Proc::spawn(
                &format!("quickstart-{}", background.len()),
                cmd,
            ));
            continue;
        }
        // A foreground line: the background ones may still be starting, so retry for a while.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut cmd = ns.command("sh".as_ref());
            cmd.current_dir(root).args(["-c", &line]);
            let done = run_to_end("quickstart-fg", cmd, Duration::from_secs(30));
            if done.status.success() {
                page = Some(done.stdout);
                break;
            }
            for p in &mut background {
                p.assert_running();
            }
            assert!(
                Instant::now() < deadline,
                "`{line}` keeps failing: {}",
                done.stderr
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(background.len() >= 3, "background commands: {commands:?}");
    let page = page.unwrap_or_else(|| panic!("no foreground command in {commands:?}"));
    // python's http.server lists the directory it was started in: the repository.
    assert!(
        page.contains("Directory listing for /") && page.contains("README.md"),
        "not the served page: {page}"
    );
    for p in &mut background {
        p.assert_running();
        p.assert_no_panic();
    }
}

#[test]
fn the_quick_start_block_is_found() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let commands = quick_start_commands(&readme.unwrap());
    assert!(
        commands.iter().any(|c| c.contains("ss-smol local")),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("curl ")),
        "{commands:?}"
    );
}
