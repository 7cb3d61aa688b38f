//! `--pool-blocks` at its limits: the real binary with the cap, with an allocation that cannot
//! succeed, and (later in this file) the bound the pool puts on memory under load.
//!
//! Loopback only; every process is a `Proc` guard and every wait is bounded.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

extern "C" {
    fn setrlimit(resource: i32, rlim: *const [u64; 2]) -> i32;
}
const RLIMIT_AS: i32 = 9;

fn server(port: u16, blocks: &str) -> Command {
    let mut cmd = Command::new(ss_smol_bin());
    cmd.args(["server", "-s", "127.0.0.1", "-p", &port.to_string()])
        .args(["-k", "x", "-m", "aes-128-gcm", "--pool-blocks", blocks]);
    cmd
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The largest value the flag takes either starts (64-bit: 2 GiB of address space, of which
/// nothing is resident until used) or, where the system cannot provide it, says so in one line;
/// never an abort.
#[test]
fn the_largest_pool_starts_or_fails_with_one_line() {
    let _watchdog = Watchdog::new("pool cap", Duration::from_secs(60));
    let port = free_port();
    let mut p = Proc::spawn("server-max-pool", server(port, "65536"));
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if p.stderr().contains("listening on") {
            // Untouched pool pages cost no RSS: 2 GiB of pool, a few MiB resident.
            let rss = rss_kib(p.pid());
            assert!(rss < 16 * 1024, "idle RSS {rss} KiB with a 2 GiB pool");
            return;
        }
        if let Some(status) = p.exit_status() {
            let err = p.stderr();
            assert_eq!(status.code(), Some(1), "killed by a signal? {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(err.contains("--pool-blocks 65536"), "{err}");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("neither started nor failed: {}", p.stderr());
}

/// With the address space limited below the pool's size the allocation fails: one line
/// naming the flag and the value, exit status 1, not the allocator's abort.
#[test]
fn a_pool_that_cannot_be_allocated_is_one_line_not_an_abort() {
    use std::os::unix::process::CommandExt;
    let mut cmd = server(free_port(), "65536");
    // SAFETY: setrlimit is async-signal-safe and the array outlives the call.
    unsafe {
        cmd.pre_exec(|| {
            let limit = [1u64 << 30; 2];
            if setrlimit(RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let done = run_to_end("server-no-room", cmd, Duration::from_secs(30));
    let err = done.stderr.trim_end();
    assert_eq!(done.status.code(), Some(1), "{:?}: {err}", done.status);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--pool-blocks 65536: cannot allocate 2.0 GiB"),
        "{err}"
    );
}
