//! The OpenWrt service files: `openwrt/files/shadowsocks-smol.init` (procd init script),
//! `shadowsocks-smol.config` (the UCI sample) and `shadowsocks-smol.uci-defaults` (the migration
//! of a former shadowsocks-libev config), run with OpenWrt's own rc.common, functions.sh,
//! procd.sh, uci, jshn and validate_data under busybox ash, from the test kit in
//! `../shared/vendor/openwrt` (see its README).
//!
//! Each test stages a router root and runs `/etc/init.d/shadowsocks-smol ACTION` there with the
//! kit's `run-in-root.sh` (a private mount namespace; nothing on the host changes). The staged
//! root has recording stand-ins for what the kit does not provide or what must not really run:
//! `ubus` (what the script sends procd; `service list` answers from a file), `/usr/bin/ss-rules`
//! (arguments recorded, so no firewall rule is ever loaded), `logger`, `resolveip` (names from a
//! table), `nft` and `ipset` (only what `status` asks). `/usr/bin/ss-smol` is the binary cargo
//! built, with the `ss-local`, `ss-redir`, `ss-tunnel`, `ss-server` links; the JSON files the
//! script writes are then given to that binary, in a network namespace of their own, which must
//! start listening without a warning about the config.
//!
//! Needs root (mount and network namespaces), busybox, flock, unshare, ip, python3 (a stand-in
//! plugin), shellcheck, and what the kit's build.sh installs (cmake, gcc, libjson-c-dev). The
//! kit is built once into `$TMPDIR/owrt-kit-out` (outside the kit, which CI lays out
//! read-only), under a lock shared by the tests. Ignored by a plain `cargo test`;
//! `bash tests/run-all.sh` runs them, and a missing tool or root fails them.

mod support;

use miniserde::json::{self, Number, Value};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::openwrt_kit::*;
use support::*;

const STEP: Duration = Duration::from_secs(60);
const TEST_LIMIT: Duration = Duration::from_secs(240);
const NAME: &str = "shadowsocks-smol";
const CONFDIR: &str = "var/etc/shadowsocks-smol";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Stand-ins installed into the staged root

/// Records its arguments (separated by \x1f, one call a line); exit status and stderr from
/// /var/run/ss-rules.rc and /var/run/ss-rules.err when present. Never touches the kernel.
const SS_RULES: &str = r#"#!/bin/sh
{ for a in "$@"; do printf '%s\037' "$a"; done; echo; } >>/var/run/ss-rules.log
[ ! -f /var/run/ss-rules.err ] || cat /var/run/ss-rules.err >&2
[ ! -f /var/run/ss-rules.rc ] || exit "$(cat /var/run/ss-rules.rc)"
exit 0
"#;

/// `resolveip [-t N] NAME`: the addresses after NAME in /etc/test-hosts.
const RESOLVEIP: &str = r#"#!/bin/sh
for n; do :; done
out=$(awk -v n="$n" '$1 == n { for (i = 2; i <= NF; i++) print $i }' /etc/test-hosts 2>/dev/null)
[ -n "$out" ] || exit 1
echo "$out"
"#;

/// Only `nft list table inet ss_rules` answers (yes when /var/run/fake-nft-table exists).
const NFT: &str = r#"#!/bin/sh
echo "$*" >>/var/run/nft.log
[ "$*" = "list table inet ss_rules" ] && [ -f /var/run/fake-nft-table ] && exit 0
exit 1
"#;

const IPSET: &str = "#!/bin/sh\necho \"$*\" >>/var/run/ipset.log\nexit 1\n";

/// A SIP003 plugin for the binary check: opens the TCP and UDP port ss-smol asks for, does
/// nothing else.
const PLUGIN: &str = r#"#!/usr/bin/env python3
import os, socket, time
host, port = os.environ["SS_LOCAL_HOST"], int(os.environ["SS_LOCAL_PORT"])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
t = socket.socket(fam, socket.SOCK_STREAM)
t.bind((host, port))
t.listen(8)
u = socket.socket(fam, socket.SOCK_DGRAM)  # SIP003u (plugin_mode with UDP)
u.bind((host, port))
time.sleep(120)
"#;

/// A staged router root with the service files installed.
struct Router {
    dir: TempDir,
    root: PathBuf,
}

impl Router {
    fn new(tag: &str) -> Router {
        require_root();
        let dir = TempDir::new(tag);
        let root = dir.join("root");
        stage_root(&root);
        let r = Router { dir, root };
        let install = |src: &str, dst: &str, mode: u32| {
            let to = r.path(dst);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(openwrt_files().join(src), &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
        };
        install(
            "shadowsocks-smol.init",
            "etc/init.d/shadowsocks-smol",
            0o755,
        );
        install(
            "shadowsocks-smol.config",
            "etc/config/shadowsocks-smol",
            0o644,
        );
        install(
            "shadowsocks-smol.uci-defaults",
            "etc/uci-defaults/shadowsocks-smol",
            0o755,
        );
        write_exec(&r.path("bin/ubus"), UBUS);
        write_exec(&r.path("usr/bin/ss-rules"), SS_RULES);
        write_exec(&r.path("usr/bin/logger"), LOGGER);
        write_exec(&r.path("usr/bin/resolveip"), RESOLVEIP);
        write_exec(&r.path("usr/sbin/nft"), NFT);
        write_exec(&r.path("usr/sbin/ipset"), IPSET);
        std::os::unix::fs::symlink(ss_smol_bin(), r.path("usr/bin/ss-smol")).unwrap();
        for m in ["local", "redir", "tunnel", "server"] {
            std::os::unix::fs::symlink("ss-smol", r.path(&format!("usr/bin/ss-{m}"))).unwrap();
        }
        r
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Removes `rel` from the staged root and hides the host's file of that name (an overlayfs
    /// whiteout: a 0/0 character device).
    fn hide(&self, rel: &str) {
        let path = self.path(rel);
        let _ = fs::remove_file(&path);
        let mut cmd = Command::new("mknod");
        cmd.arg(&path).args(["c", "0", "0"]);
        let f = run_to_end("mknod", cmd, STEP);
        assert!(f.status.success(), "mknod {}: {}", path.display(), f.stderr);
    }

    fn set_config(&self, text: &str) {
        fs::write(self.path("etc/config/shadowsocks-smol"), text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// `CMD...` inside the staged root.
    fn run(&self, args: &[&str]) -> Finished {
        let mut cmd = Command::new("bash");
        cmd.arg(kit().join("run-in-root.sh"))
            .arg(&self.root)
            .args(args);
        run_to_end("run-in-root", cmd, STEP)
    }

    fn sh(&self, script: &str) -> Finished {
        let f = self.run(&["sh", "-c", script]);
        assert!(
            f.status.success(),
            "sh -c {script:?}: {:?}\n{}{}",
            f.status,
            f.stdout,
            f.stderr
        );
        f
    }

    /// `/etc/init.d/shadowsocks-smol ACTION`, which must exit 0.
    fn init(&self, action: &str) -> Finished {
        let f = self.run(&["/etc/init.d/shadowsocks-smol", action]);
        assert!(
            f.status.success(),
            "init.d {action}: {:?}\nstdout:\n{}\nstderr:\n{}",
            f.status,
            f.stdout,
            f.stderr
        );
        f
    }

    /// The uci-defaults script run as OpenWrt runs it (base-files' uci_apply_defaults at boot,
    /// default_postinst on install): sourced in a subshell, deleted when that exits 0. The
    /// script must be gone afterwards; it is put back for the next run.
    fn uci_defaults(&self) -> Finished {
        let script = "etc/uci-defaults/shadowsocks-smol";
        fs::copy(
            openwrt_files().join("shadowsocks-smol.uci-defaults"),
            self.path(script),
        )
        .unwrap();
        let f = self.run(&[
            "sh",
            "-c",
            "cd /etc/uci-defaults && ( . ./shadowsocks-smol ) && rm -f ./shadowsocks-smol",
        ]);
        assert!(
            !self.path(script).exists(),
            "uci-defaults script not deleted: it did not exit 0"
        );
        f
    }

    /// Every `ubus` call so far: (verb object method, message).
    fn ubus_calls(&self) -> Vec<(String, String)> {
        self.read("var/run/ubus.log")
            .lines()
            .map(|l| {
                let mut p = l.splitn(4, '\t');
                let head = [p.next(), p.next(), p.next()]
                    .map(|s| s.unwrap_or(""))
                    .join(" ");
                (head, p.next().unwrap_or("").to_string())
            })
            .collect()
    }

    /// The messages of every `ubus call service set` so far.
    fn service_sets(&self) -> Vec<Value> {
        self.ubus_calls()
            .into_iter()
            .filter(|(h, _)| h == "call service set")
            .map(|(_, m)| json::from_str(&m).unwrap_or_else(|_| panic!("bad JSON: {m}")))
            .collect()
    }

    fn last_set(&self) -> Value {
        self.service_sets()
            .pop()
            .expect("no `ubus call service set` recorded")
    }

    /// Every ss-rules call so far, as argument lists.
    fn rules_calls(&self) -> Vec<Vec<String>> {
        self.read("var/run/ss-rules.log")
            .lines()
            .map(|l| {
                l.split('\x1f')
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect()
    }

    fn log(&self) -> String {
        self.read("var/run/logger.log")
    }

    fn conf_json(&self, instance: &str) -> Value {
        let text = self.read(&format!("{CONFDIR}/{instance}.json"));
        json::from_str(&text).unwrap_or_else(|_| panic!("{instance}.json: {text:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v {
        Value::Object(o) => o
            .get(key)
            .unwrap_or_else(|| panic!("no key {key:?} in {}", json::to_string(v))),
        _ => panic!("not an object: {}", json::to_string(v)),
    }
}

fn keys(v: &Value) -> Vec<String> {
    match v {
        Value::Object(o) => o.keys().cloned().collect(),
        _ => panic!("not an object: {}", json::to_string(v)),
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(Number::U64(n)) => n.to_string(),
        Value::Number(Number::I64(n)) => n.to_string(),
        Value::Number(Number::F64(n)) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("[{}]", a.iter().map(render).collect::<Vec<_>>().join(", ")),
        Value::Object(_) => json::to_string(v),
    }
}

/// An object as `key -> rendered value` (strings quoted, so "8388" and 8388 differ).
fn flat(v: &Value) -> BTreeMap<String, String> {
    keys(v)
        .into_iter()
        .map(|k| (k.clone(), render(get(v, &k))))
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The booleans every instance's JSON has, all false unless named in `on`.
fn common_bools(on: &[&str]) -> Vec<(&'static str, &'static str)> {
    ["fast_open", "ipv6_first", "no_delay", "reuse_port"]
        .into_iter()
        .map(|k| (k, if on.contains(&k) { "true" } else { "false" }))
        .collect()
}

fn instances(set: &Value) -> Vec<String> {
    keys(get(set, "instances"))
}

/// The instance of `set` whose name starts with `prefix` (anonymous sections get uci's cfgXXXX
/// names); exactly one must match.
fn instance_named(set: &Value, prefix: &str) -> String {
    let found: Vec<String> = instances(set)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "instances {prefix}*: {found:?}");
    found[0].clone()
}

/// Checks what every instance must have: command `/usr/bin/ss-MODE -c CONF [-v]`, that file as
/// `file`, unlimited respawn, stdout and stderr to logd.
fn assert_instance(set: &Value, name: &str, verbose: bool) {
    let inst = get(get(set, "instances"), name);
    let (stype, _) = name.split_once('.').unwrap();
    let conf = format!("/{CONFDIR}/{name}.json");
    let mut cmd = vec![
        format!("\"/usr/bin/ss-{}\"", stype.trim_start_matches("ss_")),
        "\"-c\"".into(),
        format!("{conf:?}"),
    ];
    if verbose {
        cmd.push("\"-v\"".into());
    }
    assert_eq!(
        render(get(inst, "command")),
        format!("[{}]", cmd.join(", ")),
        "{name}"
    );
    assert_eq!(render(get(inst, "file")), format!("[{conf:?}]"), "{name}");
    // procd: threshold 3600 s, 5 s apart, retry 0 = never give up (instance.c only stops a
    // crash loop when respawn_retry > 0).
    assert_eq!(
        render(get(inst, "respawn")),
        r#"["3600", "5", "0"]"#,
        "{name}"
    );
    assert_eq!(render(get(inst, "stdout")), "true", "{name}");
    assert_eq!(render(get(inst, "stderr")), "true", "{name}");
}

/// The triggers and the validate block of every start.
fn assert_triggers_and_validation(set: &Value) {
    assert_eq!(render(get(set, "name")), format!("{NAME:?}"));
    assert_eq!(
        render(get(set, "script")),
        "\"/etc/init.d/shadowsocks-smol\""
    );
    let trig = render(get(set, "triggers"));
    assert_eq!(
        trig,
        r#"[["config.change", ["if", ["eq", "package", "shadowsocks-smol"], ["run_script", "/etc/init.d/shadowsocks-smol", "reload"]], 1000], ["interface.*", ["if", ["eq", "interface", "wan"], ["run_script", "/etc/init.d/shadowsocks-smol", "reload"]], 1000]]"#
    );
    let Value::Array(validate) = get(set, "validate") else {
        panic!("validate is not a list")
    };
    let types: Vec<String> = validate.iter().map(|v| render(get(v, "type"))).collect();
    assert_eq!(
        types,
        [
            "server",
            "ss_local",
            "ss_redir",
            "ss_tunnel",
            "ss_server",
            "ss_rules"
        ]
        .map(|t| format!("{t:?}"))
    );
    let data = |i: usize| flat(get(&validate[i], "data"));
    for v in validate {
        assert_eq!(render(get(v, "package")), format!("{NAME:?}"));
    }
    let server = data(0);
    assert_eq!(server["server"], "\"host\"");
    assert_eq!(server["server_port"], "\"port\"");
    assert!(
        server["method"].contains("chacha20-ietf-poly1305"),
        "{server:?}"
    );
    for m in [
        "2022-blake3-aes-128-gcm",
        "2022-blake3-aes-256-gcm",
        "2022-blake3-chacha20-poly1305",
    ] {
        assert!(server["method"].contains(m), "{m}: {server:?}");
    }
    assert!(!server["method"].contains("cfb"), "{server:?}");
    for k in [
        "password",
        "key",
        "plugin",
        "plugin_opts",
        "plugin_args",
        "plugin_mode",
    ] {
        assert!(
            server.contains_key(k),
            "server validation lacks {k}: {server:?}"
        );
    }
    for (i, extra) in [(1, "acl"), (2, "tcp_tproxy"), (3, "tunnel_address")] {
        let d = data(i);
        assert_eq!(d["server"], "\"uci(shadowsocks-smol, @server)\"");
        assert_eq!(d["local_port"], "\"port\"");
        assert_eq!(d["local_address"], "\"ipaddr\"");
        assert!(d.contains_key(extra), "{extra}: {d:?}");
        for k in [
            "disabled",
            "mode",
            "timeout",
            "fwmark",
            "handshake_timeout",
            "max_conns",
            "pool_blocks",
            "udp_assocs",
        ] {
            assert!(d.contains_key(k), "{k}: {d:?}");
        }
    }
    let srv = data(4);
    for k in [
        "server_port",
        "method",
        "ban_failures",
        "allow_private_targets",
        "local_address",
        "users",
    ] {
        assert!(
            srv.contains_key(k),
            "ss_server validation lacks {k}: {srv:?}"
        );
    }
    let rules = data(5);
    assert_eq!(rules["redir_tcp"], "\"uci(shadowsocks-smol, @ss_redir)\"");
    assert_eq!(rules["backend"], "\"or(auto, nft, iptables)\"");
    assert_eq!(rules["src_ips_forward"], "\"or(ipaddr,cidr)\"");
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// Starts what procd would start for `instance`, with ss-smol, in a network namespace: it must
/// say it listens (on the port the JSON names), with no warning about the config, and then
/// stop on SIGTERM.
fn check_with_ss_smol(r: &Router, set: &Value, instance: &str, ns: &NetNs) {
    let cmd = get(get(get(set, "instances"), instance), "command");
    let Value::Array(args) = cmd else {
        panic!("command is not a list")
    };
    let args: Vec<String> = args
        .iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => panic!("command argument {}", render(other)),
        })
        .collect();
    let mode = args[0].trim_start_matches("/usr/bin/ss-").to_string();
    // ss-smol resolves a client's server at start (and exits when it cannot: procd's respawn
    // retries); the router's names (etc/test-hosts) go into an /etc/hosts of its own.
    let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for line in r.read("etc/test-hosts").lines() {
        let mut w = line.split_whitespace();
        if let Some(name) = w.next() {
            for addr in w {
                hosts.push_str(&format!("{addr} {name}\n"));
            }
        }
    }
    let hosts_file = r.dir.join("hosts");
    fs::write(&hosts_file, hosts).unwrap();
    let mut c = ns.command(Path::new("unshare"));
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
        .arg(&hosts_file)
        .arg(ss_smol_bin())
        .arg(&mode);
    for a in &args[1..] {
        if a.starts_with('/') {
            c.arg(r.path(a));
        } else {
            c.arg(a);
        }
    }
    let conf = r.conf_json(instance);
    let port = match mode.as_str() {
        "server" => render(get(&conf, "server_port")),
        _ => render(get(&conf, "local_port")),
    };
    let mut p = Proc::spawn(&format!("ss-smol-{instance}"), c);
    let listening = format!("ss-{mode} listening on ");
    let ok = p.wait_for_stderr(&listening, Duration::from_secs(15));
    let err = p.stderr();
    assert!(
        ok,
        "{instance}: ss-smol {mode} did not start with the init script's JSON:\n{err}"
    );
    let line = err.lines().find(|l| l.contains(&listening)).unwrap();
    assert!(line.contains(&format!(":{port} ")), "{instance}: {line}");
    assert!(
        !err.contains("WARN") && !err.contains("ERROR"),
        "{instance}: ss-smol warned about the JSON:\n{err}"
    );
    p.signal(SIGTERM);
    assert!(
        p.wait_exit(Duration::from_secs(10)).is_some(),
        "{instance}: ss-smol did not exit on SIGTERM"
    );
    p.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Configs

/// The former package's README recipe "forward all": ss_redir for TCP and UDP, ss_rules
/// forwarding everything, ss_tunnel for DNS. The server is a host name (resolved through
/// /etc/test-hosts); the redir marks its own traffic with fwmark 0xff.
const FORWARD_ALL: &str = r#"
config server 'sss0'
	option disabled 0
	option server 'vpn.example.net'
	option server_port '8388'
	option password "it's a secret"
	option method 'aes-256-gcm'

config ss_tunnel
	option disabled 0
	option server 'sss0'
	option local_address '0.0.0.0'
	option local_port '8053'
	option tunnel_address '8.8.8.8:53'
	option mode 'tcp_and_udp'

config ss_redir ssr0
	option disabled 0
	option server 'sss0'
	option local_address '0.0.0.0'
	option local_port '1100'
	option mode 'tcp_and_udp'
	option reuse_port 1
	option fwmark '0xff'

config ss_rules 'ss_rules'
	option disabled 0
	option redir_tcp 'ssr0'
	option redir_udp 'ssr0'
	option src_default 'checkdst'
	option dst_default 'forward'
	option local_default 'forward'
"#;

fn forward_all(r: &Router) {
    r.set_config(FORWARD_ALL);
    fs::write(
        r.path("etc/test-hosts"),
        "vpn.example.net 198.51.100.7 2001:db8::7\n",
    )
    .unwrap();
}

fn forward_all_rules_args() -> Vec<String> {
    [
        "start",
        "--backend",
        "nft",
        "--tcp-port",
        "1100",
        "--udp-port",
        "1100",
        "--mark-out",
        "0xff",
        "--family",
        "4",
        "--src-default",
        "checkdst",
        "--dst-default",
        "forward",
        "--local-default",
        "forward",
        "--server",
        "198.51.100.7 2001:db8::7",
    ]
    .map(String::from)
    .to_vec()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
#[ignore = "needs shellcheck and busybox; bash tests/run-all.sh runs it"]
fn scripts_are_shellcheck_clean_and_parse_under_busybox_ash() {
    let _w = Watchdog::new("shellcheck", TEST_LIMIT);
    require_tools(&["shellcheck", "busybox"]);
    for f in ["shadowsocks-smol.init", "shadowsocks-smol.uci-defaults"] {
        let mut cmd = Command::new("shellcheck");
        cmd.args(["-s", "sh"]).arg(openwrt_files().join(f));
        let out = run_to_end("shellcheck", cmd, STEP);
        assert!(
            out.status.success(),
            "shellcheck -s sh {f}:\n{}{}",
            out.stdout,
            out.stderr
        );
        let mut cmd = Command::new("busybox");
        cmd.args(["sh", "-n"]).arg(openwrt_files().join(f));
        let out = run_to_end("busybox sh -n", cmd, STEP);
        assert!(out.status.success(), "busybox sh -n {f}: {}", out.stderr);
    }
    let init = fs::read_to_string(openwrt_files().join("shadowsocks-smol.init")).unwrap();
    assert!(init.starts_with("#!/bin/sh /etc/rc.common\n"));
    for line in ["USE_PROCD=1", "START=99"] {
        assert!(init.lines().any(|l| l == line), "{line}");
    }
}

/// The shipped sample: every section disabled, so nothing runs and nothing complains; the
/// triggers and the validate block are there.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn shipped_sample_starts_nothing() {
    let _w = Watchdog::new("sample", TEST_LIMIT);
    let r = Router::new("owrt-sample");
    let f = r.init("start");
    let set = r.last_set();
    assert!(instances(&set).is_empty(), "{}", json::to_string(&set));
    assert_triggers_and_validation(&set);
    assert!(r.rules_calls().is_empty(), "{:?}", r.rules_calls());
    assert_eq!(r.log(), "", "log lines for an all-disabled config");
    assert_eq!(f.stderr, "");
    // The sample parses as the schema says: sections and options of the former package.
    let show = r.sh("uci show shadowsocks-smol").stdout;
    for line in [
        "shadowsocks-smol.sss0=server",
        "shadowsocks-smol.sss0.server_port='9001'",
        "shadowsocks-smol.@ss_local[0].local_port='1080'",
        "shadowsocks-smol.@ss_tunnel[0].tunnel_address='example.com:80'",
        "shadowsocks-smol.hi=ss_redir",
        "shadowsocks-smol.hj=ss_redir",
        "shadowsocks-smol.ss_rules=ss_rules",
        "shadowsocks-smol.ss_rules.src_ips_forward='192.168.1.4'",
        "shadowsocks-smol.@ss_server[0].server_port='9001'",
    ] {
        assert!(show.lines().any(|l| l == line), "{line} not in:\n{show}");
    }
    // Every section says disabled '1'.
    let sections = show
        .lines()
        .filter(|l| l.split('=').next().unwrap().matches('.').count() == 1)
        .count();
    let disabled = show
        .lines()
        .filter(|l| l.ends_with(".disabled='1'"))
        .count();
    assert_eq!((sections, disabled), (7, 7), "{show}");
}

/// Every section of the sample switched on: one instance per section, JSON that ss-smol
/// accepts for each of the four programs, and the rules from the sample's ss_rules.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn sample_with_every_section_enabled_gives_json_ss_smol_accepts() {
    let _w = Watchdog::new("sample enabled", TEST_LIMIT);
    require_tools(&["ip"]);
    let r = Router::new("owrt-sample-on");
    r.sh("for s in $(uci show shadowsocks-smol | sed -n 's/^shadowsocks-smol\\.\\([^.=]*\\)=.*/\\1/p'); do \
          uci set shadowsocks-smol.$s.disabled=0; done; \
          uci set shadowsocks-smol.sss0.password=secret; \
          uci set shadowsocks-smol.@ss_server[0].password=secret; uci commit shadowsocks-smol");
    r.init("start");
    let set = r.last_set();
    assert_eq!(instances(&set).len(), 5, "{:?}", instances(&set));
    let local = instance_named(&set, "ss_local.cfg");
    let tunnel = instance_named(&set, "ss_tunnel.cfg");
    let server = instance_named(&set, "ss_server.cfg");
    assert_instance(&set, &local, false);
    assert_instance(&set, &tunnel, false);
    assert_instance(&set, "ss_redir.hi", true);
    assert_instance(&set, "ss_redir.hj", true);
    assert_instance(&set, &server, false);
    let srv = [
        ("server", "\"192.168.1.3\""),
        ("server_port", "9001"),
        ("password", "\"secret\""),
        ("method", "\"chacha20-ietf-poly1305\""),
    ];
    let mut want: Vec<(&str, &str)> = srv.to_vec();
    want.extend([
        ("local_address", "\"0.0.0.0\""),
        ("local_port", "1080"),
        ("timeout", "30"),
        ("mode", "\"tcp_only\""),
    ]);
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json(&local)), expect(&want), "{local}");
    let mut want: Vec<(&str, &str)> = srv.to_vec();
    want.extend([
        ("local_address", "\"0.0.0.0\""),
        ("local_port", "1100"),
        ("timeout", "60"),
        ("mode", "\"tcp_and_udp\""),
        ("tcp_tproxy", "false"),
    ]);
    want.extend(common_bools(&["fast_open", "reuse_port"]));
    assert_eq!(flat(&r.conf_json("ss_redir.hi")), expect(&want));
    let mut want = vec![
        ("server_port", "9001"),
        ("password", "\"secret\""),
        ("method", "\"chacha20-ietf-poly1305\""),
        ("mode", "\"tcp_only\""),
        ("allow_private_targets", "false"),
    ];
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json(&server)), expect(&want), "{server}");
    assert_eq!(
        render(get(&r.conf_json(&tunnel), "tunnel_address")),
        "\"example.com:80\""
    );
    // The sample's ss_rules: redir 'hi' for TCP and UDP, its lists and defaults.
    let args: Vec<String> = [
        "start",
        "--backend",
        "nft",
        "--tcp-port",
        "1100",
        "--udp-port",
        "1100",
        // The sample's redir listens on 0.0.0.0: IPv4 only.
        "--family",
        "4",
        "--src-default",
        "checkdst",
        "--dst-default",
        "bypass",
        "--local-default",
        "checkdst",
        "--src-forward",
        "192.168.1.4",
        "--dst-forward",
        "8.8.8.8",
        "--server",
        "192.168.1.3",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(r.rules_calls(), vec![args]);
    let ns = NetNs::new("owrt-sample", &[]);
    for inst in instances(&set) {
        check_with_ss_smol(&r, &set, &inst, &ns);
    }
}

/// The former package's "forward all" recipe: two instances, the rules with the resolved
/// server, ss-redir's fwmark as the mark let through; reload after one section changed
/// changes only that instance's JSON; disabling ss_rules stops the rules; stop stops them too.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn forward_all_recipe_start_reload_stop() {
    let _w = Watchdog::new("forward all", TEST_LIMIT);
    require_tools(&["ip"]);
    let r = Router::new("owrt-fwd");
    forward_all(&r);
    r.init("start");
    let set = r.last_set();
    assert_triggers_and_validation(&set);
    let tunnel = instance_named(&set, "ss_tunnel.cfg");
    assert_eq!(instances(&set).len(), 2, "{:?}", instances(&set));
    assert_instance(&set, "ss_redir.ssr0", false);
    assert_instance(&set, &tunnel, false);
    let srv = [
        ("server", "\"vpn.example.net\""),
        ("server_port", "8388"),
        ("password", "\"it's a secret\""),
        ("method", "\"aes-256-gcm\""),
        ("local_address", "\"0.0.0.0\""),
    ];
    let mut want = srv.to_vec();
    want.extend([
        ("local_port", "1100"),
        ("mode", "\"tcp_and_udp\""),
        ("tcp_tproxy", "false"),
        ("fwmark", "\"0xff\""),
    ]);
    want.extend(common_bools(&["reuse_port"]));
    assert_eq!(flat(&r.conf_json("ss_redir.ssr0")), expect(&want));
    let mut want = srv.to_vec();
    want.extend([
        ("local_port", "8053"),
        ("mode", "\"tcp_and_udp\""),
        ("tunnel_address", "\"8.8.8.8:53\""),
    ]);
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json(&tunnel)), expect(&want));
    assert_eq!(r.rules_calls(), vec![forward_all_rules_args()]);
    assert!(r.path("var/run/shadowsocks-smol.rules").is_file());
    // The JSON holds the password: only root reads it.
    let mode = fs::metadata(r.path(&format!("{CONFDIR}/ss_redir.ssr0.json")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "JSON mode {mode:o}");
    let ns = NetNs::new("owrt-fwd", &[]);
    for inst in instances(&set) {
        check_with_ss_smol(&r, &set, &inst, &ns);
    }

    // Reload after the tunnel's port changed: the redir's instance and JSON are the same
    // (procd keeps it running), the tunnel's JSON differs (procd restarts it).
    let redir_before = r.read(&format!("{CONFDIR}/ss_redir.ssr0.json"));
    let tunnel_before = r.conf_json(&tunnel);
    r.sh("uci set shadowsocks-smol.@ss_tunnel[0].local_port=8054 && uci commit shadowsocks-smol");
    r.init("reload");
    let set2 = r.last_set();
    assert_eq!(r.service_sets().len(), 2);
    assert_eq!(
        json::to_string(get(get(&set2, "instances"), "ss_redir.ssr0")),
        json::to_string(get(get(&set, "instances"), "ss_redir.ssr0"))
    );
    assert_eq!(
        r.read(&format!("{CONFDIR}/ss_redir.ssr0.json")),
        redir_before
    );
    assert_instance(&set2, &tunnel, false);
    let mut changed = flat(&tunnel_before);
    changed.insert("local_port".into(), "8054".into());
    assert_eq!(flat(&r.conf_json(&tunnel)), changed);
    assert_eq!(r.rules_calls().len(), 2);
    assert_eq!(r.rules_calls()[1], forward_all_rules_args());

    // The tunnel removed: its instance and its JSON go.
    r.sh("uci delete shadowsocks-smol.@ss_tunnel[0] && uci commit shadowsocks-smol");
    r.init("reload");
    assert_eq!(instances(&r.last_set()), ["ss_redir.ssr0"]);
    assert!(!r.path(&format!("{CONFDIR}/{tunnel}.json")).exists());

    // ss_rules disabled: reload stops the rules (once; a second reload has nothing to stop).
    r.sh("uci set shadowsocks-smol.ss_rules.disabled=1 && uci commit shadowsocks-smol");
    r.init("reload");
    assert_eq!(r.rules_calls().last().unwrap(), &["stop"]);
    assert!(!r.path("var/run/shadowsocks-smol.rules").exists());
    let n = r.rules_calls().len();
    r.init("reload");
    assert_eq!(r.rules_calls().len(), n, "stop again without rules loaded");

    // Enabled again, then removed altogether.
    r.sh("uci set shadowsocks-smol.ss_rules.disabled=0 && uci commit shadowsocks-smol");
    r.init("reload");
    assert_eq!(r.rules_calls().last().unwrap()[0], "start");
    r.sh("uci delete shadowsocks-smol.ss_rules && uci commit shadowsocks-smol");
    r.init("reload");
    assert_eq!(r.rules_calls().last().unwrap(), &["stop"]);

    // stop: rules stopped, instances deleted, the JSON directory gone.
    r.sh("uci set shadowsocks-smol.ss_rules=ss_rules && uci set shadowsocks-smol.ss_rules.redir_tcp=ssr0 && uci commit shadowsocks-smol");
    r.init("reload");
    assert_eq!(
        r.rules_calls().last().unwrap()[..4],
        ["start", "--backend", "nft", "--tcp-port"]
    );
    r.init("stop");
    assert_eq!(r.rules_calls().last().unwrap(), &["stop"]);
    let calls = r.ubus_calls();
    let (head, msg) = calls.last().unwrap();
    assert_eq!(head, "call service delete");
    assert_eq!(
        flat(&json::from_str(msg).unwrap()),
        expect(&[("name", "\"shadowsocks-smol\"")])
    );
    assert!(!r.path(CONFDIR).exists());
}

/// A server name that does not resolve yet (no wan at boot) does not hold anything up: every
/// instance is there, the rules start without that address (logged), and the reload that wan
/// coming up triggers adds it.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn unresolvable_server_is_skipped_then_added_on_reload() {
    let _w = Watchdog::new("unresolvable", TEST_LIMIT);
    let r = Router::new("owrt-resolve");
    forward_all(&r);
    fs::write(r.path("etc/test-hosts"), "").unwrap();
    r.sh("uci set shadowsocks-smol.sss1=server && uci set shadowsocks-smol.sss1.server=192.0.2.44 \
          && uci set shadowsocks-smol.sss1.server_port=8389 && uci set shadowsocks-smol.sss1.password=p \
          && uci set shadowsocks-smol.l1=ss_local && uci set shadowsocks-smol.l1.server=sss1 \
          && uci set shadowsocks-smol.l1.local_port=1081 && uci commit shadowsocks-smol");
    r.init("start");
    let set = r.last_set();
    assert_eq!(instances(&set).len(), 3, "{:?}", instances(&set));
    assert_instance(&set, "ss_local.l1", false);
    let mut args = forward_all_rules_args();
    *args.last_mut().unwrap() = "192.0.2.44".into();
    assert_eq!(r.rules_calls(), vec![args]);
    assert!(
        r.log().contains(
            "ss_rules: server 'vpn.example.net' does not resolve (yet); left out of the bypass set until wan comes up"
        ),
        "{}",
        r.log()
    );
    // wan up: procd runs `reload` (the interface trigger checked above).
    fs::write(
        r.path("etc/test-hosts"),
        "vpn.example.net 198.51.100.7 2001:db8::7\n",
    )
    .unwrap();
    r.init("reload");
    let mut args = forward_all_rules_args();
    *args.last_mut().unwrap() = "192.0.2.44 198.51.100.7 2001:db8::7".into();
    assert_eq!(r.rules_calls().last().unwrap(), &args);
}

/// A config that the former package would have run into the ground: each bad option is
/// named with its section, that section is skipped, the good one still runs.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn broken_config_is_rejected_with_clear_messages() {
    let _w = Watchdog::new("broken", TEST_LIMIT);
    let r = Router::new("owrt-broken");
    r.set_config(
        "
config server 'good'
	option server '192.0.2.10'
	option server_port '8388'
	option password 'p'
	option method 'chacha20-ietf-poly1305'

config server 'stream'
	option server '192.0.2.11'
	option server_port '8388'
	option password 'p'
	option method 'rc4-md5'

config server 'off'
	option disabled 1
	option server '192.0.2.12'
	option server_port '8388'
	option password 'p'

config ss_local 'ok'
	option server 'good'
	option local_address '127.0.0.1'
	option local_port '1080'

config ss_redir 'badport'
	option server 'good'
	option local_port '99999'

config ss_local 'nosrv'
	option server 'nope'
	option local_port '1081'

config ss_tunnel 'noaddr'
	option server 'good'
	option local_port '5300'

config ss_local 'usesstream'
	option server 'stream'
	option local_port '1082'

config ss_local 'usesoff'
	option server 'off'
	option local_port '1083'

config ss_server 'badmode'
	option server_port '8388'
	option password 'p'
	option mode 'tcp_udp'
	option timeout '0'

config ss_rules 'ss_rules'
	option redir_tcp 'badport'
	option src_default 'sometimes'

config ss_rules
	option redir_tcp 'badport'
",
    );
    r.init("start");
    let set = r.last_set();
    assert_eq!(instances(&set), ["ss_local.ok"]);
    assert_instance(&set, "ss_local.ok", false);
    let log = r.log();
    for line in [
        "ss_redir 'badport': option local_port '99999' is not valid: want a port number (1-65535)",
        "ss_redir 'badport': invalid options; skipped",
        "ss_local 'nosrv': option server 'nope' is not valid: want the name of a server section",
        "ss_tunnel 'noaddr': option tunnel_address is required; skipped",
        "server 'stream': option method 'rc4-md5' is not valid: want an AEAD or Shadowsocks 2022 \
         method: chacha20-ietf-poly1305, aes-128-gcm, aes-192-gcm, aes-256-gcm, \
         xchacha20-ietf-poly1305, 2022-blake3-aes-128-gcm, 2022-blake3-aes-256-gcm, \
         2022-blake3-chacha20-poly1305 (stream ciphers are not supported)",
        "ss_local 'usesstream': its server 'stream' has invalid options; skipped",
        "ss_local 'usesoff': its server 'off' is disabled; skipped",
        "ss_server 'badmode': option mode 'tcp_udp' is not valid: want one of tcp_only, udp_only, tcp_and_udp",
        "ss_server 'badmode': option timeout '0' is not valid: want a number in 1-31536000",
        "ss_rules 'ss_rules': option src_default 'sometimes' is not valid: want one of bypass, forward, checkdst",
        "ss_rules: invalid options; rules not loaded",
    ] {
        assert!(log.lines().any(|l| l == line), "missing log line\n  {line}\nin:\n{log}");
    }
    assert!(
        log.lines().any(|l| l.starts_with("ss_rules section 'cfg")
            && l.ends_with("' ignored: it must be named ss_rules (config ss_rules 'ss_rules')")),
        "{log}"
    );
    assert!(r.rules_calls().is_empty(), "{:?}", r.rules_calls());
}

/// Missing pieces: a program link that is not installed skips its section (logged), the
/// others run; without /usr/bin/ss-rules (the separate rules package) the service runs
/// without rules; ss-rules refusing an option is logged with its message.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn missing_program_or_ss_rules_and_ss_rules_errors() {
    let _w = Watchdog::new("missing", TEST_LIMIT);
    let r = Router::new("owrt-missing");
    forward_all(&r);
    // Removed from the router: an overlayfs whiteout, so that the host's own (Debian's
    // shadowsocks-libev has /usr/bin/ss-tunnel) does not show through the staged /usr/bin.
    r.hide("usr/bin/ss-tunnel");
    r.hide("usr/bin/ss-rules");
    r.init("start");
    assert_eq!(instances(&r.last_set()), ["ss_redir.ssr0"]);
    let log = r.log();
    assert!(
        log.lines().any(|l| l.starts_with("ss_tunnel 'cfg")
            && l.ends_with("': /usr/bin/ss-tunnel is not installed; skipped")),
        "{log}"
    );
    assert!(
        log.contains("ss_rules: /usr/bin/ss-rules is not installed (package shadowsocks-smol-rules); no firewall rules"),
        "{log}"
    );
    r.init("stop");

    // ss-rules back, with backend iptables and an nft-only option; ss-rules exits 2.
    fs::remove_file(r.path("usr/bin/ss-rules")).unwrap();
    write_exec(&r.path("usr/bin/ss-rules"), SS_RULES);
    fs::write(r.path("var/run/ss-rules.rc"), "2\n").unwrap();
    fs::write(
        r.path("var/run/ss-rules.err"),
        "ss-rules: --ifnames: bad interface name 'br lan!'\n",
    )
    .unwrap();
    r.sh("uci set shadowsocks-smol.ss_rules.backend=iptables \
          && uci set shadowsocks-smol.ss_rules.nft_tcp_extra='tcp dport { 80, 443 }' \
          && uci add_list shadowsocks-smol.ss_rules.ifnames=br-lan \
          && uci commit shadowsocks-smol");
    r.init("start");
    let call = r.rules_calls().pop().unwrap();
    assert_eq!(call[..3], ["start", "--backend", "iptables"]);
    assert!(!call.iter().any(|a| a.starts_with("--nft")), "{call:?}");
    assert!(
        call.windows(2).any(|w| w == ["--ifnames", "br-lan"]),
        "{call:?}"
    );
    let log = r.log();
    assert!(
        log.contains("ss_rules: nft_tcp_extra and nft_udp_extra need backend nft; ignored"),
        "{log}"
    );
    assert!(
        log.contains("ss_rules: ss-rules refused an option, rules not changed: ss-rules: --ifnames: bad interface name 'br lan!'"),
        "{log}"
    );
    assert!(!r.path("var/run/shadowsocks-smol.rules").exists());
}

/// A shadowsocks-libev config migrated by the uci-defaults script, then started: the same
/// sections run; a stream cipher is named at migration and its section refused at start.
/// A second run changes nothing; a config the user changed is never overwritten.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn migrated_libev_config_starts() {
    let _w = Watchdog::new("migrate", TEST_LIMIT);
    require_tools(&["ip"]);
    let r = Router::new("owrt-migrate");
    let dir = &r.dir;
    let plugin = write_script(dir, "fake-plugin", PLUGIN);
    let libev = format!(
        "
config server 'sss0'
	option disabled 0
	option server '203.0.113.5'
	option server_port '8388'
	option password 'libev-pass'
	option method 'aes-256-gcm'
	option plugin '{}'
	option plugin_opts 'obfs=http;obfs-host=www.example.com'

config server 'old'
	option server '203.0.113.6'
	option server_port '8389'
	option password 'x'
	option method 'aes-256-cfb'

config ss_local
	option disabled 0
	option server 'sss0'
	option local_address '127.0.0.1'
	option local_port '1080'
	option timeout '30'
	option verbose '1'
	option acl '/etc/local.acl'

config ss_tunnel
	option disabled 0
	option server 'old'
	option local_port '5353'
	option tunnel_address '1.1.1.1:53'

config ss_server
	option disabled 0
	option server_port '8390'
	option password 'srv'
	option method 'chacha20-ietf-poly1305'
	option bind_address '127.0.0.1'
	option ipv6_first 1

config ss_rules 'ss_rules'
	option disabled 1
	option ipt_args '-j nothing'
",
        plugin.display()
    );
    fs::write(r.path("etc/config/shadowsocks-libev"), &libev).unwrap();
    fs::write(r.path("etc/local.acl"), "[proxy_all]\n").unwrap();
    write_exec(
        &r.path("etc/init.d/shadowsocks-libev"),
        "#!/bin/sh\necho \"$*\" >>/var/run/libev-init.log\n",
    );
    let sample = fs::read(openwrt_files().join("shadowsocks-smol.config")).unwrap();
    assert_eq!(
        fs::read(r.path("etc/config/shadowsocks-smol")).unwrap(),
        sample
    );

    let f = r.uci_defaults();
    assert!(
        f.status.success(),
        "uci-defaults: {:?} {}",
        f.status,
        f.stderr
    );
    assert_eq!(
        r.read("etc/config/shadowsocks-smol"),
        libev,
        "not migrated: is the md5sum of shadowsocks-smol.config in the uci-defaults script's SAMPLES?"
    );
    let log = r.log();
    assert!(
        log.contains("migrated /etc/config/shadowsocks-libev to /etc/config/shadowsocks-smol"),
        "{log}"
    );
    assert!(
        log.contains("section old: method aes-256-cfb is not supported"),
        "{log}"
    );
    assert_eq!(r.read("var/run/libev-init.log"), "stop\ndisable\n");
    assert_eq!(
        r.read("etc/config/shadowsocks-libev"),
        libev,
        "old config kept"
    );

    // Idempotent: a second run (opkg upgrade re-installs the script) changes nothing.
    let f = r.uci_defaults();
    assert!(f.status.success());
    assert_eq!(r.read("etc/config/shadowsocks-smol"), libev);
    assert_eq!(r.log().matches("migrated").count(), 1, "{}", r.log());

    r.init("start");
    let set = r.last_set();
    assert_eq!(instances(&set).len(), 2, "{:?}", instances(&set));
    let local = instance_named(&set, "ss_local.cfg");
    let server = instance_named(&set, "ss_server.cfg");
    assert_instance(&set, &local, true);
    assert_instance(&set, &server, false);
    let mut want = vec![
        ("server", "\"203.0.113.5\""),
        ("server_port", "8388"),
        ("password", "\"libev-pass\""),
        ("method", "\"aes-256-gcm\""),
        ("local_address", "\"127.0.0.1\""),
        ("local_port", "1080"),
        ("timeout", "30"),
        ("mode", "\"tcp_only\""),
        ("plugin_opts", "\"obfs=http;obfs-host=www.example.com\""),
    ];
    let plugin_json = format!("{:?}", plugin.display().to_string());
    want.push(("plugin", &plugin_json));
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json(&local)), expect(&want));
    let mut want = vec![
        ("server_port", "8390"),
        ("password", "\"srv\""),
        ("method", "\"chacha20-ietf-poly1305\""),
        ("local_address", "\"127.0.0.1\""),
        ("mode", "\"tcp_only\""),
        ("allow_private_targets", "false"),
    ];
    want.extend(common_bools(&["ipv6_first"]));
    assert_eq!(flat(&r.conf_json(&server)), expect(&want));
    let log = r.log();
    for needle in [
        "server 'old': option method 'aes-256-cfb' is not valid: want an AEAD or Shadowsocks 2022 method",
        "': its server 'old' has invalid options; skipped",
        "': option acl is not supported by ss-smol; ignored",
        "': option bind_address is deprecated, use local_address",
    ] {
        assert!(log.contains(needle), "{needle} not in:\n{log}");
    }
    assert!(r.rules_calls().is_empty(), "{:?}", r.rules_calls());
    let ns = NetNs::new("owrt-migrate", &[]);
    for inst in instances(&set) {
        check_with_ss_smol(&r, &set, &inst, &ns);
    }

    // A config the user has changed is never overwritten, also when it is not migrated yet.
    let r2 = Router::new("owrt-migrate-kept");
    fs::write(r2.path("etc/config/shadowsocks-libev"), &libev).unwrap();
    let mine = "config server 'mine'\n\toption server '192.0.2.1'\n";
    r2.set_config(mine);
    let f = r2.uci_defaults();
    assert!(f.status.success());
    assert_eq!(r2.read("etc/config/shadowsocks-smol"), mine);
    assert!(
        r2.log().contains(
            "/etc/config/shadowsocks-smol was changed; /etc/config/shadowsocks-libev not migrated"
        ),
        "{}",
        r2.log()
    );
    // No libev config: nothing to do, exit 0.
    let r3 = Router::new("owrt-migrate-none");
    let f = r3.uci_defaults();
    assert!(f.status.success());
    assert_eq!(
        fs::read(r3.path("etc/config/shadowsocks-smol")).unwrap(),
        sample
    );
    assert_eq!(r3.log(), "");
}

/// ss-smol's own keys: plugin_args (a list), plugin_mode, fwmark in decimal, the limits,
/// ss-server's ban options and listen list; every one accepted by the binary.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn ss_smol_keys_reach_the_binary() {
    let _w = Watchdog::new("keys", TEST_LIMIT);
    require_tools(&["ip", "python3"]);
    let r = Router::new("owrt-keys");
    let plugin = write_script(&r.dir, "fake-plugin", PLUGIN);
    r.set_config(&format!(
        "
config server 'p'
	option server 'vpn.example.net'
	option server_port '8388'
	option key 'KSrI/Et4Ed0eXE1Y5hc0nvUjVpPJJP1EqHGEq9tl4mE='
	option method 'xchacha20-ietf-poly1305'
	option plugin '{plugin}'
	option plugin_opts 'mode=x'
	list plugin_args '--one'
	list plugin_args 'two words'
	option plugin_mode 'tcp_and_udp'

config ss_redir 'r'
	option server 'p'
	option local_address '::'
	option local_port '1100'
	option mode 'udp_only'
	option fwmark '255'
	option tcp_tproxy '1'
	option handshake_timeout '5'
	option max_conns '64'
	option pool_blocks '8'
	option udp_assocs '32'
	option nofile '4096'
	option mtu '1492'
	option no_delay '1'

config ss_server 's'
	list server '127.0.0.1'
	list server '::1'
	option server_port '8388'
	option password 'p'
	option method 'aes-128-gcm'
	option nameserver '127.0.0.1'
	option replay_capacity '1024'
	option ban_failures '0'
	option ban_window '30'
	option ban_time '300'
	option allow_private_targets '1'
	option local_ipv4_address '127.0.0.1'
	option mode 'tcp_and_udp'
	option verbose '1'

config ss_rules 'ss_rules'
	option redir_tcp 'r'
	option redir_udp 'r'
	list dst_ips_bypass '192.0.2.0/24'
	list dst_ips_bypass '2001:db8::/32'
	list src_ips_bypass '192.168.1.9'
	list src_ips_checkdst '192.168.1.0/24'
	option dst_ips_forward_file '/etc/forward.txt'
	option nft_udp_extra 'udp dport 53'
",
        plugin = plugin.display()
    ));
    fs::write(r.path("etc/forward.txt"), "198.51.100.0/24\n").unwrap();
    fs::write(r.path("etc/test-hosts"), "vpn.example.net 198.51.100.9\n").unwrap();
    r.init("start");
    let set = r.last_set();
    assert_eq!(instances(&set), ["ss_redir.r", "ss_server.s"]);
    assert_instance(&set, "ss_redir.r", false);
    assert_instance(&set, "ss_server.s", true);
    let plugin_json = format!("{:?}", plugin.display().to_string());
    let mut want = vec![
        ("server", "\"vpn.example.net\""),
        ("server_port", "8388"),
        ("key", "\"KSrI/Et4Ed0eXE1Y5hc0nvUjVpPJJP1EqHGEq9tl4mE=\""),
        ("method", "\"xchacha20-ietf-poly1305\""),
        ("plugin", &plugin_json),
        ("plugin_opts", "\"mode=x\""),
        ("plugin_args", "[\"--one\", \"two words\"]"),
        ("plugin_mode", "\"tcp_and_udp\""),
        ("local_address", "\"::\""),
        ("local_port", "1100"),
        ("mode", "\"udp_only\""),
        ("tcp_tproxy", "true"),
        ("fwmark", "255"),
        ("handshake_timeout", "5"),
        ("max_conns", "64"),
        ("pool_blocks", "8"),
        ("udp_assocs", "32"),
        ("nofile", "4096"),
        ("mtu", "1492"),
    ];
    want.extend(common_bools(&["no_delay"]));
    assert_eq!(flat(&r.conf_json("ss_redir.r")), expect(&want));
    let mut want = vec![
        ("server", "[\"127.0.0.1\", \"::1\"]"),
        ("server_port", "8388"),
        ("password", "\"p\""),
        ("method", "\"aes-128-gcm\""),
        ("nameserver", "\"127.0.0.1\""),
        ("replay_capacity", "1024"),
        ("ban_failures", "0"),
        ("ban_window", "30"),
        ("ban_time", "300"),
        ("allow_private_targets", "true"),
        ("local_ipv4_address", "\"127.0.0.1\""),
        ("mode", "\"tcp_and_udp\""),
    ];
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json("ss_server.s")), expect(&want));
    // redir 'r' is udp_only: UDP rules only, its fwmark let through.
    let want: Vec<String> = [
        "start",
        "--backend",
        "nft",
        "--udp-port",
        "1100",
        "--mark-out",
        "255",
        "--src-default",
        "checkdst",
        "--dst-default",
        "bypass",
        "--local-default",
        "bypass",
        "--src-bypass",
        "192.168.1.9",
        "--src-checkdst",
        "192.168.1.0/24",
        "--dst-bypass",
        "192.0.2.0/24 2001:db8::/32",
        "--dst-forward-file",
        "/etc/forward.txt",
        "--nft-udp-extra",
        "udp dport 53",
        "--server",
        "198.51.100.9",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(r.rules_calls(), vec![want]);
    assert!(
        r.log()
            .contains("ss_rules: redir_tcp 'r' has mode udp_only; no tcp rules"),
        "{}",
        r.log()
    );
    let ns = NetNs::new("owrt-keys", &[]);
    check_with_ss_smol(&r, &set, "ss_server.s", &ns);
    // ss-redir UDP-only says it listens on UDP; the check looks for the line and the port.
    check_with_ss_smol(&r, &set, "ss_redir.r", &ns);
}

// Shadowsocks 2022 keys: base64 PSKs of 32 bytes (aes-256, chacha20) and 16 bytes (aes-128).
const PSK32: &str = "CzPCEwMcpVOL2n/TzufzWieycmxJYRV18hA1iWI2Q0Y=";
const PSK32_ALICE: &str = "ThDD9m2YQI9LrO4sljfzSLEAJCt1D38wmmjk276O0do=";
const PSK32_BOB: &str = "M2S8S5tkYWhugq8CZiBXRoR5ELzASEHTi1tW9B2VcmY=";
const PSK16: &str = "hEQwYHHr7pAzYUXp3ctQug==";
const PSK16_USER: &str = "f/RCRAl1E5fN7iXeAQUOyQ==";

/// The three Shadowsocks 2022 methods pass validation, and their base64 PSK reaches the JSON
/// unchanged as `password` (or `key`), also a multi-user client's `SERVER_PSK:USER_PSK`; the
/// single-key client and server JSON is accepted by the binary.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn ss2022_sections_pass_the_psk_through() {
    let _w = Watchdog::new("ss2022", TEST_LIMIT);
    require_tools(&["ip"]);
    let r = Router::new("owrt-2022");
    r.set_config(&format!(
        "
config server 'k256'
	option server '127.0.0.1'
	option server_port '8388'
	option password '{PSK32}'
	option method '2022-blake3-aes-256-gcm'

config server 'kchacha'
	option server '127.0.0.1'
	option server_port '8389'
	option key '{PSK32_ALICE}'
	option method '2022-blake3-chacha20-poly1305'

config server 'kuser'
	option server '127.0.0.1'
	option server_port '8390'
	option password '{PSK16}:{PSK16_USER}'
	option method '2022-blake3-aes-128-gcm'

config ss_local 'l'
	option server 'k256'
	option local_address '127.0.0.1'
	option local_port '1080'

config ss_tunnel 't'
	option server 'kchacha'
	option local_address '127.0.0.1'
	option local_port '5353'
	option tunnel_address '1.1.1.1:53'
	option mode 'udp_only'

config ss_local 'u'
	option server 'kuser'
	option local_address '127.0.0.1'
	option local_port '1081'

config ss_server 's'
	option server '127.0.0.1'
	option server_port '8400'
	option password '{PSK32_BOB}'
	option method '2022-blake3-chacha20-poly1305'
	option mode 'tcp_and_udp'
"
    ));
    r.init("start");
    let set = r.last_set();
    assert_eq!(
        instances(&set),
        ["ss_local.l", "ss_local.u", "ss_server.s", "ss_tunnel.t"]
    );
    for inst in instances(&set) {
        assert_instance(&set, &inst, false);
    }
    assert_eq!(r.log(), "", "log lines for a valid config");
    let q = |s: &str| format!("{s:?}");
    let (psk32, alice, bob) = (q(PSK32), q(PSK32_ALICE), q(PSK32_BOB));
    let pair = q(&format!("{PSK16}:{PSK16_USER}"));
    let mut want = vec![
        ("server", "\"127.0.0.1\""),
        ("server_port", "8388"),
        ("password", psk32.as_str()),
        ("method", "\"2022-blake3-aes-256-gcm\""),
        ("local_address", "\"127.0.0.1\""),
        ("local_port", "1080"),
        ("mode", "\"tcp_only\""),
    ];
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json("ss_local.l")), expect(&want));
    let mut want = vec![
        ("server", "\"127.0.0.1\""),
        ("server_port", "8389"),
        ("key", alice.as_str()),
        ("method", "\"2022-blake3-chacha20-poly1305\""),
        ("local_address", "\"127.0.0.1\""),
        ("local_port", "5353"),
        ("tunnel_address", "\"1.1.1.1:53\""),
        ("mode", "\"udp_only\""),
    ];
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json("ss_tunnel.t")), expect(&want));
    let mut want = vec![
        ("server", "\"127.0.0.1\""),
        ("server_port", "8390"),
        ("password", pair.as_str()),
        ("method", "\"2022-blake3-aes-128-gcm\""),
        ("local_address", "\"127.0.0.1\""),
        ("local_port", "1081"),
        ("mode", "\"tcp_only\""),
    ];
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json("ss_local.u")), expect(&want));
    let mut want = vec![
        ("server", "\"127.0.0.1\""),
        ("server_port", "8400"),
        ("password", bob.as_str()),
        ("method", "\"2022-blake3-chacha20-poly1305\""),
        ("mode", "\"tcp_and_udp\""),
        ("allow_private_targets", "false"),
    ];
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json("ss_server.s")), expect(&want));
    // The single-key sections with the real binary (the multi-user client form `u` is checked
    // by the binary's own tests).
    let ns = NetNs::new("owrt-2022", &[]);
    for inst in ["ss_local.l", "ss_tunnel.t", "ss_server.s"] {
        check_with_ss_smol(&r, &set, inst, &ns);
    }
}

/// A multi-user (SIP023) ss_server: each `list users 'NAME:PSK'` entry becomes one
/// `{"name", "password"}` of the JSON's `users`, in order; a single `option users` works too;
/// `option user` (the account to run as) is a different option and stays what it was.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn multi_user_server_gets_the_users_array() {
    let _w = Watchdog::new("users", TEST_LIMIT);
    let r = Router::new("owrt-users");
    r.set_config(&format!(
        "
config ss_server 'multi'
	option server '127.0.0.1'
	option server_port '9002'
	option method '2022-blake3-aes-256-gcm'
	option password '{PSK32}'
	option user 'nobody'
	list users 'alice:{PSK32_ALICE}'
	list users 'bob:{PSK32_BOB}'

config ss_server 'one'
	option server_port '9003'
	option method '2022-blake3-aes-128-gcm'
	option password '{PSK16}'
	option users 'carol:{PSK16_USER}'
"
    ));
    r.init("start");
    let set = r.last_set();
    assert_eq!(instances(&set), ["ss_server.multi", "ss_server.one"]);
    assert_instance(&set, "ss_server.multi", false);
    assert_instance(&set, "ss_server.one", false);
    assert_eq!(r.log(), "", "log lines for a valid config");
    let q = |s: &str| format!("{s:?}");
    let users = format!(
        r#"[{{"name":"alice","password":{}}}, {{"name":"bob","password":{}}}]"#,
        q(PSK32_ALICE),
        q(PSK32_BOB)
    );
    let psk32 = q(PSK32);
    let mut want = vec![
        ("server", "\"127.0.0.1\""),
        ("server_port", "9002"),
        ("method", "\"2022-blake3-aes-256-gcm\""),
        ("password", psk32.as_str()),
        ("user", "\"nobody\""),
        ("users", users.as_str()),
        ("mode", "\"tcp_only\""),
        ("allow_private_targets", "false"),
    ];
    want.extend(common_bools(&[]));
    assert_eq!(flat(&r.conf_json("ss_server.multi")), expect(&want));
    let one = flat(&r.conf_json("ss_server.one"));
    assert_eq!(
        one["users"],
        format!(r#"[{{"name":"carol","password":{}}}]"#, q(PSK16_USER))
    );
    assert_eq!(one["password"], q(PSK16));
}

/// Bad `users` entries: no ':', an empty name, an empty key, users with a method that has no
/// multi-user servers. Each is one line naming section and option (by the entry's position:
/// the entry is not logged, it may be a key), that section is skipped, the good one runs.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn bad_users_entries_are_validation_errors() {
    let _w = Watchdog::new("bad users", TEST_LIMIT);
    let r = Router::new("owrt-bad-users");
    let section = |name: &str, port: u16, method: &str, users: &[&str]| {
        let mut s = format!(
            "\nconfig ss_server '{name}'\n\toption server_port '{port}'\n\toption method \
             '{method}'\n\toption password '{PSK32}'\n"
        );
        for u in users {
            s.push_str(&format!("\tlist users '{u}'\n"));
        }
        s
    };
    let aes = "2022-blake3-aes-256-gcm";
    let alice = format!("alice:{PSK32_ALICE}");
    let alice = alice.as_str();
    let config = [
        section("nocolon", 9001, aes, &[alice, PSK32_BOB]),
        section("noname", 9002, aes, &[&format!(":{PSK32_BOB}")]),
        section("nokey", 9003, aes, &[alice, "bob:"]),
        section("chacha", 9004, "2022-blake3-chacha20-poly1305", &[alice]),
        section("good", 9005, aes, &[alice]),
    ]
    .concat();
    r.set_config(&config);
    r.init("start");
    let set = r.last_set();
    assert_eq!(instances(&set), ["ss_server.good"]);
    let log = r.log();
    let want = "want NAME:PSK (a user name, ':', the user's base64 key)";
    for line in [
        format!("ss_server 'nocolon': option users entry 2 is not valid: {want}; it has no ':'"),
        format!("ss_server 'noname': option users entry 1 is not valid: {want}; the name is empty"),
        format!(
            "ss_server 'nokey': option users entry 2 is not valid: {want}; the key of 'bob' is empty"
        ),
        "ss_server 'chacha': option users needs method 2022-blake3-aes-128-gcm or \
         2022-blake3-aes-256-gcm (multi-user servers, SIP023)"
            .to_string(),
    ] {
        assert!(log.lines().any(|l| l == line), "missing log line\n  {line}\nin:\n{log}");
    }
    for s in ["nocolon", "noname", "nokey", "chacha"] {
        let line = format!("ss_server '{s}': invalid options; skipped");
        assert!(log.lines().any(|l| l == line), "{line} not in:\n{log}");
    }
    assert_eq!(
        log.lines().count(),
        8,
        "one line per error and section:\n{log}"
    );
    assert!(
        !log.contains(PSK32_BOB) && !log.contains(PSK32_ALICE),
        "a key in the log:\n{log}"
    );
}

/// The migration names stream ciphers only: a libev config with the Shadowsocks 2022 methods
/// (which libev never had, but a hand-edited one may) is migrated without a word about them.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn migration_does_not_flag_ss2022_methods() {
    let _w = Watchdog::new("migrate 2022", TEST_LIMIT);
    let r = Router::new("owrt-migrate-2022");
    let mut libev = String::new();
    for (name, method) in [
        ("a", "2022-blake3-aes-128-gcm"),
        ("b", "2022-blake3-aes-256-gcm"),
        ("c", "2022-blake3-chacha20-poly1305"),
        ("d", "rc4-md5"),
    ] {
        libev.push_str(&format!(
            "\nconfig server '{name}'\n\toption server '192.0.2.1'\n\toption method '{method}'\n"
        ));
    }
    fs::write(r.path("etc/config/shadowsocks-libev"), &libev).unwrap();
    r.uci_defaults();
    assert_eq!(r.read("etc/config/shadowsocks-smol"), libev);
    let log = r.log();
    assert!(
        log.contains("section d: method rc4-md5 is not supported"),
        "{log}"
    );
    assert!(!log.contains("2022-blake3"), "{log}");
}

/// `status`: each instance procd reports (from `ubus call service list`, read with jshn),
/// running with its pid or not, and whether the rules table is in the kernel.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn status_reports_instances_and_rules() {
    let _w = Watchdog::new("status", TEST_LIMIT);
    let r = Router::new("owrt-status");
    let f = r.run(&["/etc/init.d/shadowsocks-smol", "status"]);
    assert_eq!(f.status.code(), Some(3), "{}{}", f.stdout, f.stderr);
    assert_eq!(f.stdout, "no instances\nrules: not loaded\n");
    let (head, msg) = r.ubus_calls().pop().unwrap();
    assert_eq!(head, "call service list");
    assert_eq!(
        flat(&json::from_str(&msg).unwrap()),
        expect(&[("name", "\"shadowsocks-smol\"")])
    );

    fs::write(
        r.path("var/run/ubus-list.json"),
        r#"{"shadowsocks-smol": {"instances": {
            "ss_redir.ssr0": {"running": true, "pid": 4242, "command": ["/usr/bin/ss-redir", "-c", "/var/etc/shadowsocks-smol/ss_redir.ssr0.json"], "term_timeout": 5, "respawn": {"threshold": 3600, "timeout": 5, "retry": 0}},
            "ss_tunnel.dns": {"running": false, "command": ["/usr/bin/ss-tunnel", "-c", "/var/etc/shadowsocks-smol/ss_tunnel.dns.json", "-v"]}
        }}}"#,
    )
    .unwrap();
    fs::write(r.path("var/run/fake-nft-table"), "").unwrap();
    let f = r.run(&["/etc/init.d/shadowsocks-smol", "status"]);
    assert_eq!(f.status.code(), Some(5), "{}{}", f.stdout, f.stderr);
    assert_eq!(
        f.stdout,
        "ss_redir.ssr0: running (pid 4242)\nss_tunnel.dns: not running\n\
         rules: loaded (nft table inet ss_rules)\n"
    );
    assert_eq!(f.stderr, "");

    fs::write(
        r.path("var/run/ubus-list.json"),
        r#"{"shadowsocks-smol": {"instances": {"ss_local.l": {"running": true, "pid": 7, "command": ["/usr/bin/ss-local", "-c", "/var/etc/shadowsocks-smol/ss_local.l.json"]}}}}"#,
    )
    .unwrap();
    fs::remove_file(r.path("var/run/fake-nft-table")).unwrap();
    let f = r.run(&["/etc/init.d/shadowsocks-smol", "status"]);
    assert_eq!(f.status.code(), Some(0), "{}{}", f.stdout, f.stderr);
    assert_eq!(f.stdout, "ss_local.l: running (pid 7)\nrules: not loaded\n");
}

/// The README's "forward all" recipe, its `uci batch` block taken from the README as written,
/// applied to the shipped sample: the redir and the DNS tunnel run, the rules forward
/// everything, dnsmasq is pointed at the tunnel, and ss-smol takes both JSON files.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn readme_forward_all_recipe_works_on_the_sample() {
    let _w = Watchdog::new("README recipe", TEST_LIMIT);
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let batch = readme
        .split("uci batch <<'UCI'\n")
        .nth(1)
        .and_then(|rest| rest.split("\nUCI\n").next())
        .expect("the README's uci batch block");
    let r = Router::new("owrt-readme");
    fs::write(
        r.path("etc/config/dhcp"),
        "config dnsmasq\n\toption domainneeded '1'\n",
    )
    .unwrap();
    fs::write(r.path("etc/test-batch"), format!("{batch}\n")).unwrap();
    r.sh("uci batch < /etc/test-batch");
    r.init("start");
    let set = r.last_set();
    let tunnel = instance_named(&set, "ss_tunnel.cfg");
    let mut names = instances(&set);
    names.sort();
    assert_eq!(names, ["ss_redir.hi".to_string(), tunnel.clone()]);
    let redir = flat(&r.conf_json("ss_redir.hi"));
    assert_eq!(redir["server"], "\"203.0.113.5\"");
    assert_eq!(redir["fwmark"], "\"0xff\"");
    let t = flat(&r.conf_json(&tunnel));
    assert_eq!(t["tunnel_address"], "\"1.1.1.1:53\"");
    assert_eq!(t["local_port"], "8053");
    assert_eq!(t["mode"], "\"udp_only\"");
    let calls = r.rules_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = calls[0].join(" ");
    for part in [
        "--tcp-port 1100",
        "--udp-port 1100",
        "--mark-out 0xff",
        "--src-default forward",
        "--dst-default forward",
        "--local-default bypass",
        "--server 203.0.113.5",
    ] {
        assert!(call.contains(part), "{part:?} in ss-rules {call}");
    }
    assert!(
        !call.contains("--dst-forward") && !call.contains("--src-forward"),
        "the sample's lists were deleted: {call}"
    );
    // The redir listens on `::`: both families are diverted.
    assert!(!call.contains("--family"), "{call}");
    assert_eq!(redir["local_address"], "\"::\"");
    let dhcp = r.sh("uci show dhcp").stdout;
    for line in [
        "dhcp.@dnsmasq[0].noresolv='1'",
        "dhcp.@dnsmasq[0].server='127.0.0.1#8053'",
    ] {
        assert!(dhcp.lines().any(|l| l == line), "{line} in\n{dhcp}");
    }
    let ns = NetNs::new("owrt-readme", &[]);
    for inst in instances(&set) {
        check_with_ss_smol(&r, &set, &inst, &ns);
    }
}

/// A client naming several server sections (`list server`, which libev's package did not
/// have) gets the JSON's `servers` array: each usable section with its own method, password
/// (a 2022 key goes as the password) and plugin, its section name as remarks; a disabled one
/// is skipped with a line. `option server_list` passes the SIP008 file on, with or without
/// servers of the client's own. ss-smol starts on both JSONs.
#[test]
#[ignore = "needs root and the OpenWrt kit; bash tests/run-all.sh runs it"]
fn clients_with_several_servers_and_a_server_list() {
    let _w = Watchdog::new("several servers", TEST_LIMIT);
    require_tools(&["ip"]);
    let r = Router::new("owrt-servers");
    // An absolute path of the test's own: ss-smol reads the file itself when it starts.
    let list = r.path("etc/shadowsocks-smol/list.json");
    let list_path = list.to_string_lossy();
    r.set_config(&format!(
        "
config server 'hk'
	option server '192.0.2.10'
	option server_port '8388'
	option method 'aes-256-gcm'
	option password 'pw-hk'

config server 'jp'
	option server '192.0.2.11'
	option server_port '8389'
	option method '2022-blake3-aes-128-gcm'
	option key '{PSK16}'

config server 'old'
	option disabled '1'
	option server '192.0.2.12'
	option server_port '8390'
	option password 'x'

config ss_local 'multi'
	list server 'hk'
	list server 'jp'
	list server 'old'
	option local_port '1081'

config ss_tunnel 'listed'
	option server_list '{list_path}'
	option local_port '5353'
	option tunnel_address '192.0.2.53:53'
	option mode 'udp_only'
"
    ));
    fs::create_dir_all(r.path("etc/shadowsocks-smol")).unwrap();
    fs::write(
        &list,
        r#"{"version": 1, "servers": [{"server": "192.0.2.20", "server_port": 8388,
            "method": "chacha20-ietf-poly1305", "password": "listed"}]}"#,
    )
    .unwrap();
    r.init("start");
    let set = r.last_set();
    assert_eq!(instances(&set), ["ss_local.multi", "ss_tunnel.listed"]);
    assert_eq!(
        r.log(),
        "ss_local 'multi': its server 'old' is disabled; skipped\n",
        "log"
    );
    let multi = flat(&r.conf_json("ss_local.multi"));
    let q = |s: &str| format!("{s:?}");
    assert_eq!(
        multi["servers"],
        format!(
            // `render` writes an object's keys sorted.
            r#"[{{"method":"aes-256-gcm","password":"pw-hk","remarks":"hk","server":"192.0.2.10","server_port":8388}}, {{"method":"2022-blake3-aes-128-gcm","password":{},"remarks":"jp","server":"192.0.2.11","server_port":8389}}]"#,
            q(PSK16)
        )
    );
    assert!(
        !multi.contains_key("server") && !multi.contains_key("password"),
        "{multi:?}"
    );
    let listed = flat(&r.conf_json("ss_tunnel.listed"));
    assert_eq!(listed["server_list"], q(&list_path));
    assert!(!listed.contains_key("server"), "{listed:?}");
    let ns = NetNs::new("owrt-servers", &[]);
    for inst in instances(&set) {
        check_with_ss_smol(&r, &set, &inst, &ns);
    }
}
