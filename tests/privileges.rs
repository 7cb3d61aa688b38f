//! `-a USER`: after start-up the process runs as that user with exactly the capabilities its
//! mode still needs, read back from /proc/PID/status of the real binary.
//!
//! Needs root (to switch users at all); loopback only; every process is a `Proc` guard.

mod support;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const NET_BIND_SERVICE: u64 = 1 << 10;

/// A port below 1024 that nothing on 127.0.0.1 uses right now.
fn free_low_port() -> u16 {
    (900..1000)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("no free port in 900-999")
}

fn nobody_uid() -> String {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    assert!(out.status.success(), "no user nobody");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The fields of /proc/PID/status once the server is listening: Uid line, CapPrm, CapEff,
/// CapBnd.
fn started_as_nobody(port: u16) -> (Proc, String, u64, u64, u64) {
    let mut p = Proc::spawn("server-as-nobody", {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.args(["server", "-s", "127.0.0.1", "-p", &port.to_string()])
            .args(["-k", "x", "-m", "aes-128-gcm", "-a", "nobody"]);
        cmd
    });
    let deadline = Instant::now() + START_TIMEOUT;
    while !p.stderr().contains("listening on") {
        p.assert_running();
        assert!(Instant::now() < deadline, "not started: {}", p.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The listener made before the switch still serves.
    connect(v4(port)).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
            .to_owned()
    };
    let caps = |name: &str| u64::from_str_radix(&field(name), 16).unwrap();
    let (uid, prm, eff, bnd) = (
        field("Uid:"),
        caps("CapPrm:"),
        caps("CapEff:"),
        caps("CapBnd:"),
    );
    (p, uid, prm, eff, bnd)
}

#[test]
#[ignore = "needs root; bash tests/run-all.sh runs it"]
fn a_port_below_1024_keeps_exactly_net_bind_service() {
    let _watchdog = Watchdog::new("capabilities", Duration::from_secs(60));
    let nobody = nobody_uid();
    let (mut p, uid, prm, eff, bnd) = started_as_nobody(free_low_port());
    // Real, effective, saved and filesystem uid.
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        [&nobody[..]; 4],
        "{uid}"
    );
    assert_eq!(prm, NET_BIND_SERVICE, "CapPrm {prm:#x}");
    assert_eq!(eff, NET_BIND_SERVICE, "CapEff {eff:#x}");
    assert_eq!(bnd, NET_BIND_SERVICE, "CapBnd {bnd:#x}");
    p.assert_running();
}

#[test]
#[ignore = "needs root; bash tests/run-all.sh runs it"]
fn a_port_above_1023_keeps_no_capability() {
    let _watchdog = Watchdog::new("no capabilities", Duration::from_secs(60));
    let nobody = nobody_uid();
    let (mut p, uid, prm, eff, bnd) = started_as_nobody(free_port());
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        [&nobody[..]; 4],
        "{uid}"
    );
    assert_eq!((prm, eff, bnd), (0, 0, 0), "CapPrm/CapEff/CapBnd");
    p.assert_running();
}
