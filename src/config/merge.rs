//! Command line over config file over defaults, into one checked `Config`.
//!
//! Values were already checked one by one where they were read (`cli`, `file`, by the rules of
//! `options`); this layer decides what each mode requires, which source wins, and derives the
//! master key. Every failure is one line that says what is missing or wrong and how to give it.

use super::options::{self, Id};
use super::server_entry::{format_ss_url, ServerEntry};
use super::settings::Settings;
use super::value::{self, Val};
use super::{
    cli, file, sip003, Config, Limits, Mode, OwnSettings, ServerAddr, ServerOpts, Transport,
};
use crate::policy::ban::BanConfig;
use crate::proto::address::Address;
use crate::proto::cipher::{MasterKey, Method};
use crate::proto::ss2022::{KeyError, Psk, MAX_IDENTITIES};
use crate::quote::Quoted;
use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
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

/// Parses `args` (without argv[0]) for `mode`, reads the `-c` file if any, and validates.
/// `program` is the name the user invoked (`ss-local`, `ss-smol local`), shown in help and
/// messages. Config-file warnings are logged with `log::warn!`, unused keys with `log::debug!`.
pub fn load(mode: Mode, program: &str, args: &[&str]) -> Result<Config, LoadError> {
    let s = settings(mode, program, args)?;
    build(&s).map_err(LoadError::Invalid)
}

/// The command line and the `-c` file, read and checked value by value (not yet merged).
pub fn settings(mode: Mode, program: &str, args: &[&str]) -> Result<Settings, LoadError> {
    let mut s = Settings::new(mode);
    cli::parse_args(&mut s, program, args)?;
    if let Some(path) = s.path.clone() {
        let fc = file::read_config_file(&path).map_err(LoadError::Invalid)?;
        for w in &fc.warnings {
            log::warn!("config {}: {w}", path.display());
        }
        for w in &fc.ignored {
            log::debug!("config {}: {w}", path.display());
        }
        s.set_file(fc.values);
        // One file often serves ss-local and ss-redir alike; libev ignores the other's keys.
        for k in s.unused_file_keys() {
            log::debug!(
                "config {}: key {} is not used by {program}",
                path.display(),
                Quoted(k)
            );
        }
    }
    Ok(s)
}

/// Names a setting the way the user would look for it, for messages about missing values.
fn both(flag: &str, key: &str) -> String {
    format!("{flag} or \"{key}\" in the config file")
}

fn count(s: &Settings, id: Id) -> usize {
    // The table's rules cap every count far below usize::MAX on any target we build for.
    s.num(id).and_then(|n| usize::try_from(n).ok()).unwrap_or(0)
}

fn secs(s: &Settings, id: Id) -> Duration {
    Duration::from_secs(s.num(id).unwrap_or(0))
}

/// Merges and validates. Pure (no I/O, no logging) so tests can drive it.
pub fn build(s: &Settings) -> Result<Config, String> {
    let mode = s.mode;
    let server_mode = mode == Mode::Server;

    // Method and key.
    let method = match s.text(Id::Method) {
        Some(name) => Method::from_name(&name).map_err(|e| e.to_string())?,
        None => Method::default(),
    };
    // Servers with settings of their own (client modes) need no shared password.
    let own = if server_mode {
        Vec::new()
    } else {
        own_servers(s)?
    };
    let server_list = s.text(Id::ServerList).map(PathBuf::from);
    let (hosts_id, port_id) = if server_mode {
        (Id::ListenAddr, Id::ListenPort)
    } else {
        (Id::Server, Id::ServerPort)
    };
    let hosts = s.hosts(hosts_id);
    let shared = server_mode || !hosts.is_empty();
    let (key, identity_keys) = match master_key(method, s) {
        Ok(k) => k,
        Err(e) if shared => return Err(e),
        // Not used: every server has its own.
        Err(_) => (MasterKey::from_password(method, b""), Vec::new()),
    };
    if server_mode && !identity_keys.is_empty() {
        return Err(format!(
            "{}: ss-server's key is one key, without ':'; its users go in \"users\" in the \
             config file",
            key_source(s)
        ));
    }
    let users = users(method, s)?;

    // Servers: remote servers for clients, listen addresses for ss-server.
    if hosts.is_empty() && own.is_empty() && server_list.is_none() {
        return Err(format!(
            "no server given: use {} (and -p PORT)",
            both("-s HOST", "server")
        ));
    }
    let server_port = s.port(port_id);
    let mut servers = Vec::with_capacity(hosts.len());
    for h in hosts {
        let port = match h.port.or(server_port) {
            Some(p) => p,
            None if server_mode => {
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
        servers.push(ServerAddr::new(h.host, port));
    }
    servers.extend(own);

    // Local side. ss-server has no listen address of its own here: `servers` is where it
    // listens, and -b means the source of outgoing connections.
    let local_port = match s.port(Id::LocalPort) {
        Some(p) => p,
        None if server_mode => 0,
        None => {
            return Err(format!(
                "no local port to listen on: use {}",
                both("-l PORT", "local_port")
            ))
        }
    };
    let (local_addr, outbound_bind_v4, outbound_bind_v6) = if server_mode {
        let (v4, v6) = outbound_binds(s)?;
        ("127.0.0.1".to_string(), v4, v6)
    } else {
        (s.text(Id::LocalAddress).unwrap_or_default(), None, None)
    };

    let tunnel_addr = if mode == Mode::Tunnel {
        let Some(text) = s.text(Id::TunnelAddress) else {
            return Err(format!(
                "ss-tunnel needs a destination: use {}",
                both("-L HOST:PORT", "tunnel_address")
            ));
        };
        match Address::from_host_port(&text) {
            Some(a) if a.port() != 0 => Some(a),
            _ => {
                return Err(format!(
                    "{} must be HOST:PORT or [IPv6]:PORT with a port 1-65535, got {}",
                    s.source(Id::TunnelAddress),
                    Quoted(&text)
                ))
            }
        }
    } else {
        None
    };

    let transport = match (s.flag(Id::TcpAndUdp), s.flag(Id::UdpOnly)) {
        (true, true) => {
            return Err("-u (TCP and UDP) and -U (UDP only) contradict each other: use one".into())
        }
        (true, false) => Transport::TcpAndUdp,
        (false, true) => Transport::UdpOnly,
        (false, false) => s.transport(Id::TransportMode).unwrap_or_default(),
    };

    let limits = Limits {
        max_conns: count(s, Id::MaxConns),
        pool_blocks: count(s, Id::PoolBlocks),
        udp_assocs: count(s, Id::UdpAssocs),
    };
    let plugin = s.text(Id::Plugin);
    let plugin_mode = s.transport(Id::PluginMode).unwrap_or(Transport::TcpOnly);
    // Behind a plugin every TCP connection comes from 127.0.0.1: a ban would lock out all.
    let plugin_tcp = plugin.is_some() && plugin_mode.tcp() && transport.tcp();
    let server = if server_mode {
        ServerOpts {
            replay_capacity: count(s, Id::ReplayCapacity),
            ban: BanConfig {
                failures: s
                    .num(Id::BanFailures)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|_| !plugin_tcp)
                    .unwrap_or(0),
                window: secs(s, Id::BanWindow),
                duration: secs(s, Id::BanTime),
                capacity: BanConfig::default().capacity,
            },
            allow_private_targets: s.flag(Id::AllowPrivateTargets),
        }
    } else {
        ServerOpts::default()
    };
    let u32_of = |id| s.num(id).and_then(|n| u32::try_from(n).ok());
    let plugin_source = match (&plugin, s.cli(Id::Plugin)) {
        (None, _) => "",
        (Some(_), Some(_)) => "--plugin",
        (Some(_), None) => "\"plugin\" in the config file",
    };
    let plugin_opts = s.text(Id::PluginOpts);
    if let Some(text) = &plugin_opts {
        if let Err(why) = sip003::parse(text) {
            return Err(format!(
                "{} {}: {why}",
                s.source(Id::PluginOpts),
                Quoted(text)
            ));
        }
    }
    Ok(Config {
        mode,
        servers,
        server_list,
        method,
        key,
        local_addr,
        local_port,
        tunnel_addr,
        transport,
        timeout: secs(s, Id::Timeout),
        handshake_timeout: secs(s, Id::HandshakeTimeout),
        fast_open: s.flag(Id::FastOpen),
        no_delay: s.flag(Id::NoDelay),
        reuse_port: s.flag(Id::ReusePort),
        ipv6_first: s.flag(Id::Ipv6First),
        tcp_tproxy: s.flag(Id::TcpTproxy),
        // 0 is libev's "leave the limit alone".
        nofile: s.num(Id::Nofile).filter(|&n| n != 0),
        user: s.text(Id::User),
        pid_file: s.text(Id::PidFile).map(PathBuf::from),
        interface: s.text(if server_mode {
            Id::TargetInterface
        } else {
            Id::Interface
        }),
        // A zero mark is no mark.
        fwmark: u32_of(Id::Fwmark).filter(|&m| m != 0),
        mtu: u32_of(Id::Mtu).unwrap_or(0),
        verbose: s.flag(Id::Verbose),
        use_syslog: s.flag(Id::UseSyslog),
        plugin,
        plugin_source,
        plugin_opts,
        plugin_args: s.args(Id::PluginArgs),
        plugin_mode,
        outbound_bind_v4,
        outbound_bind_v6,
        nameservers: s.nameservers(Id::Nameserver),
        limits,
        server,
        identity_keys,
        users,
    })
}

/// Where the key came from, for messages (the precedence of `master_key`).
fn key_source(s: &Settings) -> String {
    let key_wins = s.secret_cli(Id::Key).is_some()
        || (s.secret_cli(Id::Password).is_none() && s.secret_file(Id::Key).is_some());
    s.source(if key_wins { Id::Key } else { Id::Password })
}

/// A Shadowsocks 2022 key: base64 of exactly the method's key length.
fn psk(m: crate::proto::ss2022::Method, text: &str) -> Result<Psk, KeyError> {
    value::decode_base64_key(text)
        .ok_or(KeyError::NotBase64)
        .and_then(|bytes| Psk::from_bytes(m, &bytes))
}

/// ss-server's Shadowsocks 2022 users (`users` in the config file).
fn users(method: Method, s: &Settings) -> Result<Vec<(String, MasterKey)>, String> {
    let list = s.users(Id::Users);
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let source = s.source(Id::Users);
    let m = match method.ss2022() {
        Some(m) if m != crate::proto::ss2022::Method::ChaCha20Poly1305 => m,
        _ => {
            return Err(format!(
                "{source} needs method 2022-blake3-aes-128-gcm or 2022-blake3-aes-256-gcm \
                 (identity headers, SIP023, exist only for them)"
            ))
        }
    };
    let mut out: Vec<(String, MasterKey)> = Vec::new();
    for (name, pw) in list {
        let key = psk(m, pw.expose())
            .ok()
            .and_then(|p| MasterKey::from_bytes(method, p.as_bytes()))
            .ok_or_else(|| {
                format!(
                    "{source}: the key of user {} is not {} bytes of base64; make one with \
                     `head -c {} /dev/urandom | base64`",
                    Quoted(&name),
                    m.key_len(),
                    m.key_len()
                )
            })?;
        if let Some((other, _)) = out.iter().find(|(_, k)| *k == key) {
            return Err(format!(
                "{source}: users {} and {} have the same key",
                Quoted(other),
                Quoted(&name)
            ));
        }
        out.push((name, key));
    }
    Ok(out)
}

/// The command line beats the file as a whole: a `-k` password replaces the file's key. Within
/// one source a key beats a password, as in libev. A Shadowsocks 2022 key may be a chain
/// `iPSK:…:uPSK` (SIP023): the user key is returned first, then the identity keys in order.
fn master_key(method: Method, s: &Settings) -> Result<(MasterKey, Vec<MasterKey>), String> {
    let cred = if let Some(k) = s.secret_cli(Id::Key) {
        Cred::Key(k.expose())
    } else if let Some(p) = s.secret_cli(Id::Password) {
        Cred::Password(p.expose())
    } else if let Some(k) = s.secret_file(Id::Key) {
        Cred::Key(k.expose())
    } else if let Some(p) = s.secret_file(Id::Password) {
        Cred::Password(p.expose())
    } else {
        return Err(
            "no password: use -k PASSWORD or --key BASE64, or \"password\" or \"key\" \
                    in the config file"
                .into(),
        );
    };
    let source = match cred {
        Cred::Key(_) => s.source(Id::Key),
        Cred::Password(_) => s.source(Id::Password),
    };
    keys_from(method, cred, &source)
}

/// `ss-smol url` with options: the configured servers as `ss://` links. A password is needed
/// (a link carries it, and the key cannot be turned back into one), except for 2022 methods,
/// whose key is the password.
pub fn links(s: &Settings) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let hosts = s.hosts(Id::Server);
    if !hosts.is_empty() {
        let method = s
            .text(Id::Method)
            .unwrap_or_else(|| Method::default().name().to_string());
        let m = Method::from_name(&method).map_err(|e| e.to_string())?;
        let password = match (
            s.secret_cli(Id::Password).or(s.secret_file(Id::Password)),
            s.secret_cli(Id::Key).or(s.secret_file(Id::Key)),
        ) {
            (_, Some(k)) if m.ss2022().is_some() => k.expose().to_string(),
            (Some(p), _) => p.expose().to_string(),
            (None, Some(_)) => {
                return Err(
                    "a link carries the password, and only a key was given (a key \
                            cannot be turned back into a password)"
                        .into(),
                )
            }
            (None, None) => return Err("no password: use -k PASSWORD".into()),
        };
        let plugin = s.text(Id::Plugin);
        for h in hosts {
            let port = h
                .port
                .or(s.port(Id::ServerPort))
                .ok_or_else(|| format!("no port for server {}", h.host))?;
            out.push(format_ss_url(&ServerEntry {
                host: h.host,
                port,
                method: method.clone(),
                password: password.clone(),
                plugin: plugin.clone(),
                plugin_opts: plugin.as_ref().and_then(|_| s.text(Id::PluginOpts)),
                remarks: None,
            }));
        }
    }
    for id in [Id::Servers, Id::ServerUrl] {
        out.extend(s.entries(id).iter().map(format_ss_url));
    }
    if out.is_empty() {
        return Err("no server given: use -s HOST -p PORT -k PASSWORD, or -c FILE".into());
    }
    Ok(out)
}

/// The client's servers of the `servers` array and `--server-url` links.
fn own_servers(s: &Settings) -> Result<Vec<ServerAddr>, String> {
    let mut out = Vec::new();
    for (id, what) in [
        (Id::Servers, "\"servers\" entry"),
        (Id::ServerUrl, "--server-url"),
    ] {
        for (n, e) in s.entries(id).iter().enumerate() {
            out.push(own_server(e, &format!("{what} {}", n + 1))?);
        }
    }
    Ok(out)
}

/// A server with its own method, key and plugin; errors start with `what` (which entry).
pub fn own_server(e: &ServerEntry, what: &str) -> Result<ServerAddr, String> {
    let host = value::check_host(&e.host).map_err(|err| format!("{what}: server {err}"))?;
    let method = Method::from_name(&e.method).map_err(|err| format!("{what}: {err}"))?;
    let (key, identity_keys) = keys_from(
        method,
        Cred::Password(&e.password),
        &format!("{what}: the password"),
    )?;
    let own = OwnSettings {
        method,
        key,
        identity_keys,
        plugin: e.plugin.clone().map(|p| (p, e.plugin_opts.clone())),
        remarks: e.remarks.clone(),
    };
    Ok(ServerAddr {
        host,
        port: e.port,
        own: Some(Box::new(own)),
    })
}

/// A password, or a raw base64 key.
#[derive(Clone, Copy)]
pub(super) enum Cred<'a> {
    Key(&'a str),
    Password(&'a str),
}

/// The key (and SIP023 identity keys, outermost first) `cred` gives for `method`; errors
/// start with `source`, and never quote the secret.
pub(super) fn keys_from(
    method: Method,
    cred: Cred<'_>,
    source: &str,
) -> Result<(MasterKey, Vec<MasterKey>), String> {
    if let Some(m) = method.ss2022() {
        // The password is the key itself, base64, as shadowsocks-rust takes it.
        let (Cred::Key(text) | Cred::Password(text)) = cred;
        let mut keys = Vec::new();
        for part in text.split(':') {
            let psk = psk(m, part).map_err(|e| format!("{source}: {e}"))?;
            keys.push(
                MasterKey::from_bytes(method, psk.as_bytes())
                    .ok_or_else(|| format!("{source}: not a key for {}", method.name()))?,
            );
        }
        if keys.len() > 1 && m == crate::proto::ss2022::Method::ChaCha20Poly1305 {
            return Err(format!(
                "{source}: SERVER_KEY:USER_KEY (identity headers, SIP023) needs method \
                 2022-blake3-aes-128-gcm or 2022-blake3-aes-256-gcm"
            ));
        }
        if keys.len() > MAX_IDENTITIES + 1 {
            return Err(format!(
                "{source}: at most {MAX_IDENTITIES} identity keys before the user key"
            ));
        }
        let user = keys.pop().ok_or_else(|| format!("{source}: no key"))?;
        return Ok((user, keys));
    }
    match cred {
        Cred::Password(p) => Ok((MasterKey::from_password(method, p.as_bytes()), Vec::new())),
        Cred::Key(k) => {
            let n = method.key_len();
            let Some(bytes) = value::decode_base64_key(k) else {
                return Err(format!(
                    "{source} is not valid base64; for {} generate one with `openssl rand -base64 \
                     {n}`",
                    method.name()
                ));
            };
            MasterKey::from_bytes(method, &bytes)
                .map(|k| (k, Vec::new()))
                .ok_or_else(|| {
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
fn outbound_binds(s: &Settings) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), String> {
    let ip = |text: Option<&Val>, source: String| -> Result<Option<IpAddr>, String> {
        match text {
            Some(Val::Text(t)) => t.parse::<IpAddr>().map(Some).map_err(|_| {
                format!(
                    "{source} must be an IP address (the source of outgoing connections), got \
                     {}",
                    Quoted(t)
                )
            }),
            _ => Ok(None),
        }
    };
    let b = Id::OutboundAddr;
    let cli_b = ip(s.cli(b), options::opt(b).flag())?;
    let file_any = ip(s.file(b), s.file_source(b))?;
    let (v4_id, v6_id) = (Id::LocalIpv4Address, Id::LocalIpv6Address);
    let file_v4 = ip(s.file(v4_id), s.file_source(v4_id))?;
    let file_v6 = ip(s.file(v6_id), s.file_source(v6_id))?;
    if let Some(IpAddr::V6(_)) = file_v4 {
        return Err(format!(
            "{} must be an IPv4 address",
            s.source(Id::LocalIpv4Address)
        ));
    }
    if let Some(IpAddr::V4(_)) = file_v6 {
        return Err(format!(
            "{} must be an IPv6 address",
            s.source(Id::LocalIpv6Address)
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

    /// Settings as `load` makes them, without the file system.
    fn settings(mode: Mode, args: &[&str], json: Option<&str>) -> Result<Settings, String> {
        let mut s = Settings::new(mode);
        cli::parse_args(&mut s, mode.program(), args).map_err(|e| e.to_string())?;
        if let Some(j) = json {
            s.set_file(parse_json_config(j)?.values);
        }
        Ok(s)
    }

    fn ok(mode: Mode, args: &[&str], json: Option<&str>) -> Config {
        match settings(mode, args, json).and_then(|s| build(&s)) {
            Ok(c) => c,
            Err(e) => panic!("{args:?} {json:?}: {e}"),
        }
    }

    fn err(mode: Mode, args: &[&str], json: Option<&str>) -> String {
        match settings(mode, args, json).and_then(|s| build(&s)) {
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
        assert_eq!(c.servers, vec![ServerAddr::new("203.0.113.1".into(), 8388)]);
        assert_eq!(
            c.key,
            MasterKey::from_password(Method::ChaCha20Poly1305, b"pw")
        );
        assert!(!c.fast_open && !c.verbose && !c.use_syslog && c.tunnel_addr.is_none());
        assert_eq!((c.nofile, c.fwmark, c.mtu), (None, None, 0));
    }

    #[test]
    fn plugin_keys_and_flags() {
        let json = r#"{"server": "203.0.113.1", "server_port": 443, "password": "pw", "local_port": 1,
            "plugin": "obfs-local", "plugin_opts": "obfs=tls;obfs-host=a\\;b",
            "plugin_args": ["-v", "--fast-open"], "plugin_mode": "tcp_and_udp"}"#;
        let c = ok(Mode::Local, &[], Some(json));
        assert_eq!(c.plugin.as_deref(), Some("obfs-local"));
        assert_eq!(c.plugin_opts.as_deref(), Some("obfs=tls;obfs-host=a\\;b"));
        assert_eq!(c.plugin_args, ["-v", "--fast-open"]);
        assert_eq!(c.plugin_mode, Transport::TcpAndUdp);
        let mut args = MIN.to_vec();
        args.extend(["--plugin", "p", "--plugin-args", "a", "--plugin-args", "b"]);
        let c = ok(Mode::Redir, &args, None);
        assert_eq!(
            (c.plugin_args.len(), c.plugin_mode),
            (2, Transport::TcpOnly)
        );
        assert!(err(Mode::Local, MIN, Some(r#"{"plugin_mode": "tcp"}"#)).contains("plugin_mode"));
        assert!(err(Mode::Local, MIN, Some(r#"{"plugin_args": [1, {}]}"#)).contains("plugin_args"));
    }

    #[test]
    fn bans_are_off_when_a_plugin_carries_the_servers_tcp() {
        let server = [
            "-s",
            "0.0.0.0",
            "-p",
            "443",
            "-k",
            "pw",
            "--ban-failures",
            "5",
        ];
        assert_eq!(ok(Mode::Server, &server, None).server.ban.failures, 5);
        let mut args = server.to_vec();
        args.extend(["--plugin", "obfs-server"]);
        assert_eq!(ok(Mode::Server, &args, None).server.ban.failures, 0);
        // UDP only through the plugin: TCP still comes from the clients' own addresses.
        args.extend(["--plugin-mode", "udp_only", "-u"]);
        assert_eq!(ok(Mode::Server, &args, None).server.ban.failures, 5);
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
        assert_eq!(c.servers, vec![ServerAddr::new("203.0.113.9".into(), 3)]);
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
        assert!(
            e.starts_with("\"password\" in config")
                && e.contains("not a password")
                && e.contains("head -c 32 /dev/urandom | base64"),
            "{e}"
        );
    }

    #[test]
    fn shadowsocks_2022_keys_are_the_psk_itself() {
        let base = ["-s", "h", "-p", "1", "-l", "2"];
        let raw = [0x5au8; 32];
        let std = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
        for (method, flag) in [
            ("2022-blake3-aes-256-gcm", "-k"),
            ("2022-blake3-chacha20-poly1305", "--key"),
        ] {
            let c = ok(
                Mode::Local,
                &[&base[..], &["-m", method, flag, &std]].concat(),
                None,
            );
            assert_eq!(c.key.as_bytes(), &raw[..], "{method}: no KDF");
        }
        let e = err(
            Mode::Local,
            &[&base[..], &["-m", "2022-blake3-aes-128-gcm", "-k", &std]].concat(),
            None,
        );
        assert!(
            e.starts_with(
                "-k: the key decodes to 32 bytes but 2022-blake3-aes-128-gcm needs \
                 exactly 16"
            ) && e.contains("head -c 16 /dev/urandom | base64"),
            "{e}"
        );
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
        // Other modes refuse the flag, and ignore the key (one file serves several programs).
        let e = err(Mode::Local, &[MIN, &["-L", "x"]].concat(), None);
        assert!(e.starts_with("-L is an ss-tunnel option; remove it"), "{e}");
        assert!(ok(Mode::Local, MIN, Some(r#"{"tunnel_address": "x"}"#))
            .tunnel_addr
            .is_none());
    }

    #[test]
    fn other_programs_keys_in_a_file_are_ignored() {
        let json =
            r#"{"tcp_tproxy": true, "ban_time": 5, "local_port": 7, "method": "aes-128-gcm"}"#;
        let s = settings(Mode::Local, MIN, Some(json)).unwrap();
        let unused: Vec<&str> = s.unused_file_keys().collect();
        assert_eq!(unused, vec!["ban_time", "tcp_tproxy"]);
        let c = build(&s).unwrap();
        assert!(!c.tcp_tproxy);
        assert_eq!(c.method, Method::Aes128Gcm);
        // ss-server has no local port: the shared file's one is not used.
        let s = settings(Mode::Server, &["-p", "1", "-k", "x"], Some(json)).unwrap();
        assert_eq!(
            s.unused_file_keys().collect::<Vec<_>>(),
            vec!["local_port", "tcp_tproxy"]
        );
        let c = build(&s).unwrap();
        assert_eq!(
            (c.local_port, c.server.ban.duration),
            (0, Duration::from_secs(5))
        );
    }

    #[test]
    fn server_mode() {
        // -i has its own row for ss-server (targets, not the server); both reach Config.
        let c = ok(Mode::Server, &["-p", "1", "-k", "x", "-i", "eth1"], None);
        assert_eq!(c.interface.as_deref(), Some("eth1"));
        let c = ok(Mode::Local, &[MIN, &["-i", "wan"]].concat(), None);
        assert_eq!(c.interface.as_deref(), Some("wan"));
        let c = ok(Mode::Server, &["-p", "8388", "-k", "x"], None);
        assert_eq!(c.servers, vec![ServerAddr::new("0.0.0.0".into(), 8388)]);
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
        match load(Mode::Local, "ss-smol local", &["--ban-time", "1"]) {
            Err(LoadError::Invalid(m)) => assert_eq!(
                m,
                "--ban-time is an ss-smol server option; remove it (see ss-smol local --help)"
            ),
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
