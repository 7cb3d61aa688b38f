//! The command-line interface: multi-call modes, `--version`/`--help`, start-up failures (one
//! clear line on stderr, non-zero exit), the JSON config file and its override by flags, and
//! shutdown on SIGTERM/SIGINT.

mod support;

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::Duration;
use support::*;

const RUN_LIMIT: Duration = Duration::from_secs(15);
const METHOD: &str = "aes-256-gcm";

fn ss_smol(args: &[&str]) -> Finished {
    let mut cmd = Command::new(ss_smol_bin());
    cmd.args(args);
    run_to_end("ss-smol", cmd, RUN_LIMIT)
}

/// A start-up failure: non-zero exit, a short message (no usage dump, no backtrace) with a
/// line that contains every one of `needles`.
fn assert_startup_failure(done: &Finished, needles: &[&str], what: &str) {
    assert!(
        !done.status.success(),
        "{what}: expected a non-zero exit, got {}; stderr:\n{}",
        done.status,
        done.stderr
    );
    let lines: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    contract(!lines.is_empty() && lines.len() <= 3, || {
        format!(
            "{what}: expected one clear line on stderr, got:\n{}",
            done.stderr
        )
    });
    contract(
        lines.iter().any(|l| needles.iter().all(|n| l.contains(n))),
        || {
            format!(
                "{what}: no stderr line mentions all of {needles:?}:\n{}",
                done.stderr
            )
        },
    );
    assert!(
        !done.stderr.contains("panicked"),
        "{what}: panicked:\n{}",
        done.stderr
    );
}

/// `local` flags against a server that need not exist (start-up checks come first).
fn local_args(port: u16, method: &str) -> Vec<String> {
    [
        "-s",
        "127.0.0.1",
        "-p",
        "1",
        "-b",
        "127.0.0.1",
        "-k",
        "pw",
        "-m",
        method,
        "-l",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([port.to_string()])
    .collect()
}

fn run_local(args: &[String], what: &str) -> Finished {
    let mut cmd = client_command("local");
    cmd.args(args);
    run_to_end(what, cmd, RUN_LIMIT)
}

#[test]
fn version() {
    let done = ss_smol(&["--version"]);
    assert!(
        done.status.success(),
        "--version: {}\n{}",
        done.status,
        done.stderr
    );
    let out = format!("{}{}", done.stdout, done.stderr);
    assert!(
        out.contains(env!("CARGO_PKG_VERSION")),
        "--version does not print {}: {out:?}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn help_lists_the_modes() {
    let done = ss_smol(&["--help"]);
    assert!(
        done.status.success(),
        "--help: {}\n{}",
        done.status,
        done.stderr
    );
    let out = format!("{}{}", done.stdout, done.stderr);
    for mode in ["local", "tunnel", "redir", "server"] {
        assert!(
            out.contains(mode),
            "--help does not mention `{mode}`:\n{out}"
        );
    }
}

#[test]
fn help_lists_redir_with_both_ways_of_diverting() {
    let done = ss_smol(&["--help"]);
    let redir = done
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("redir"));
    assert!(
        redir.is_some_and(|l| l.contains("REDIRECT") && l.contains("TPROXY")),
        "ss-smol --help does not describe redir:\n{}",
        done.stdout
    );
}

#[test]
fn mode_help_lists_only_that_modes_flags() {
    let help = |mode: &str| {
        let done = ss_smol(&[mode, "--help"]);
        assert!(done.status.success(), "{mode} --help: {}", done.status);
        assert!(
            done.stdout.starts_with(&format!("Usage: ss-smol {mode}")),
            "{mode} --help:\n{}",
            done.stdout
        );
        done.stdout
    };
    let local = help("local");
    for flag in ["--ban-failures", "--replay-capacity", "-T,", "-L,"] {
        assert!(!local.contains(flag), "local --help lists {flag}:\n{local}");
    }
    assert!(local.contains("--local-port"), "{local}");
    let server = help("server");
    for flag in ["-L,", "-T,", "-l,"] {
        assert!(
            !server.contains(flag),
            "server --help lists {flag}:\n{server}"
        );
    }
    assert!(server.contains("--ban-failures"), "{server}");
    assert!(help("redir").contains("-T, --tcp-tproxy"));
    assert!(help("tunnel").contains("-L, --tunnel-address"));
}

#[test]
fn another_programs_flag_is_refused_by_name() {
    let mut args = local_args(free_port(), METHOD);
    args.extend(["--ban-failures".to_string(), "3".to_string()]);
    let mut cmd = Command::new(ss_smol_bin());
    cmd.arg("local").args(&args);
    let done = run_to_end("local --ban-failures", cmd, RUN_LIMIT);
    assert_startup_failure(
        &done,
        &[
            "--ban-failures",
            "ss-smol server",
            "(see ss-smol local --help)",
        ],
        "ss-smol local --ban-failures",
    );

    // Invoked through a symlink, messages use that name.
    let dir = TempDir::new("flag-names");
    std::os::unix::fs::symlink(ss_smol_bin(), dir.join("ss-server")).unwrap();
    let mut cmd = Command::new(dir.join("ss-server"));
    cmd.args(["-p", "1", "-k", "x", "-L", "192.0.2.1:53"]);
    let done = run_to_end("ss-server -L", cmd, RUN_LIMIT);
    assert_startup_failure(
        &done,
        &["-L", "ss-tunnel option", "(see ss-server --help)"],
        "ss-server -L",
    );
}

#[test]
fn misspelt_key_that_matters_is_an_error() {
    let dir = TempDir::new("misspelt");
    let path = dir.join("typo.json");
    std::fs::write(
        &path,
        r#"{"server": "127.0.0.1", "server_port": 1, "local_port": 1, "password": "pw",
            "methd": "aes-256-gcm"}"#,
    )
    .unwrap();
    // ss-smol's own rule (libev ignores unknown keys): always the real binary.
    let mut cmd = Command::new(ss_smol_bin());
    cmd.arg("local").arg("-c").arg(&path);
    let done = run_to_end("misspelt key", cmd, RUN_LIMIT);
    assert_startup_failure(
        &done,
        &["typo.json", "\"methd\"", "did you mean \"method\""],
        "misspelt method key",
    );
}

#[test]
fn unknown_mode_fails() {
    let done = ss_smol(&["frobnicate", "-s", "127.0.0.1"]);
    assert!(
        !done.status.success(),
        "unknown mode exited {}",
        done.status
    );
    assert!(
        done.stderr.contains("frobnicate"),
        "the message does not name the unknown mode:\n{}",
        done.stderr
    );
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

#[test]
fn symlinks_pick_the_mode() {
    if !require_tool("ss-server") {
        return;
    }
    let _w = Watchdog::new("symlinks", Duration::from_secs(60));
    let dir = TempDir::new("symlinks");
    let echo = EchoServer::start();
    let server = SsServer::start(METHOD, PASSWORD);
    for name in ["ss-local", "ss-tunnel"] {
        std::os::unix::fs::symlink(ss_smol_bin(), dir.join(name)).unwrap();
    }
    let server_port = server.port.to_string();
    let common = |cmd: &mut Command, port: u16| {
        cmd.args(["-s", "127.0.0.1", "-p", &server_port, "-b", "127.0.0.1"])
            .args(["-l", &port.to_string(), "-k", PASSWORD, "-m", METHOD]);
    };

    let (_local, port) = spawn_listening("symlink-ss-local", |port| {
        let mut cmd = Command::new(dir.join("ss-local"));
        common(&mut cmd, port);
        cmd
    });
    let s = socks5_connect(v4(port), &echo.v4().into()).expect("SOCKS5 via ss-local symlink");
    assert_echo(s, 1, 50_000, "ss-local symlink");

    let target = echo.v4().to_string();
    let (_tunnel, port) = spawn_listening("symlink-ss-tunnel", |port| {
        let mut cmd = Command::new(dir.join("ss-tunnel"));
        common(&mut cmd, port);
        cmd.args(["-L", &target]);
        cmd
    });
    assert_echo(connect(v4(port)).unwrap(), 2, 50_000, "ss-tunnel symlink");
}

#[test]
fn stream_ciphers_are_refused() {
    // ss-smol's own rule (libev accepts them): always the real binary.
    for method in ["rc4-md5", "aes-256-cfb", "chacha20-ietf"] {
        let mut cmd = Command::new(ss_smol_bin());
        cmd.arg("local").args(local_args(free_port(), method));
        let done = run_to_end(method, cmd, RUN_LIMIT);
        assert_startup_failure(&done, &[method], method);
        for supported in CIPHERS.map(|c| c.0) {
            contract(done.stderr.contains(supported), || {
                format!(
                    "refusing {method}: the message does not list {supported}:\n{}",
                    done.stderr
                )
            });
        }
    }
}

#[test]
fn unknown_method_is_refused() {
    let done = run_local(&local_args(free_port(), "no-such-cipher"), "unknown method");
    assert_startup_failure(&done, &["no-such-cipher"], "unknown method");
}

#[test]
fn tcp_port_in_use() {
    let _w = Watchdog::new("tcp port in use", Duration::from_secs(60));
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let done = run_local(&local_args(port, METHOD), "tcp port in use");
    assert_startup_failure(&done, &[&port.to_string()], "TCP port in use");
}

#[test]
fn udp_port_in_use() {
    let _w = Watchdog::new("udp port in use", Duration::from_secs(60));
    let port = free_port();
    let _taken = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let mut args = local_args(port, METHOD);
    args.push("-U".into());
    let done = run_local(&args, "udp port in use");
    assert_startup_failure(&done, &[&port.to_string()], "UDP port in use");
}

#[test]
fn unresolvable_server_name() {
    // A label longer than 63 bytes: the resolver refuses it without sending a query, so no DNS
    // traffic leaves the machine.
    let host = format!("{}.invalid", "x".repeat(64));
    let mut args = local_args(free_port(), METHOD);
    args[1] = host.clone();
    let done = run_local(&args, "unresolvable");
    assert_startup_failure(&done, &[&host], "unresolvable server name");
}

#[test]
fn bad_json_config() {
    let dir = TempDir::new("bad-json");
    let path = dir.join("bad-config.json");
    std::fs::write(
        &path,
        "{ \"server\": \"127.0.0.1\", \"server_port\": 8388,\n",
    )
    .unwrap();
    let mut cmd = client_command("local");
    cmd.arg("-c").arg(&path);
    let done = run_to_end("bad json", cmd, RUN_LIMIT);
    assert_startup_failure(&done, &["bad-config.json"], "bad JSON config");
}

/// A plugin that is not installed stops start-up with one line naming the setting the way it
/// was given.
#[test]
fn missing_plugin_names_where_it_was_set() {
    let port = free_port();
    let mut args = local_args(port, METHOD);
    args.extend(["--plugin".to_string(), "no-such-plugin-xyz".to_string()]);
    let done = ss_smol(
        &[
            &["local"],
            &args.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ]
        .concat(),
    );
    let why = ["no-such-plugin-xyz", "(--plugin)", "not found on PATH"];
    assert_startup_failure(&done, &why, "--plugin");

    let dir = TempDir::new("plugin-json");
    let path = dir.join("plugin.json");
    std::fs::write(
        &path,
        r#"{"plugin": "no-such-plugin-xyz", "plugin_opts": "obfs=http"}"#,
    )
    .unwrap();
    let mut args = local_args(port, METHOD);
    args.extend(["-c".to_string(), path.display().to_string()]);
    let done = ss_smol(
        &[
            &["local"],
            &args.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ]
        .concat(),
    );
    let why = ["no-such-plugin-xyz", "(\"plugin\" in the config file)"];
    assert_startup_failure(&done, &why, "JSON plugin");
}

#[test]
fn missing_config_file() {
    let dir = TempDir::new("missing-config");
    let path = dir.join("no-such-config.json");
    let mut cmd = client_command("local");
    cmd.arg("-c").arg(&path);
    let done = run_to_end("missing config", cmd, RUN_LIMIT);
    assert_startup_failure(&done, &["no-such-config.json"], "missing config file");
}

fn write_config(dir: &TempDir, server: &SsServer, local_port: u16) -> std::path::PathBuf {
    let path = dir.join("config.json");
    let json = format!(
        r#"{{
    "server": "127.0.0.1",
    "server_port": {},
    "local_address": "127.0.0.1",
    "local_port": {local_port},
    "password": "{}",
    "method": "{}",
    "timeout": 60,
    "mode": "tcp_and_udp"
}}
"#,
        server.port, server.password, server.method
    );
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn config_file_values_are_used() {
    if !require_tool("ss-server") {
        return;
    }
    let _w = Watchdog::new("config file", Duration::from_secs(60));
    let dir = TempDir::new("config");
    let echo = EchoServer::start();
    let server = SsServer::start(METHOD, PASSWORD);
    let port = free_port();
    let config = write_config(&dir, &server, port);
    let mut cmd = client_command("local");
    cmd.arg("-c").arg(&config);
    let mut local = Proc::spawn("local-config", cmd);
    local.wait_for_tcp(v4(port), START_TIMEOUT);
    let s = socks5_connect(v4(port), &echo.v4().into()).expect("SOCKS5 via config file");
    assert_echo(s, 3, 50_000, "config file");
    // "mode": "tcp_and_udp" from the file.
    let udp = Socks5Udp::associate(v4(port)).expect("UDP ASSOCIATE");
    udp.echo(&echo.v4().into(), b"udp via config", 5)
        .expect("UDP via config file");
    local.assert_running();
}

#[test]
fn command_line_overrides_config_file() {
    if !require_tool("ss-server") {
        return;
    }
    let _w = Watchdog::new("config override", Duration::from_secs(60));
    let dir = TempDir::new("config-override");
    let echo = EchoServer::start();
    let server = SsServer::start(METHOD, PASSWORD);
    // The file names a port that is taken: only the command line's -l lets it start.
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let config = write_config(&dir, &server, taken.local_addr().unwrap().port());
    let (mut local, port) = spawn_listening("local-override", |port| {
        let mut cmd = client_command("local");
        cmd.arg("-c").arg(&config).args(["-l", &port.to_string()]);
        cmd
    });
    let s = socks5_connect(v4(port), &echo.v4().into()).expect("SOCKS5 on the -l port");
    assert_echo(s, 4, 50_000, "config + -l");
    local.assert_running();

    // A wrong password on the command line wins over the file's right one: no echo.
    let (_wrong, port) = spawn_listening("local-override-key", |port| {
        let mut cmd = client_command("local");
        cmd.arg("-c")
            .arg(&config)
            .args(["-l", &port.to_string(), "-k", "not-the-password"]);
        cmd
    });
    let mut s = socks5_connect(v4(port), &echo.v4().into()).expect("SOCKS5");
    std::io::Write::write_all(&mut s, b"x").unwrap();
    let mut b = [0u8; 1];
    // The right key echoes within milliseconds; libev's server holds a bad one silently.
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let echoed = matches!(std::io::Read::read(&mut s, &mut b), Ok(1));
    assert!(
        !echoed,
        "-k on the command line did not override the file's password"
    );
}

fn terminates_on(sig: i32, name: &str) {
    if !require_tool("ss-server") {
        return;
    }
    let _w = Watchdog::new(name, Duration::from_secs(60));
    let echo = EchoServer::start();
    let server = SsServer::start(METHOD, PASSWORD);
    let mut local = ClientProc::local(&server, &[]);
    // With a live relayed connection and a UDP association open.
    let mut s = socks5_connect(local.addr(), &echo.v4().into()).unwrap();
    std::io::Write::write_all(&mut s, b"ping").unwrap();
    let mut b = [0u8; 4];
    std::io::Read::read_exact(&mut s, &mut b).unwrap();
    let udp = Socks5Udp::associate(local.addr()).unwrap();
    udp.echo(&echo.v4().into(), b"ping", 5).unwrap();

    local.proc.signal(sig);
    let status = local
        .proc
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after {name}"));
    assert!(status.success(), "exit status after {name}: {status}");
    local.proc.assert_no_panic();
}

#[test]
fn sigterm_exits_zero() {
    terminates_on(SIGTERM, "SIGTERM");
}

#[test]
fn sigint_exits_zero() {
    terminates_on(SIGINT, "SIGINT");
}
