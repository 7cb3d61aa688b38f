//! The cross-built router binaries (`cross/build.sh` → `target/cross/<target>/ss-smol`), run
//! under qemu-user as `ss-local` and `ss-tunnel` (symlinks, so the argv[0] dispatch is exercised
//! too) against the native shadowsocks-libev `ss-server`, all on loopback:
//!
//! - `ss-local`: a SOCKS5 CONNECT to an IP with a hash-checked transfer both ways, a CONNECT to
//!   the hostname `localhost` (resolved by the server), and UDP ASSOCIATE echoes;
//! - `ss-tunnel -u`: a hash-checked TCP transfer and UDP echoes of several sizes.
//!
//! mipsel (little-endian) and mips (big-endian) are the router targets; aarch64 runs under qemu
//! too, and x86_64 (the static musl build) runs natively. ChaCha20-Poly1305 is used for
//! `ss-local` and AES-256-GCM for `ss-tunnel`, so both cipher families run on every target.
//!
//! Where the binaries come from: `SS_SMOL_CROSS_DIR` (default `target/cross`; e.g.
//! `target/cross-debug-panics` for `cross/build.sh --debug-panics`), or one binary per target
//! with `SS_SMOL_CROSS_BIN_MIPSEL`, `…_MIPS`, `…_AARCH64`, `…_X86_64`. A missing binary or qemu
//! is a skip, and a failure under `SS_SMOL_REQUIRE_ALL=1` (tests/run-all.sh), like any tool.
//!
//! TODO(server mode): once `ss-smol server` exists, add the reverse direction here: the
//! cross-built binary run under qemu as `ss-server`, with the native libev `ss-local` /
//! `ss-tunnel` (and the cross-built client) in front of it.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

/// Bytes sent (and echoed back at the same time) through each relay: enough for many AEAD
/// chunks and buffer-pool round trips, small enough for emulation.
const TRANSFER: usize = 4 * 1024 * 1024;
const UDP_SIZES: [usize; 4] = [1, 512, 1400, 8000];
const LIMIT: Duration = Duration::from_secs(240);

struct Arch {
    /// Suffix of the per-binary override variable, `SS_SMOL_CROSS_BIN_<NAME>`.
    name: &'static str,
    triple: &'static str,
    /// The qemu-user emulator; `None` runs the binary natively.
    qemu: Option<&'static str>,
}

const MIPSEL: Arch = Arch {
    name: "MIPSEL",
    triple: "mipsel-unknown-linux-musl",
    qemu: Some("qemu-mipsel-static"),
};
const MIPS: Arch = Arch {
    name: "MIPS",
    triple: "mips-unknown-linux-musl",
    qemu: Some("qemu-mips-static"),
};
const AARCH64: Arch = Arch {
    name: "AARCH64",
    triple: "aarch64-unknown-linux-musl",
    qemu: Some("qemu-aarch64-static"),
};
const X86_64: Arch = Arch {
    name: "X86_64",
    triple: "x86_64-unknown-linux-musl",
    qemu: None,
};

/// The cross-built binary for `arch`, or `None` (skip) when it or a tool is missing; panics
/// instead under `SS_SMOL_REQUIRE_ALL=1`.
fn cross_binary(arch: &Arch) -> Option<PathBuf> {
    let mut tools = vec!["ss-server"];
    tools.extend(arch.qemu);
    if !require_tools(&tools) {
        return None;
    }
    let path = match std::env::var_os(format!("SS_SMOL_CROSS_BIN_{}", arch.name)) {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("SS_SMOL_CROSS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cross"))
            .join(arch.triple)
            .join("ss-smol"),
    };
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "cross-built binary {} not found: run `cross/build.sh {}`",
        path.display(),
        arch.triple
    );
    if std::env::var("SS_SMOL_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{msg} (SS_SMOL_REQUIRE_ALL=1)");
    }
    eprintln!("SKIPPED: {msg} (set SS_SMOL_REQUIRE_ALL=1 to fail instead)");
    None
}

/// `program` (e.g. `ss-local`) as a symlink to `bin` in `dir`, run under the arch's emulator.
fn command_as(arch: &Arch, bin: &Path, dir: &TempDir, program: &str) -> Command {
    let link = dir.join(program);
    if !link.exists() {
        let bin = bin.canonicalize().expect("canonicalize the cross binary");
        std::os::unix::fs::symlink(bin, &link).expect("symlink");
    }
    match arch.qemu {
        Some(qemu) => {
            let mut cmd = Command::new(qemu);
            cmd.arg(&link);
            cmd
        }
        None => Command::new(&link),
    }
}

/// Starts `program` (`ss-local` / `ss-tunnel`) in front of `server`, listening on 127.0.0.1.
fn start_client(
    arch: &Arch,
    bin: &Path,
    dir: &TempDir,
    program: &str,
    server: &SsServer,
    extra: &[&str],
) -> (Proc, SocketAddr) {
    let name = format!("{program}-{}", arch.triple);
    let (proc, port) = spawn_listening(&name, |port| {
        let mut cmd = command_as(arch, bin, dir, program);
        cmd.args(["-s", "127.0.0.1", "-p", &server.port.to_string()])
            .args(["-b", "127.0.0.1", "-l", &port.to_string()])
            .args(["-k", &server.password, "-m", &server.method])
            .args(["-u", "-t", "60"])
            .args(extra);
        cmd
    });
    (proc, v4(port))
}

/// The binary starts at all and names itself (argv[0] dispatch through the symlink).
fn check_version(arch: &Arch, bin: &Path, dir: &TempDir, program: &str) {
    let out = run_to_end(
        &format!("{program}-version"),
        {
            let mut cmd = command_as(arch, bin, dir, program);
            cmd.arg("--version");
            cmd
        },
        Duration::from_secs(30),
    );
    assert!(
        out.status.success() && out.stdout.contains(program),
        "{} {program} --version: {}; stdout {:?}; stderr {:?}",
        arch.triple,
        out.status,
        out.stdout,
        out.stderr
    );
}

fn local_suite(arch: &Arch) {
    let Some(bin) = cross_binary(arch) else {
        return;
    };
    let what = format!("{} ss-local", arch.triple);
    let _watchdog = Watchdog::new(&what, LIMIT);
    let dir = TempDir::new(&what);
    check_version(arch, &bin, &dir, "ss-local");

    let echo = EchoServer::start();
    let mut server = SsServer::start("chacha20-ietf-poly1305", PASSWORD);
    let (mut local, proxy) = start_client(arch, &bin, &dir, "ss-local", &server, &[]);

    let s = socks5_connect(proxy, &echo.v4().into()).expect("SOCKS5 CONNECT 127.0.0.1");
    assert_echo(s, 1, TRANSFER, &format!("{what}: CONNECT 127.0.0.1"));

    let s = socks5_connect(proxy, &Target::Domain("localhost".into(), echo.port))
        .expect("SOCKS5 CONNECT localhost");
    assert_echo(s, 2, 256 * 1024, &format!("{what}: CONNECT localhost"));

    let udp = Socks5Udp::associate(proxy).expect("UDP ASSOCIATE");
    for (i, size) in UDP_SIZES.into_iter().enumerate() {
        let payload = data(10 + i as u64, size);
        let from = udp
            .echo(&echo.v4().into(), &payload, 5)
            .unwrap_or_else(|e| panic!("{what}: UDP ASSOCIATE {size} bytes: {e}"));
        assert_eq!(from, Target::Ip(echo.v4()), "{what}: reply names the echo");
    }

    local.assert_running();
    server.proc.assert_running();
    local.assert_no_panic();
}

fn tunnel_suite(arch: &Arch) {
    let Some(bin) = cross_binary(arch) else {
        return;
    };
    let what = format!("{} ss-tunnel", arch.triple);
    let _watchdog = Watchdog::new(&what, LIMIT);
    let dir = TempDir::new(&what);
    check_version(arch, &bin, &dir, "ss-tunnel");

    // TCP and UDP echo share the port number, so one `-L` reaches both.
    let echo = EchoServer::start();
    let mut server = SsServer::start("aes-256-gcm", PASSWORD);
    let target = echo.v4().to_string();
    let (mut tunnel, fwd) = start_client(arch, &bin, &dir, "ss-tunnel", &server, &["-L", &target]);

    let s = connect(fwd).expect("connect to the tunnel");
    assert_echo(s, 3, TRANSFER, &format!("{what}: TCP"));

    for (i, size) in UDP_SIZES.into_iter().enumerate() {
        let payload = data(20 + i as u64, size);
        udp_echo_direct(fwd, &payload, 5)
            .unwrap_or_else(|e| panic!("{what}: UDP {size} bytes: {e}"));
    }

    tunnel.assert_running();
    server.proc.assert_running();
    tunnel.assert_no_panic();
}

macro_rules! suites {
    ($($local:ident, $tunnel:ident => $arch:ident;)*) => {$(
        #[test]
        fn $local() {
            local_suite(&$arch);
        }

        #[test]
        fn $tunnel() {
            tunnel_suite(&$arch);
        }
    )*};
}

suites! {
    mipsel_local, mipsel_tunnel => MIPSEL;
    mips_local, mips_tunnel => MIPS;
    aarch64_local, aarch64_tunnel => AARCH64;
    x86_64_musl_local, x86_64_musl_tunnel => X86_64;
}
