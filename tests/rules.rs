//! `openwrt/files/ss-rules`, the transparent-proxy rule generator, run with the real tools:
//! each test makes its own network namespace, applies rules there with `ip netns exec`, reads
//! them back with nft / iptables-legacy-save / ipset / ip, and checks that `stop` removes all.
//!
//! The namespace is deleted by a guard, also when a test fails; nothing touches the host's
//! own firewall.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

const STEP: Duration = Duration::from_secs(30);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt/files/ss-rules")
}

/// `sh ss-rules ARGS` inside `ns` (or outside when `None`).
fn rules(ns: Option<&NetNs>, args: &[&str]) -> Finished {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = ns.command(Path::new("sh"));
            c.arg(script());
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.arg(script());
            c
        }
    };
    cmd.args(args);
    run_to_end("ss-rules", cmd, STEP)
}

fn rules_ok(ns: &NetNs, args: &[&str]) {
    let f = rules(Some(ns), args);
    assert!(
        f.status.success(),
        "ss-rules {}: {:?}\n{}",
        args.join(" "),
        f.status,
        f.stderr
    );
}

/// stdout of `prog ARGS` run inside `ns`; the exit status is not checked (listing something
/// absent fails, which callers test for by the output).
fn inside(ns: &NetNs, prog: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = ns.command(Path::new(prog));
    cmd.args(args);
    let f = run_to_end(prog, cmd, STEP);
    (f.status.success(), f.stdout)
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// The body of `set NAME { ... }` in `nft list table` output.
fn nft_set<'a>(table: &'a str, name: &str) -> &'a str {
    let start = table
        .find(&format!("set {name} {{"))
        .unwrap_or_else(|| panic!("no set {name} in:\n{table}"));
    let rest = &table[start..];
    &rest[..rest.find("\n\t}").unwrap_or(rest.len())]
}

/// Does the nft set hold `addr` (inside one of its ranges)?
fn in_set(ns: &NetNs, set: &str, addr: &str) -> bool {
    let elem = format!("{{ {addr} }}");
    inside(
        ns,
        "nft",
        &["get", "element", "inet", "ss_rules", set, &elem],
    )
    .0
}

fn ip_rules(ns: &NetNs, fam: &str) -> String {
    inside(ns, "ip", &[fam, "rule", "show"]).1
}

fn routes(ns: &NetNs, fam: &str) -> String {
    inside(ns, "ip", &[fam, "route", "show", "table", "100"]).1
}

fn assert_nothing_left(ns: &NetNs) {
    let (listed, out) = inside(ns, "nft", &["list", "table", "inet", "ss_rules"]);
    assert!(!listed, "table still there after stop:\n{out}");
    for fam in ["-4", "-6"] {
        let r = ip_rules(ns, fam);
        assert!(!r.contains("lookup 100"), "ip {fam} rule left:\n{r}");
        let rt = routes(ns, fam);
        assert!(rt.trim().is_empty(), "ip {fam} route table 100 left:\n{rt}");
    }
    for save in ["iptables-legacy-save", "ip6tables-legacy-save"] {
        let out = inside(ns, save, &[]).1;
        assert!(!out.contains("SS_RULES"), "{save} after stop:\n{out}");
    }
    let sets = inside(ns, "ipset", &["list", "-n"]).1;
    assert!(!sets.contains("ss_rules"), "ipsets after stop:\n{sets}");
}

fn tools() {
    require_tools(&[
        "ip",
        "nft",
        "iptables-legacy",
        "ip6tables-legacy",
        "iptables-legacy-save",
        "ip6tables-legacy-save",
        "ipset",
        "awk",
    ]);
}

fn list_file(dir: &TempDir) -> PathBuf {
    let path = dir.join("forward.txt");
    std::fs::write(
        &path,
        "# comment line\n\n198.51.100.0/24\n  2001:db8:1::/48   # trailing comment\n#203.0.113.9\n",
    )
    .unwrap();
    path
}

#[test]
#[ignore = "needs root, nft, iptables-legacy, ipset"]
fn nft_start_twice_stop_and_stop_again() {
    let _watchdog = Watchdog::new("ss-rules nft", Duration::from_secs(120));
    tools();
    let ns = NetNs::new("rules-nft", &[]);
    let dir = TempDir::new("rules-nft");
    let file = list_file(&dir);
    let file = file.to_str().unwrap();
    let args = [
        "start",
        "--tcp-port",
        "1081",
        "--udp-port",
        "1082",
        "--src-bypass",
        "192.0.2.7, 2001:db8::7,192.0.2.8",
        "--dst-bypass",
        "203.0.113.0/25 2001:db8:2::/64",
        "--dst-forward-file",
        file,
        "--server",
        "203.0.113.200,2001:db8:ffff::1",
        "--mark-out",
        "0xff",
        "--local-default",
        "checkdst",
    ];
    rules_ok(&ns, &args);
    rules_ok(&ns, &args);

    let (ok, ruleset) = inside(&ns, "nft", &["list", "ruleset"]);
    assert!(ok);
    assert_eq!(count(&ruleset, "table inet ss_rules"), 1, "{ruleset}");
    let (ok, t) = inside(&ns, "nft", &["list", "table", "inet", "ss_rules"]);
    assert!(ok, "no table inet ss_rules");

    let s = nft_set(&t, "ss_rules_src_bypass");
    assert!(s.contains("192.0.2.7") && s.contains("192.0.2.8"), "{s}");
    assert!(!s.contains("2001:db8"), "{s}");
    let s = nft_set(&t, "ss_rules6_src_bypass");
    assert!(s.contains("2001:db8::7") && !s.contains("192.0.2"), "{s}");
    let s = nft_set(&t, "ss_rules_dst_bypass");
    assert!(s.contains("203.0.113.0/25"), "{s}");
    let s = nft_set(&t, "ss_rules6_dst_bypass");
    assert!(s.contains("2001:db8:2::/64"), "{s}");
    let s = nft_set(&t, "ss_rules_dst_forward");
    assert!(
        s.contains("198.51.100.0/24") && !s.contains("203.0.113.9"),
        "{s}"
    );
    let s = nft_set(&t, "ss_rules6_dst_forward");
    assert!(s.contains("2001:db8:1::/48"), "{s}");
    let s = nft_set(&t, "ss_rules_server");
    assert!(s.contains("203.0.113.200"), "{s}");
    let s = nft_set(&t, "ss_rules6_server");
    assert!(s.contains("2001:db8:ffff::1"), "{s}");
    for name in ["src_forward", "src_checkdst"] {
        for fam in ["ss_rules_", "ss_rules6_"] {
            let s = nft_set(&t, &format!("{fam}{name}"));
            assert!(
                s.contains("flags interval") && s.contains("auto-merge"),
                "{s}"
            );
        }
    }
    // Asked by membership: auto-merge joins adjacent ranges (224/4 + 240/4 = 224/3).
    for (set, addr) in [
        ("ss_rules6_dst_bypass_", "ff02::1:2"),
        ("ss_rules6_dst_bypass_", "fe80::1"),
        ("ss_rules6_dst_bypass_", "fd00::1"),
        ("ss_rules6_dst_bypass_", "::1"),
        ("ss_rules6_dst_bypass_", "::ffff:1.2.3.4"),
        ("ss_rules_dst_bypass_", "10.1.2.3"),
        ("ss_rules_dst_bypass_", "127.0.0.1"),
        ("ss_rules_dst_bypass_", "172.31.0.1"),
        ("ss_rules_dst_bypass_", "192.168.1.1"),
        ("ss_rules_dst_bypass_", "169.254.1.1"),
        ("ss_rules_dst_bypass_", "100.64.0.1"),
        ("ss_rules_dst_bypass_", "224.0.0.251"),
        ("ss_rules_dst_bypass_", "255.255.255.255"),
        ("ss_rules_dst_bypass_", "0.0.0.0"),
    ] {
        assert!(in_set(&ns, set, addr), "{addr} not in {set}");
    }
    for (set, addr) in [
        ("ss_rules6_dst_bypass_", "2001:db8::1"),
        ("ss_rules6_dst_bypass_", "2606:4700::1"),
        ("ss_rules_dst_bypass_", "192.0.2.1"),
        ("ss_rules_dst_bypass_", "198.51.100.1"),
        ("ss_rules_dst_bypass_", "203.0.113.1"),
        ("ss_rules_dst_bypass_", "8.8.8.8"),
    ] {
        assert!(!in_set(&ns, set, addr), "{addr} in {set}");
    }
    assert!(t.contains("redirect to :1081"), "{t}");
    assert!(t.contains("tproxy to :1082"), "{t}");
    assert!(t.contains("socket transparent 1"), "{t}");
    assert!(t.contains("hook output"), "no local output chain: {t}");
    assert!(t.contains("meta mark 0x000000ff accept"), "{t}");

    for fam in ["-4", "-6"] {
        let r = ip_rules(&ns, fam);
        assert_eq!(count(&r, "fwmark 0x1 lookup 100"), 1, "ip {fam} rule:\n{r}");
        let rt = routes(&ns, fam);
        assert!(rt.contains("local default dev lo"), "ip {fam} route:\n{rt}");
    }

    rules_ok(&ns, &["stop"]);
    assert_nothing_left(&ns);
    rules_ok(&ns, &["stop"]);
    assert_nothing_left(&ns);
}

#[test]
#[ignore = "needs root, nft, iptables-legacy, ipset"]
fn nft_tcp_tproxy_family_and_extra_match() {
    let _watchdog = Watchdog::new("ss-rules nft tproxy", Duration::from_secs(120));
    tools();
    let ns = NetNs::new("rules-tp", &[]);
    rules_ok(
        &ns,
        &[
            "start",
            "--tcp-port",
            "1081",
            "--tcp-tproxy",
            "--family",
            "4",
            "--ifnames",
            "lo",
            "--nft-tcp-extra",
            "tcp dport { 80, 443 }",
            "--tproxy-mark",
            "0x10",
            "--route-table",
            "100",
        ],
    );
    let (_, t) = inside(&ns, "nft", &["list", "table", "inet", "ss_rules"]);
    assert!(t.contains("tproxy to :1081"), "{t}");
    assert!(!t.contains("redirect"), "{t}");
    assert!(t.contains("tcp dport { 80, 443 }"), "{t}");
    assert!(t.contains("meta nfproto ipv4"), "{t}");
    assert!(t.contains("iifname \"lo\""), "{t}");
    assert!(t.contains("meta mark set 0x00000010"), "{t}");
    assert!(ip_rules(&ns, "-4").contains("fwmark 0x10 lookup 100"));
    assert!(
        !ip_rules(&ns, "-6").contains("lookup 100"),
        "--family 4 set v6 rules"
    );
    // Without UDP nor tproxy no policy routing at all, and start replaces the earlier one.
    rules_ok(
        &ns,
        &["start", "--tcp-port", "1081", "--tproxy-mark", "0x10"],
    );
    assert!(!ip_rules(&ns, "-4").contains("lookup 100"));
    rules_ok(&ns, &["stop", "--tproxy-mark", "0x10"]);
    assert_nothing_left(&ns);
}

#[test]
#[ignore = "needs root, nft, iptables-legacy, ipset"]
fn iptables_start_twice_and_stop() {
    let _watchdog = Watchdog::new("ss-rules iptables", Duration::from_secs(120));
    tools();
    let ns = NetNs::new("rules-ipt", &[]);
    let dir = TempDir::new("rules-ipt");
    let file = list_file(&dir);
    let args = [
        "start",
        "--backend",
        "iptables",
        "--tcp-port",
        "1081",
        "--udp-port",
        "1082",
        "--src-forward",
        "192.0.2.9,2001:db8::9",
        "--dst-forward-file",
        file.to_str().unwrap(),
        "--server",
        "203.0.113.200",
        "--ifnames",
        "lo,eth9",
        "--local-default",
        "forward",
        "--mark-out",
        "0xff",
    ];
    rules_ok(&ns, &args);
    rules_ok(&ns, &args);
    let v4 = inside(&ns, "iptables-legacy-save", &[]).1;
    let v6 = inside(&ns, "ip6tables-legacy-save", &[]).1;
    for (what, save) in [("v4", &v4), ("v6", &v6)] {
        for chain in [
            ":SS_RULES_PRE_TCP",
            ":SS_RULES_FWD_TCP",
            ":SS_RULES_PRE_UDP",
            ":SS_RULES_LOCAL_OUT",
        ] {
            assert!(save.contains(chain), "{what} lacks {chain}:\n{save}");
        }
        assert_eq!(
            count(save, "-A OUTPUT -p tcp -j SS_RULES_LOCAL_OUT"),
            1,
            "{save}"
        );
        assert_eq!(
            count(save, "-i eth9 -p tcp -j SS_RULES_PRE_TCP"),
            1,
            "{save}"
        );
        assert!(save.contains("REDIRECT --to-ports 1081"), "{save}");
        assert!(save.contains("TPROXY --on-port 1082"), "{save}");
        assert!(save.contains("-m socket --transparent"), "{save}");
    }
    assert!(v6.contains("ss_rules6_dst_bypass_"), "{v6}");
    let list = inside(&ns, "ipset", &["list"]).1;
    for set in [
        "ss_rules_src_bypass",
        "ss_rules6_src_forward",
        "ss_rules_dst_forward",
        "ss_rules6_dst_bypass_",
        "ss_rules_server",
    ] {
        assert!(list.contains(&format!("Name: {set}\n")), "no ipset {set}");
    }
    let fwd6 = inside(&ns, "ipset", &["list", "ss_rules6_src_forward"]).1;
    assert!(
        fwd6.contains("2001:db8::9") && !fwd6.contains("192.0.2.9"),
        "{fwd6}"
    );
    let dst = inside(&ns, "ipset", &["list", "ss_rules_dst_forward"]).1;
    assert!(
        dst.contains("198.51.100.0/24") && !dst.contains("203.0.113.9"),
        "{dst}"
    );
    let res6 = inside(&ns, "ipset", &["list", "ss_rules6_dst_bypass_"]).1;
    assert!(
        res6.contains("ff00::/8") && res6.contains("fe80::/10"),
        "{res6}"
    );
    for fam in ["-4", "-6"] {
        assert_eq!(count(&ip_rules(&ns, fam), "lookup 100"), 1);
    }
    rules_ok(&ns, &["stop"]);
    assert_nothing_left(&ns);
    rules_ok(&ns, &["stop"]);
}

#[test]
#[ignore = "needs root, nft, iptables-legacy, ipset"]
fn switching_backend_leaves_one_copy() {
    let _watchdog = Watchdog::new("ss-rules switch", Duration::from_secs(120));
    tools();
    let ns = NetNs::new("rules-sw", &[]);
    rules_ok(
        &ns,
        &["start", "--backend", "iptables", "--udp-port", "1082"],
    );
    rules_ok(&ns, &["start", "--udp-port", "1082"]);
    assert!(!inside(&ns, "iptables-legacy-save", &[])
        .1
        .contains("SS_RULES"));
    assert!(!inside(&ns, "ipset", &["list", "-n"]).1.contains("ss_rules"));
    assert!(inside(&ns, "nft", &["list", "table", "inet", "ss_rules"]).0);
    rules_ok(
        &ns,
        &["start", "--backend", "iptables", "--udp-port", "1082"],
    );
    assert!(!inside(&ns, "nft", &["list", "table", "inet", "ss_rules"]).0);
    rules_ok(&ns, &["stop"]);
    assert_nothing_left(&ns);
}

#[test]
#[ignore = "needs root, nft, iptables-legacy, ipset"]
fn failed_apply_exits_1_and_leaves_nothing() {
    let _watchdog = Watchdog::new("ss-rules failure", Duration::from_secs(60));
    tools();
    let ns = NetNs::new("rules-fail", &[]);
    // An extra match nft cannot parse: the whole load is refused.
    let f = rules(
        Some(&ns),
        &[
            "start",
            "--tcp-port",
            "1081",
            "--nft-tcp-extra",
            "tcp dport {",
        ],
    );
    assert_eq!(f.status.code(), Some(1), "{}", f.stderr);
    assert!(f.stderr.contains("nft -c rejected"), "{}", f.stderr);
    assert_nothing_left(&ns);

    // Refused by the dry run, a bad start leaves an earlier good one as it was.
    rules_ok(&ns, &["start", "--tcp-port", "1081"]);
    let listed = inside(&ns, "nft", &["list", "table", "inet", "ss_rules"]);
    assert!(listed.0, "the good start loaded its table");
    let f = rules(
        Some(&ns),
        &[
            "start",
            "--tcp-port",
            "1082",
            "--nft-tcp-extra",
            "tcp dport {",
        ],
    );
    assert_eq!(f.status.code(), Some(1), "{}", f.stderr);
    assert_eq!(
        inside(&ns, "nft", &["list", "table", "inet", "ss_rules"]),
        listed,
        "the earlier rules after a refused start"
    );
    rules_ok(&ns, &["stop"]);
    assert_nothing_left(&ns);
}

#[test]
fn bad_options_exit_2_with_one_line_naming_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["start", "--tcp-port", "99999"], "--tcp-port"),
        (&["start", "--udp-port", "x"], "--udp-port"),
        (&["start", "--family", "5"], "--family"),
        (&["start", "--backend", "pf"], "--backend"),
        (&["start", "--src-default", "maybe"], "--src-default"),
        (&["start", "--dst-default", "checkdst"], "--dst-default"),
        (&["start", "--src-bypass", "192.0.2.300"], "--src-bypass"),
        (
            &["start", "--dst-forward", "2001:db8::/129"],
            "--dst-forward",
        ),
        (&["start", "--server", "example.com"], "--server"),
        (
            &["start", "--dst-bypass-file", "/nonexistent/x"],
            "--dst-bypass-file",
        ),
        (&["start", "--route-table", "254"], "--route-table"),
        (&["start", "--tproxy-mark", "0"], "--tproxy-mark"),
        (&["start", "--ifnames", "br lan;x"], "--ifnames"),
        (&["print", "--tcp-port"], "--tcp-port"),
        (&["print", "--no-such-option", "1"], "--no-such-option"),
        (
            &["print", "--udp-port", "2", "--mark-out", "1"],
            "--mark-out",
        ),
        (&["print", "--mark-out", "12ab"], "--mark-out"),
        (
            &[
                "print",
                "--backend",
                "iptables",
                "--nft-tcp-extra",
                "tcp dport 80",
            ],
            "--nft-tcp-extra",
        ),
        (
            &[
                "print",
                "--tcp-port",
                "1",
                "--tcp-tproxy",
                "--local-default",
                "forward",
            ],
            "--local-default",
        ),
    ];
    for (args, opt) in cases {
        let f = rules(None, args);
        assert_eq!(f.status.code(), Some(2), "{args:?}: {}", f.stderr);
        let lines: Vec<&str> = f.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", f.stderr);
        assert!(lines[0].contains(opt), "{args:?}: {}", f.stderr);
        assert!(f.stdout.is_empty(), "{args:?}: {}", f.stdout);
    }
    let dir = TempDir::new("rules-badfile");
    let path = dir.join("bad.txt");
    std::fs::write(&path, "198.51.100.0/24\nnot-an-address\n").unwrap();
    let f = rules(
        None,
        &["print", "--dst-forward-file", path.to_str().unwrap()],
    );
    assert_eq!(f.status.code(), Some(2), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    assert!(f.stderr.contains("--dst-forward-file") && f.stderr.contains("not-an-address"));
}

#[test]
fn print_applies_nothing_and_shows_both_backends() {
    // Not root-only: print must work for anyone, and applies nothing (no ip/nft needed).
    let f = rules(
        None,
        &[
            "print",
            "--tcp-port",
            "1081",
            "--udp-port",
            "1082",
            "--dst-forward",
            "198.51.100.1,2001:db8::1",
        ],
    );
    assert!(f.status.success(), "{}", f.stderr);
    assert!(f.stdout.contains("table inet ss_rules {"), "{}", f.stdout);
    assert!(
        f.stdout.contains("set ss_rules6_dst_bypass_"),
        "{}",
        f.stdout
    );
    assert!(f.stdout.contains("ff00::/8"), "{}", f.stdout);
    assert!(f.stdout.contains("redirect to :1081"), "{}", f.stdout);
    assert!(
        f.stdout.contains("meta mark set 1 tproxy to :1082"),
        "{}",
        f.stdout
    );
    let f = rules(
        None,
        &[
            "print",
            "--backend",
            "iptables",
            "--udp-port",
            "1082",
            "--family",
            "6",
        ],
    );
    assert!(f.status.success(), "{}", f.stderr);
    assert!(f
        .stdout
        .contains("create ss_rules6_dst_bypass_ hash:net family inet6"));
    assert!(f.stdout.contains("add ss_rules6_dst_bypass_ ff00::/8"));
    assert!(f.stdout.contains("ip6tables"), "{}", f.stdout);
    assert!(!f.stdout.contains("# iptables"), "{}", f.stdout);
}

#[test]
#[ignore = "needs root, nft, iptables-legacy, ipset"]
fn print_in_a_namespace_changes_nothing() {
    let _watchdog = Watchdog::new("ss-rules print", Duration::from_secs(60));
    tools();
    let ns = NetNs::new("rules-print", &[]);
    for backend in ["nft", "iptables"] {
        let f = rules(
            Some(&ns),
            &["print", "--backend", backend, "--udp-port", "1082"],
        );
        assert!(f.status.success(), "{}", f.stderr);
    }
    assert_nothing_left(&ns);
}

#[test]
#[ignore = "needs dash, busybox (OpenWrt's ash) and shellcheck; bash tests/run-all.sh runs it"]
fn script_is_posix_sh() {
    let path = script();
    require_tools(&["dash", "busybox", "shellcheck"]);
    let mut cmd = Command::new("shellcheck");
    cmd.args(["-s", "sh"]).arg(&path);
    let f = run_to_end("shellcheck", cmd, STEP);
    assert!(f.status.success(), "shellcheck:\n{}{}", f.stdout, f.stderr);
    for shell in ["sh", "dash", "busybox"] {
        let mut cmd = Command::new(shell);
        if shell == "busybox" {
            cmd.arg("sh");
        }
        cmd.arg("-n").arg(&path);
        let f = run_to_end(shell, cmd, STEP);
        assert!(f.status.success(), "{shell} -n: {}", f.stderr);
        // Running it too: the parse check alone misses bash-only builtins and expansions.
        let mut cmd = Command::new(shell);
        if shell == "busybox" {
            cmd.arg("sh");
        }
        cmd.arg(&path).args([
            "print",
            "--backend",
            "iptables",
            "--tcp-port",
            "1081",
            "--udp-port",
            "1082",
            "--ifnames",
            "br-lan",
            "--src-checkdst",
            "192.0.2.0/24,2001:db8::/48",
        ]);
        let f = run_to_end(shell, cmd, STEP);
        assert!(f.status.success(), "{shell}: {}", f.stderr);
        assert!(f
            .stdout
            .contains("add ss_rules6_src_checkdst 2001:db8::/48"));
        assert!(f.stderr.is_empty(), "{shell}: {}", f.stderr);
    }
}

/// Connects from inside `ns`: `true` when the handshake completed. Nothing listens on the
/// target port itself, so a completed handshake means the connection was redirected.
fn connects(ns: &NetNs, to: std::net::SocketAddr) -> bool {
    ns.run(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).is_ok())
}

#[test]
#[ignore = "needs root, nft, iptables-legacy, ipset"]
fn local_tcp_is_redirected_except_servers_and_bypassed() {
    let _watchdog = Watchdog::new("ss-rules redirect", Duration::from_secs(120));
    tools();
    // "Internet" addresses on the namespace's lo, so routes exist and nothing leaves it.
    let internet = [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "2001:db8::1",
        "2001:db8::2",
    ];
    let ns = NetNs::new("rules-redir", &internet);
    let port = 1081u16;
    let _listeners = ns.run(|| {
        [
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
            std::net::TcpListener::bind(("::1", port)).unwrap(),
        ]
    });
    let at = |a: &str| std::net::SocketAddr::new(a.parse().unwrap(), 80);
    for backend in ["nft", "iptables"] {
        assert!(!connects(&ns, at("203.0.113.1")), "redirected before start");
        rules_ok(
            &ns,
            &[
                "start",
                "--backend",
                backend,
                "--tcp-port",
                "1081",
                "--local-default",
                "forward",
                "--server",
                "203.0.113.2 2001:db8::2",
                "--dst-bypass",
                "203.0.113.3",
            ],
        );
        assert!(
            connects(&ns, at("203.0.113.1")),
            "{backend}: v4 not redirected"
        );
        assert!(
            connects(&ns, at("2001:db8::1")),
            "{backend}: v6 not redirected"
        );
        assert!(
            !connects(&ns, at("203.0.113.2")),
            "{backend}: v4 server redirected"
        );
        assert!(
            !connects(&ns, at("2001:db8::2")),
            "{backend}: v6 server redirected"
        );
        assert!(
            !connects(&ns, at("203.0.113.3")),
            "{backend}: --dst-bypass redirected"
        );
        assert!(
            !connects(&ns, at("127.0.0.1")),
            "{backend}: reserved redirected"
        );
        rules_ok(&ns, &["stop"]);
        assert!(
            !connects(&ns, at("203.0.113.1")),
            "{backend}: redirected after stop"
        );
        assert_nothing_left(&ns);
    }
}
