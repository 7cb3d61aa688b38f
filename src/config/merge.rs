//! Command line over config file over libev's defaults, into one checked `Config`.
//!
//! Values were already checked one by one where they were read (`cli`, `file`); this layer
//! decides what each mode requires, which source wins, and derives the master key. Every
//! failure is one line that says what is missing or wrong and how to give it.

use super::cli::Cli;
use super::file::{self, FileConfig};
use super::value::{self, HostPort, Secret};
use super::{Config, Limits, Mode, ServerAddr, ServerOpts, Transport};
use crate::policy::ban::BanConfig;
use crate::proto::address::Address;
use crate::proto::cipher::{MasterKey, Method};
use argh::FromArgs;
use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

/// Why no `Config` came out of `load`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// `-h`/`--help`: print this to stdout and exit 0.
    Help(String),
    /// A bad or missing setting: one line (without the program name) for stderr; exit non-zero.
    Invalid(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Help(s) | LoadError::Invalid(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for LoadError {}

/// libev's defaults.
const DEFAULT_TIMEOUT_SECS: u64 = 60;
const DEFAULT_LOCAL_ADDR: &str = "127.0.0.1";
const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0";

/// Parses `args` (without argv[0]) for `mode`, reads the `-c` file if any, and validates.
/// `program` is the name shown in usage text. Config-file warnings are logged with `log::warn!`.
pub fn load(mode: Mode, program: &str, args: &[&str]) -> Result<Config, LoadError> {
    let cli = Cli::from_args(&[program], args).map_err(|e| match e.status {
        Ok(()) => LoadError::Help(e.output),
        Err(()) => LoadError::Invalid(format!("{} (see {program} --help)", one_line(&e.output))),
    })?;
    let file = match &cli.config {
        Some(path) => {
            let fc = file::read_config_file(path).map_err(LoadError::Invalid)?;
            for w in &fc.warnings {
                log::warn!("config {}: {w}", path.display());
            }
            for w in &fc.ignored {
                log::debug!("config {}: {w}", path.display());
            }
            Some(fc)
        }
        None => None,
    };
    build(mode, &cli, file.as_ref()).map_err(LoadError::Invalid)
}

/// argh's errors can span lines ("Required options…", "Did you mean…"); we promise one.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Names a setting the way the user would look for it, for messages about missing values.
fn both(flag: &str, key: &str) -> String {
    format!("{flag} or \"{key}\" in the config file")
}

/// Merges and validates. Pure (no I/O, no logging) so tests can drive it.
pub fn build(mode: Mode, cli: &Cli, fc: Option<&FileConfig>) -> Result<Config, String> {
    let empty = FileConfig::default();
    let fc = fc.unwrap_or(&empty);
    let path = cli.config.as_deref().unwrap_or(Path::new("(none)"));
    let in_file = |key: &str| format!("\"{key}\" in config {}", path.display());

    // Method and key.
    let method = match cli.encrypt_method.as_deref().or(fc.method.as_deref()) {
        Some(name) => Method::from_name(name).map_err(|e| e.to_string())?,
        None => Method::default(),
    };
    let key = master_key(method, cli, fc, &in_file)?;

    // Servers: remote servers for clients, listen addresses for ss-server.
    let hosts: Vec<HostPort> = if !cli.server.is_empty() {
        cli.server.clone()
    } else {
        fc.server.clone()
    };
    let server_port = cli.server_port.or(fc.server_port);
    let hosts = if hosts.is_empty() {
        if mode != Mode::Server {
            return Err(format!(
                "no server given: use {} (and -p PORT)",
                both("-s HOST", "server")
            ));
        }
        vec![HostPort {
            host: DEFAULT_LISTEN_ADDR.into(),
            port: None,
        }]
    } else {
        hosts
    };
    let mut servers = Vec::with_capacity(hosts.len());
    for h in hosts {
        let port = match h.port.or(server_port) {
            Some(p) => p,
            None if mode == Mode::Server => {
                return Err(format!(
                    "no port to listen on: use {}",
                    both("-p PORT", "server_port")
                ))
            }
            None => {
                return Err(format!(
                    "no port for server {}: use {} (or HOST:PORT)",
                    h.host,
                    both("-p PORT", "server_port")
                ))
            }
        };
        servers.push(ServerAddr { host: h.host, port });
    }

    // Local side.
    let local_port = match cli.local_port.or(fc.local_port) {
        Some(p) => p,
        None if mode == Mode::Server => 0,
        None => {
            return Err(format!(
                "no local port to listen on: use {}",
                both("-l PORT", "local_port")
            ))
        }
    };
    let local_address = cli.local_address.clone().or(fc.local_address.clone());
    let (local_addr, outbound_bind_v4, outbound_bind_v6) = if mode == Mode::Server {
        let (v4, v6) = outbound_binds(cli, fc, &in_file)?;
        (DEFAULT_LOCAL_ADDR.to_string(), v4, v6)
    } else {
        let addr = local_address.unwrap_or_else(|| DEFAULT_LOCAL_ADDR.into());
        (addr, None, None)
    };

    let tunnel_addr = if mode == Mode::Tunnel {
        let (text, source) = match (&cli.tunnel_address, &fc.tunnel_address) {
            (Some(t), _) => (t.as_str(), "-L".to_string()),
            (None, Some(t)) => (t.as_str(), in_file("tunnel_address")),
            (None, None) => {
                return Err(format!(
                    "ss-tunnel needs a destination: use {}",
                    both("-L HOST:PORT", "tunnel_address")
                ))
            }
        };
        match Address::from_host_port(text) {
            Some(a) if a.port() != 0 => Some(a),
            _ => {
                return Err(format!(
                    "{source} must be HOST:PORT or [IPv6]:PORT with a port 1-65535, got {text:?}"
                ))
            }
        }
    } else {
        None
    };

    let transport = match (cli.tcp_and_udp, cli.udp_only) {
        (true, true) => {
            return Err("-u (TCP and UDP) and -U (UDP only) contradict each other: use one".into())
        }
        (true, false) => Transport::TcpAndUdp,
        (false, true) => Transport::UdpOnly,
        (false, false) => fc.mode.unwrap_or_default(),
    };

    let nameservers = if mode == Mode::Server {
        let list: Vec<&str> = if !cli.nameserver.is_empty() {
            cli.nameserver
                .iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        } else {
            fc.nameserver.iter().map(String::as_str).collect()
        };
        let mut out = Vec::with_capacity(list.len());
        for ns in list {
            out.push(value::parse_nameserver(ns).map_err(|e| format!("-d {ns:?} {e}"))?);
        }
        out
    } else {
        Vec::new()
    };

    let defaults = Limits::default();
    let limits = Limits {
        max_conns: cli.max_conns.or(fc.max_conns).unwrap_or(defaults.max_conns),
        pool_blocks: cli
            .pool_blocks
            .or(fc.pool_blocks)
            .unwrap_or(defaults.pool_blocks),
        udp_assocs: cli
            .udp_assocs
            .or(fc.udp_assocs)
            .unwrap_or(defaults.udp_assocs),
    };

    let flag = |c: bool, f: Option<bool>| c || f.unwrap_or(false);
    let server = {
        let d = ServerOpts::default();
        let secs = |c: Option<u64>, f: Option<u64>, default: Duration| {
            c.or(f).map_or(default, Duration::from_secs)
        };
        ServerOpts {
            replay_capacity: cli
                .replay_capacity
                .or(fc.replay_capacity)
                .unwrap_or(d.replay_capacity),
            ban: BanConfig {
                failures: cli
                    .ban_failures
                    .or(fc.ban_failures)
                    .unwrap_or(d.ban.failures),
                window: secs(cli.ban_window, fc.ban_window, d.ban.window),
                duration: secs(cli.ban_time, fc.ban_time, d.ban.duration),
                capacity: d.ban.capacity,
            },
            allow_private_targets: flag(cli.allow_private_targets, fc.allow_private_targets),
        }
    };
    Ok(Config {
        mode,
        servers,
        method,
        key,
        local_addr,
        local_port,
        tunnel_addr,
        transport,
        timeout: Duration::from_secs(cli.timeout.or(fc.timeout).unwrap_or(DEFAULT_TIMEOUT_SECS)),
        fast_open: flag(cli.fast_open, fc.fast_open),
        no_delay: flag(cli.no_delay, fc.no_delay),
        reuse_port: flag(cli.reuse_port, fc.reuse_port),
        ipv6_first: flag(cli.ipv6_first, fc.ipv6_first),
        tcp_tproxy: flag(cli.tcp_tproxy, fc.tcp_tproxy),
        // 0 is libev's "leave the limit alone".
        nofile: cli.nofile.or(fc.nofile).filter(|&n| n != 0),
        user: cli.user.clone().or(fc.user.clone()),
        pid_file: cli.pid_file.clone(),
        interface: cli.interface.clone(),
        // A zero mark is no mark.
        fwmark: cli.fwmark.or(fc.fwmark).filter(|&m| m != 0),
        mtu: cli.mtu.or(fc.mtu).unwrap_or(0),
        verbose: flag(cli.verbose, fc.verbose),
        use_syslog: flag(cli.use_syslog, fc.use_syslog),
        plugin: cli
            .plugin
            .clone()
            .filter(|s| !s.is_empty())
            .or(fc.plugin.clone()),
        plugin_opts: cli
            .plugin_opts
            .clone()
            .filter(|s| !s.is_empty())
            .or(fc.plugin_opts.clone()),
        outbound_bind_v4,
        outbound_bind_v6,
        nameservers,
        limits,
        server,
    })
}

/// The command line beats the file as a whole: a `-k` password replaces the file's key. Within
/// one source a key beats a password, as in libev.
fn master_key(
    method: Method,
    cli: &Cli,
    fc: &FileConfig,
    in_file: &dyn Fn(&str) -> String,
) -> Result<MasterKey, String> {
    enum Cred<'a> {
        Key(&'a Secret, String),
        Password(&'a Secret),
    }
    let cred = if let Some(k) = &cli.key {
        Cred::Key(k, "--key".into())
    } else if let Some(p) = &cli.password {
        Cred::Password(p)
    } else if let Some(k) = &fc.key {
        Cred::Key(k, in_file("key"))
    } else if let Some(p) = &fc.password {
        Cred::Password(p)
    } else {
        return Err(
            "no password: use -k PASSWORD or --key BASE64, or \"password\" or \"key\" \
                    in the config file"
                .into(),
        );
    };
    match cred {
        Cred::Password(p) => Ok(MasterKey::from_password(method, p.expose().as_bytes())),
        Cred::Key(k, source) => {
            let n = method.key_len();
            let Some(bytes) = value::decode_base64_key(k.expose()) else {
                return Err(format!(
                    "{source} is not valid base64; for {} generate one with `openssl rand -base64 \
                     {n}`",
                    method.name()
                ));
            };
            MasterKey::from_bytes(method, &bytes).ok_or_else(|| {
                format!(
                    "{source} decodes to {} bytes but {} needs {n}; generate one with `openssl \
                     rand -base64 {n}`",
                    bytes.len(),
                    method.name()
                )
            })
        }
    }
}

/// ss-server's source addresses for outgoing connections, one per family: `-b` (either family),
/// else `local_ipv4_address`/`local_ipv6_address`, else `local_address` from the file.
fn outbound_binds(
    cli: &Cli,
    fc: &FileConfig,
    in_file: &dyn Fn(&str) -> String,
) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), String> {
    let ip = |text: &Option<String>, source: String| -> Result<Option<IpAddr>, String> {
        match text {
            None => Ok(None),
            Some(t) => t.parse::<IpAddr>().map(Some).map_err(|_| {
                format!("{source} must be an IP address (the source of outgoing connections), got {t:?}")
            }),
        }
    };
    let cli_b = ip(&cli.local_address, "-b".into())?;
    let file_any = ip(&fc.local_address, in_file("local_address"))?;
    let file_v4 = ip(&fc.local_ipv4_address, in_file("local_ipv4_address"))?;
    let file_v6 = ip(&fc.local_ipv6_address, in_file("local_ipv6_address"))?;
    if let Some(IpAddr::V6(_)) = file_v4 {
        return Err(format!(
            "{} must be an IPv4 address",
            in_file("local_ipv4_address")
        ));
    }
    if let Some(IpAddr::V4(_)) = file_v6 {
        return Err(format!(
            "{} must be an IPv6 address",
            in_file("local_ipv6_address")
        ));
    }
    let pick_v4 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V4(v4)) => Some(v4),
        _ => None,
    };
    let pick_v6 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V6(v6)) => Some(v6),
        _ => None,
    };
    let (v4, v6) = match cli_b {
        Some(b) => (pick_v4(Some(b)), pick_v6(Some(b))),
        None => (
            pick_v4(file_v4).or(pick_v4(file_any)),
            pick_v6(file_v6).or(pick_v6(file_any)),
        ),
    };
    Ok((v4, v6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse_json_config;

    fn cli(args: &[&str]) -> Cli {
        match Cli::from_args(&["ss-local"], args) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {}", e.output),
        }
    }

    fn ok(mode: Mode, args: &[&str], json: Option<&str>) -> Config {
        let fc = json.map(|j| parse_json_config(j).unwrap());
        match build(mode, &cli(args), fc.as_ref()) {
            Ok(c) => c,
            Err(e) => panic!("{args:?} {json:?}: {e}"),
        }
    }

    fn err(mode: Mode, args: &[&str], json: Option<&str>) -> String {
        let fc = json.map(|j| parse_json_config(j).unwrap());
        match build(mode, &cli(args), fc.as_ref()) {
            Ok(c) => panic!("{args:?} {json:?}: accepted {c:?}"),
            Err(e) => e,
        }
    }

    const MIN: &[&str] = &["-s", "203.0.113.1", "-p", "8388", "-l", "1080", "-k", "pw"];

    #[test]
    fn defaults_like_libev() {
        let c = ok(Mode::Local, MIN, None);
        assert_eq!(c.method, Method::ChaCha20Poly1305);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.local_addr, "127.0.0.1");
        assert_eq!(c.transport, Transport::TcpOnly);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(
            c.servers,
            vec![ServerAddr {
                host: "203.0.113.1".into(),
                port: 8388
            }]
        );
        assert_eq!(
            c.key,
            MasterKey::from_password(Method::ChaCha20Poly1305, b"pw")
        );
        assert!(!c.fast_open && !c.verbose && !c.use_syslog && c.tunnel_addr.is_none());
        assert_eq!((c.nofile, c.fwmark, c.mtu), (None, None, 0));
    }

    #[test]
    fn cli_overrides_file() {
        let json = r#"{"server": ["198.51.100.7", "198.51.100.8"], "server_port": 1,
            "local_port": 2, "local_address": "0.0.0.0", "password": "filepw",
            "method": "aes-128-gcm", "timeout": 5, "mode": "udp_only", "mtu": 1400,
            "fwmark": 7, "max_conns": 9}"#;
        let from_file = ok(Mode::Redir, &[], Some(json));
        assert_eq!(from_file.servers.len(), 2);
        assert_eq!(from_file.servers[1].port, 1);
        assert_eq!(from_file.local_port, 2);
        assert_eq!(from_file.local_addr, "0.0.0.0");
        assert_eq!(from_file.method, Method::Aes128Gcm);
        assert_eq!(from_file.timeout, Duration::from_secs(5));
        assert_eq!(from_file.transport, Transport::UdpOnly);
        assert_eq!((from_file.mtu, from_file.fwmark), (1400, Some(7)));
        assert_eq!(from_file.limits.max_conns, 9);

        let c = ok(
            Mode::Redir,
            &[
                "-s",
                "203.0.113.9",
                "-p",
                "3",
                "-l",
                "4",
                "-b",
                "192.0.2.1",
                "-k",
                "clipw",
                "-m",
                "aes-256-gcm",
                "-t",
                "7",
                "-u",
                "--mtu",
                "1500",
                "--fwmark",
                "0",
                "--max-conns",
                "11",
            ],
            Some(json),
        );
        assert_eq!(
            c.servers,
            vec![ServerAddr {
                host: "203.0.113.9".into(),
                port: 3
            }]
        );
        assert_eq!(c.local_port, 4);
        assert_eq!(c.local_addr, "192.0.2.1");
        assert_eq!(c.method, Method::Aes256Gcm);
        assert_eq!(c.key, MasterKey::from_password(Method::Aes256Gcm, b"clipw"));
        assert_eq!(c.timeout, Duration::from_secs(7));
        assert_eq!(c.transport, Transport::TcpAndUdp);
        assert_eq!((c.mtu, c.fwmark), (1500, None));
        assert_eq!(c.limits.max_conns, 11);
    }

    #[test]
    fn per_server_ports() {
        let c = ok(
            Mode::Local,
            &[
                "-s",
                "a.example:1",
                "-s",
                "b.example",
                "-p",
                "2",
                "-l",
                "3",
                "-k",
                "x",
            ],
            None,
        );
        let ports: Vec<u16> = c.servers.iter().map(|s| s.port).collect();
        assert_eq!(ports, vec![1, 2]);
        // Every server has its own port: no -p needed.
        ok(
            Mode::Local,
            &["-s", "a.example:1", "-l", "3", "-k", "x"],
            None,
        );
    }

    #[test]
    fn missing_settings_name_the_fix() {
        let e = err(Mode::Local, &["-p", "1", "-l", "2", "-k", "x"], None);
        assert!(e.starts_with("no server given: use -s HOST"), "{e}");
        let e = err(Mode::Local, &["-s", "h", "-l", "2", "-k", "x"], None);
        assert!(e.contains("-p PORT or \"server_port\""), "{e}");
        let e = err(Mode::Local, &["-s", "h", "-p", "1", "-k", "x"], None);
        assert!(e.contains("-l PORT or \"local_port\""), "{e}");
        let e = err(Mode::Local, &["-s", "h", "-p", "1", "-l", "2"], None);
        assert!(
            e.starts_with("no password: use -k PASSWORD or --key BASE64"),
            "{e}"
        );
        let e = err(Mode::Tunnel, MIN, None);
        assert!(e.contains("-L HOST:PORT or \"tunnel_address\""), "{e}");
        let e = err(Mode::Server, &["-k", "x"], None);
        assert!(e.contains("no port to listen on"), "{e}");
        let e = err(Mode::Local, &[MIN, &["-u", "-U"]].concat(), None);
        assert!(e.contains("-u") && e.contains("-U"), "{e}");
    }

    #[test]
    fn method_errors() {
        let e = err(Mode::Local, &[MIN, &["-m", "rc4-md5"]].concat(), None);
        assert!(e.contains("stream cipher"), "{e}");
        let e = err(Mode::Local, &[MIN, &["-m", "nope"]].concat(), None);
        assert!(e.starts_with("unknown method 'nope'"), "{e}");
        let e = err(
            Mode::Local,
            &["-l", "1", "-s", "h", "-p", "1"],
            Some(r#"{"password": "x", "method": "2022-blake3-aes-128-gcm"}"#),
        );
        assert!(e.contains("2022"), "{e}");
    }

    #[test]
    fn base64_keys() {
        let raw: Vec<u8> = (0u8..32).map(|i| 0xf0 ^ i.wrapping_mul(29)).collect();
        let std = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw);
        let url = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw);
        let base = ["-s", "h", "-p", "1", "-l", "2"];
        for k in [&std, &url] {
            let c = ok(Mode::Local, &[&base[..], &["--key", k]].concat(), None);
            assert_eq!(c.key.as_bytes(), &raw[..]);
        }
        // Key wins over password in the same source.
        let c = ok(
            Mode::Local,
            &[&base[..], &["--key", &std, "-k", "pw"]].concat(),
            None,
        );
        assert_eq!(c.key.as_bytes(), &raw[..]);
        let json = format!(r#"{{"key": "{url}", "password": "pw"}}"#);
        let c = ok(Mode::Local, &base, Some(&json));
        assert_eq!(c.key.as_bytes(), &raw[..]);
        // A command-line password beats the file's key.
        let c = ok(
            Mode::Local,
            &[&base[..], &["-k", "pw"]].concat(),
            Some(&json),
        );
        assert_eq!(
            c.key,
            MasterKey::from_password(Method::ChaCha20Poly1305, b"pw")
        );

        let e = err(
            Mode::Local,
            &[&base[..], &["--key", &std, "-m", "aes-128-gcm"]].concat(),
            None,
        );
        assert_eq!(
            e,
            "--key decodes to 32 bytes but aes-128-gcm needs 16; generate one with `openssl rand \
             -base64 16`"
        );
        let e = err(Mode::Local, &[&base[..], &["--key", "!!!"]].concat(), None);
        assert!(e.starts_with("--key is not valid base64"), "{e}");
        let e = err(Mode::Local, &base, Some(r#"{"key": "AAAA"}"#));
        assert!(e.starts_with("\"key\" in config"), "{e}");
        assert!(!e.contains("AAAA"));
    }

    #[test]
    fn tunnel_address() {
        let c = ok(
            Mode::Tunnel,
            &[MIN, &["-L", "192.0.2.53:53"]].concat(),
            None,
        );
        assert_eq!(c.tunnel_addr, Address::from_host_port("192.0.2.53:53"));
        let c = ok(
            Mode::Tunnel,
            MIN,
            Some(r#"{"tunnel_address": "dns.example:853"}"#),
        );
        assert_eq!(c.tunnel_addr.map(|a| a.port()), Some(853));
        let e = err(Mode::Tunnel, &[MIN, &["-L", "192.0.2.53"]].concat(), None);
        assert!(e.starts_with("-L must be HOST:PORT"), "{e}");
        let e = err(Mode::Tunnel, &[MIN, &["-L", "h:0"]].concat(), None);
        assert!(e.starts_with("-L must be"), "{e}");
        // Other modes ignore it, as libev does.
        assert!(ok(Mode::Local, &[MIN, &["-L", "x"]].concat(), None)
            .tunnel_addr
            .is_none());
    }

    #[test]
    fn server_mode() {
        let c = ok(Mode::Server, &["-p", "8388", "-k", "x"], None);
        assert_eq!(
            c.servers,
            vec![ServerAddr {
                host: "0.0.0.0".into(),
                port: 8388
            }]
        );
        assert_eq!(c.local_port, 0);
        assert_eq!((c.outbound_bind_v4, c.outbound_bind_v6), (None, None));
        let c = ok(
            Mode::Server,
            &[
                "-k",
                "x",
                "-d",
                "192.0.2.1,192.0.2.2:5353",
                "-b",
                "2001:db8::2",
            ],
            Some(
                r#"{"server": ["::", "0.0.0.0"], "server_port": 443,
                     "local_ipv4_address": "192.0.2.9", "local_address": "192.0.2.10"}"#,
            ),
        );
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[0].host, "::");
        assert_eq!(c.nameservers.len(), 2);
        assert_eq!(c.nameservers[1].port(), 5353);
        // -b replaces the file's bind addresses entirely.
        assert_eq!(c.outbound_bind_v4, None);
        assert_eq!(c.outbound_bind_v6, Some("2001:db8::2".parse().unwrap()));
        let c = ok(
            Mode::Server,
            &["-k", "x", "-p", "1"],
            Some(
                r#"{"local_ipv4_address": "192.0.2.9", "local_address": "2001:db8::3",
                     "nameserver": "192.0.2.53"}"#,
            ),
        );
        assert_eq!(c.outbound_bind_v4, Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(c.outbound_bind_v6, Some("2001:db8::3".parse().unwrap()));
        assert_eq!(c.nameservers, vec!["192.0.2.53:53".parse().unwrap()]);
        let e = err(
            Mode::Server,
            &["-k", "x", "-p", "1", "-b", "host.example"],
            None,
        );
        assert!(e.starts_with("-b must be an IP address"), "{e}");
        let e = err(
            Mode::Server,
            &["-k", "x", "-p", "1", "-d", "dns.example"],
            None,
        );
        assert!(e.starts_with("-d \"dns.example\""), "{e}");
    }

    #[test]
    fn server_defences() {
        let c = ok(Mode::Server, &["-p", "8388", "-k", "x"], None);
        assert_eq!(c.server, ServerOpts::default());
        assert_eq!(c.server.replay_capacity, 65_536);
        assert_eq!(
            c.server.ban,
            BanConfig {
                failures: 20,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(120),
                capacity: 4096
            }
        );
        assert!(!c.server.allow_private_targets);

        let json = r#"{"replay_capacity": 1000, "ban_failures": 5, "ban_window": 10,
            "ban_time": 3600, "allow_private_targets": true}"#;
        let c = ok(Mode::Server, &["-p", "1", "-k", "x"], Some(json));
        assert_eq!(c.server.replay_capacity, 1000);
        assert_eq!(c.server.ban.failures, 5);
        assert_eq!(c.server.ban.window, Duration::from_secs(10));
        assert_eq!(c.server.ban.duration, Duration::from_secs(3600));
        assert!(c.server.allow_private_targets);

        // Flags override the file one by one; a file's `false` cannot undo a flag.
        let c = ok(
            Mode::Server,
            &[
                "-p",
                "1",
                "-k",
                "x",
                "--ban-failures",
                "0",
                "--ban-time",
                "7",
                "--replay-capacity",
                "2000",
            ],
            Some(json),
        );
        assert_eq!(c.server.replay_capacity, 2000);
        assert_eq!(c.server.ban.failures, 0);
        assert_eq!(c.server.ban.window, Duration::from_secs(10));
        assert_eq!(c.server.ban.duration, Duration::from_secs(7));
        let c = ok(
            Mode::Server,
            &["-p", "1", "-k", "x", "--allow-private-targets"],
            Some(r#"{"allow_private_targets": false}"#),
        );
        assert!(c.server.allow_private_targets);
    }

    #[test]
    fn load_end_to_end() {
        let path = std::env::temp_dir().join(format!("ss-smol-merge-{}.json", std::process::id()));
        std::fs::write(
            &path,
            "{ // libev style\n \"server\": \"203.0.113.1\", \"server_port\": \"8388\",\n \
             \"local_port\": 1080, \"password\": \"pw\", \"nonsense\": 1 }",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = load(Mode::Local, "ss-local", &["-c", p, "-v"]).unwrap();
        assert_eq!(c.servers[0].port, 8388);
        assert!(c.verbose);
        assert!(!format!("{c:?}").contains("pw\""));

        std::fs::write(&path, "{\"local_port\": true}").unwrap();
        let e = load(Mode::Local, "ss-local", &["-c", p]).unwrap_err();
        assert_eq!(
            e,
            LoadError::Invalid(format!(
                "config {p}: \"local_port\" must be a port number (1-65535), got true"
            ))
        );
        std::fs::remove_file(&path).unwrap();

        match load(Mode::Local, "ss-local", &["--help"]) {
            Err(LoadError::Help(h)) => assert!(h.starts_with("Usage: ss-local")),
            other => panic!("{other:?}"),
        }
        match load(Mode::Local, "ss-local", &["-p"]) {
            Err(LoadError::Invalid(m)) => {
                assert!(
                    !m.contains('\n') && m.ends_with("(see ss-local --help)"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
