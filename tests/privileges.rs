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

const NET_ADMIN: u64 = 1 << 12;

/// `ss-smol redir` with `extra` flags, started as `nobody` from the first instruction (no
/// capability at all, as a service started without root would be).
fn redir_as_nobody(extra: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let uid: u32 = nobody_uid().parse().unwrap();
    let mut cmd = Command::new(ss_smol_bin());
    cmd.args(["redir", "-s", "127.0.0.1", "-p", &free_port().to_string()])
        .args(["-k", "x", "-m", "aes-128-gcm", "-b", "127.0.0.1"])
        .args(["-l", &free_port().to_string()])
        .args(extra)
        .uid(uid)
        .gid(uid);
    cmd
}

#[test]
#[ignore = "needs root; bash tests/run-all.sh runs it"]
fn redir_transparent_sockets_without_net_admin_fail_in_one_line_saying_what_to_do() {
    let _watchdog = Watchdog::new("redir without CAP_NET_ADMIN", Duration::from_secs(60));
    for extra in [&["-u"][..], &["-U"], &["-T"]] {
        let done = run_to_end(
            "redir-no-cap",
            redir_as_nobody(extra),
            Duration::from_secs(20),
        );
        let err = done.stderr.trim_end();
        assert_eq!(done.status.code(), Some(1), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
        for needle in ["TPROXY", "CAP_NET_ADMIN", "REDIRECT-only"] {
            assert!(err.contains(needle), "{extra:?}: no {needle:?} in {err}");
        }
    }
}

#[test]
#[ignore = "needs root; bash tests/run-all.sh runs it"]
fn redir_for_redirected_tcp_only_runs_without_any_capability() {
    let _watchdog = Watchdog::new("redir TCP REDIRECT unprivileged", Duration::from_secs(60));
    let mut p = Proc::spawn("redir-tcp-nobody", redir_as_nobody(&[]));
    assert!(
        p.wait_for_stderr("listening on", START_TIMEOUT),
        "not started: {}",
        p.stderr()
    );
    p.assert_running();
}

#[test]
#[ignore = "needs root; bash tests/run-all.sh runs it"]
fn redir_with_udp_keeps_exactly_net_admin_across_dash_a() {
    let _watchdog = Watchdog::new("redir -a nobody", Duration::from_secs(60));
    let mut p = Proc::spawn("redir-udp-as-nobody", {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.args(["redir", "-s", "127.0.0.1", "-p", &free_port().to_string()])
            .args(["-k", "x", "-m", "aes-128-gcm", "-b", "127.0.0.1"])
            .args(["-l", &free_port().to_string(), "-u", "-a", "nobody"]);
        cmd
    });
    assert!(
        p.wait_for_stderr("listening on", START_TIMEOUT),
        "not started: {}",
        p.stderr()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
    let caps = |name: &str| {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        u64::from_str_radix(hex.trim(), 16).unwrap()
    };
    let nobody = nobody_uid();
    assert!(status.contains(&format!("Uid:\t{nobody}\t")), "{status}");
    assert_eq!(caps("CapEff:"), NET_ADMIN, "CapEff");
    assert_eq!(caps("CapBnd:"), NET_ADMIN, "CapBnd");
    p.assert_running();
}
