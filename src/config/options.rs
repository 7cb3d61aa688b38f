//! Every option ss-smol understands, described once.
//!
//! Each row of [`OPTIONS`] says how the option is spelt on the command line and in the JSON
//! file, which value rule checks it, its default, which programs take it, and its help text.
//! The command-line parser (`cli`), the JSON reader (`file`), the merge (`settings`), every
//! mode's `--help`, the "did you mean" hints and the README's option table are all derived
//! from this table, so adding an option means adding a row here and reading it in `merge`.
//!
//! Where libev gives a flag a different meaning in ss-server (`-s`, `-p`, `-b`), there are two
//! rows with the same spelling and disjoint modes, so each program's help says what the flag
//! means *there*.

use super::value::IntRule;
use super::{value, Mode};

/// What the rest of the config code calls an option by. One per row of [`OPTIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Id {
    Config,
    Server,
    Servers,
    ServerUrl,
    ServerList,
    ListenAddr,
    ServerPort,
    ListenPort,
    LocalAddress,
    OutboundAddr,
    LocalIpv4Address,
    LocalIpv6Address,
    LocalPort,
    Password,
    Key,
    Method,
    Timeout,
    HandshakeTimeout,
    TcpAndUdp,
    UdpOnly,
    TransportMode,
    TunnelAddress,
    TcpTproxy,
    Nameserver,
    Ipv6First,
    Nofile,
    User,
    PidFile,
    Interface,
    TargetInterface,
    Verbose,
    UseSyslog,
    FastOpen,
    ReusePort,
    NoDelay,
    Mtu,
    Plugin,
    PluginOpts,
    PluginArgs,
    Users,
    PluginMode,
    Fwmark,
    MaxConns,
    PoolBlocks,
    UdpAssocs,
    ReplayCapacity,
    BanFailures,
    BanWindow,
    BanTime,
    AllowPrivateTargets,
}

/// How a value is read and checked; the same rule serves the command line, the file and the
/// default text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// A flag without a value; `true`/`false` in JSON.
    Switch,
    /// 1-65535.
    Port,
    /// A host name or IP literal, no port.
    Host,
    /// `HOST`, `HOST:PORT` or `[IPv6]:PORT`; JSON: a string or a list of them.
    Hosts,
    /// An integer in a range, decimal or `0x` hex; JSON numbers or numeric strings.
    Int(&'static IntRule),
    /// A password or key: non-empty, never echoed.
    Secret,
    /// Any non-empty text.
    Text,
    /// Text where empty means "not set" (UCI front ends write `"plugin": ""`).
    OptionalText,
    /// A network interface name.
    Interface,
    /// `tcp_only`, `tcp_and_udp` or `udp_only`.
    Transport,
    /// Name servers, `IP[:PORT]`, comma-separated; JSON: a string or a list.
    Nameservers,
    /// Program arguments: one per flag; JSON: a list of strings (or one string).
    Args,
    /// JSON only: a list of `{"name": …, "password": …}` (Shadowsocks 2022 users).
    Users,
    /// JSON only: a list of server objects, each with its own method and password.
    Entries,
    /// `ss://` links (SIP002); JSON: a string or a list.
    Links,
}

/// A set of programs, as bits of [`Mode::bit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes(u8);

impl Modes {
    pub const LOCAL: Modes = Modes(1);
    pub const TUNNEL: Modes = Modes(2);
    pub const REDIR: Modes = Modes(4);
    pub const SERVER: Modes = Modes(8);
    pub const CLIENTS: Modes = Modes(1 | 2 | 4);
    pub const ALL: Modes = Modes(15);

    pub fn has(self, mode: Mode) -> bool {
        self.0 & mode.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Mode> {
        [Mode::Local, Mode::Tunnel, Mode::Redir, Mode::Server]
            .into_iter()
            .filter(move |m| self.has(*m))
    }
}

/// One option. `None` spellings mean "not on the command line" / "not in the file".
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    pub id: Id,
    pub short: Option<char>,
    pub long: Option<&'static str>,
    pub key: Option<&'static str>,
    pub rule: Rule,
    /// The value's name in help text (`PORT`); empty for switches.
    pub arg: &'static str,
    /// Text parsed by `rule` when the option is given nowhere; shown in help and README.
    pub default: Option<&'static str>,
    pub modes: Modes,
    /// Given again on the command line, values add up instead of replacing.
    pub repeat: bool,
    /// For keys whose misspelling changes behaviour silently: why, for the error that a near
    /// miss gets when the real key is absent.
    pub guard: Option<&'static str>,
    pub help: &'static str,
}

impl Opt {
    const NONE: Opt = Opt {
        id: Id::Config,
        short: None,
        long: None,
        key: None,
        rule: Rule::Switch,
        arg: "",
        default: None,
        modes: Modes::ALL,
        repeat: false,
        guard: None,
        help: "",
    };

    /// How messages name it on the command line: the short flag if there is one, as libev
    /// users know them.
    pub fn flag(&self) -> String {
        match (self.short, self.long) {
            (Some(c), _) => format!("-{c}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => String::new(),
        }
    }
}

/// The table. Rows end in `..Opt::NONE` so that each says only what differs from "a switch for
/// every program"; the lint would have the one row that sets everything look different.
#[allow(clippy::needless_update)]
pub static OPTIONS: &[Opt] = &[
    Opt {
        id: Id::Config,
        short: Some('c'),
        long: Some("config"),
        rule: Rule::Text,
        arg: "FILE",
        help: "JSON config file in shadowsocks-libev format (`//` and `/* */` comments allowed); \
               flags override it",
        ..Opt::NONE
    },
    Opt {
        id: Id::Server,
        short: Some('s'),
        long: Some("server"),
        key: Some("server"),
        rule: Rule::Hosts,
        arg: "HOST",
        modes: Modes::CLIENTS,
        repeat: true,
        guard: Some("the server would be missing"),
        help: "server host, HOST:PORT or [IPv6]:PORT; repeat for several (used in turn, with \
               failover); JSON: a string or a list",
        ..Opt::NONE
    },
    Opt {
        id: Id::Servers,
        key: Some("servers"),
        rule: Rule::Entries,
        arg: "LIST",
        modes: Modes::CLIENTS,
        help: "**new**: servers each with their own settings, as shadowsocks-rust: \
               [{\"server\": …, \"server_port\": …, \"method\": …, \"password\": …, \
               \"plugin\": …, \"plugin_opts\": …, \"remarks\": …}, …]",
        ..Opt::NONE
    },
    Opt {
        id: Id::ServerUrl,
        long: Some("server-url"),
        key: Some("server_url"),
        rule: Rule::Links,
        arg: "SS_URL",
        modes: Modes::CLIENTS,
        repeat: true,
        help: "**new**: a server as an ss:// link (SIP002); repeat for several; `ss-smol url` \
               decodes one",
        ..Opt::NONE
    },
    Opt {
        id: Id::ServerList,
        long: Some("server-list"),
        key: Some("server_list"),
        rule: Rule::Text,
        arg: "FILE",
        modes: Modes::CLIENTS,
        help: "**new**: a SIP008 server list (JSON) to use beside the servers above; read again \
               on SIGHUP",
        ..Opt::NONE
    },
    Opt {
        id: Id::ListenAddr,
        short: Some('s'),
        long: Some("server"),
        key: Some("server"),
        rule: Rule::Hosts,
        arg: "ADDR",
        default: Some("0.0.0.0"),
        modes: Modes::SERVER,
        repeat: true,
        guard: Some("ss-server would listen on 0.0.0.0"),
        help: "address to listen on; repeat for several; JSON: a string or a list",
        ..Opt::NONE
    },
    Opt {
        id: Id::ServerPort,
        short: Some('p'),
        long: Some("server-port"),
        key: Some("server_port"),
        rule: Rule::Port,
        arg: "PORT",
        modes: Modes::CLIENTS,
        guard: Some("the server port would be missing"),
        help: "server port",
        ..Opt::NONE
    },
    Opt {
        id: Id::ListenPort,
        short: Some('p'),
        long: Some("server-port"),
        key: Some("server_port"),
        rule: Rule::Port,
        arg: "PORT",
        modes: Modes::SERVER,
        guard: Some("the port to listen on would be missing"),
        help: "port to listen on",
        ..Opt::NONE
    },
    Opt {
        id: Id::LocalAddress,
        short: Some('b'),
        long: Some("local-address"),
        key: Some("local_address"),
        rule: Rule::Host,
        arg: "ADDR",
        default: Some("127.0.0.1"),
        modes: Modes::CLIENTS,
        guard: Some("the proxy would listen on 127.0.0.1 only"),
        help: "address to listen on",
        ..Opt::NONE
    },
    Opt {
        id: Id::OutboundAddr,
        short: Some('b'),
        long: Some("local-address"),
        key: Some("local_address"),
        rule: Rule::Host,
        arg: "IP",
        modes: Modes::SERVER,
        guard: Some("outgoing connections would use the system's source address"),
        help: "source address of outgoing connections (either family)",
        ..Opt::NONE
    },
    Opt {
        id: Id::LocalIpv4Address,
        key: Some("local_ipv4_address"),
        rule: Rule::Host,
        arg: "IP",
        modes: Modes::SERVER,
        help: "source address of outgoing IPv4 connections (beats local_address)",
        ..Opt::NONE
    },
    Opt {
        id: Id::LocalIpv6Address,
        key: Some("local_ipv6_address"),
        rule: Rule::Host,
        arg: "IP",
        modes: Modes::SERVER,
        help: "source address of outgoing IPv6 connections (beats local_address)",
        ..Opt::NONE
    },
    Opt {
        id: Id::LocalPort,
        short: Some('l'),
        long: Some("local-port"),
        key: Some("local_port"),
        rule: Rule::Port,
        arg: "PORT",
        modes: Modes::CLIENTS,
        guard: Some("the port to listen on would be missing"),
        help: "port to listen on",
        ..Opt::NONE
    },
    Opt {
        id: Id::Password,
        short: Some('k'),
        long: Some("password"),
        key: Some("password"),
        rule: Rule::Secret,
        arg: "PASSWORD",
        guard: Some("the password would be missing"),
        help: "password (the key is derived from it with EVP_BytesToKey-MD5); for a 2022 \
               method the base64 key itself (`head -c 32 /dev/urandom | base64`, 16 bytes for \
               aes-128)",
        ..Opt::NONE
    },
    Opt {
        id: Id::Key,
        long: Some("key"),
        key: Some("key"),
        rule: Rule::Secret,
        arg: "BASE64",
        guard: Some("the key would be missing, and a password used if there is one"),
        help: "raw key, base64 (standard or URL-safe); wins over a password from the same place",
        ..Opt::NONE
    },
    Opt {
        id: Id::Method,
        short: Some('m'),
        long: Some("encrypt-method"),
        key: Some("method"),
        rule: Rule::Text,
        arg: "METHOD",
        default: Some("chacha20-ietf-poly1305"),
        guard: Some("a misspelt method would silently use the default cipher"),
        help: "cipher: chacha20-ietf-poly1305, aes-128-gcm, aes-192-gcm, aes-256-gcm, \
               xchacha20-ietf-poly1305; Shadowsocks 2022: 2022-blake3-aes-128-gcm, \
               2022-blake3-aes-256-gcm, 2022-blake3-chacha20-poly1305",
        ..Opt::NONE
    },
    Opt {
        id: Id::Timeout,
        short: Some('t'),
        long: Some("timeout"),
        key: Some("timeout"),
        rule: Rule::Int(&value::TIMEOUT),
        arg: "SECS",
        default: Some("60"),
        help: "idle timeout for connections and UDP associations",
        ..Opt::NONE
    },
    Opt {
        id: Id::HandshakeTimeout,
        long: Some("handshake-timeout"),
        key: Some("handshake_timeout"),
        rule: Rule::Int(&value::TIMEOUT),
        arg: "SECS",
        default: Some("10"),
        help: "**new**: seconds a new connection has for its SOCKS5 request (ss-server: its \
               first chunk); a silent ss-server client then counts as a failed authentication",
        ..Opt::NONE
    },
    Opt {
        id: Id::TcpAndUdp,
        short: Some('u'),
        long: Some("tcp-and-udp"),
        help: "relay TCP and UDP (JSON: \"mode\": \"tcp_and_udp\")",
        ..Opt::NONE
    },
    Opt {
        id: Id::UdpOnly,
        short: Some('U'),
        long: Some("udp-only"),
        help: "relay UDP only (JSON: \"mode\": \"udp_only\")",
        ..Opt::NONE
    },
    Opt {
        id: Id::TransportMode,
        key: Some("mode"),
        rule: Rule::Transport,
        arg: "MODE",
        default: Some("tcp_only"),
        guard: Some("UDP would silently not be relayed"),
        help: "tcp_only, tcp_and_udp or udp_only (flags: -u, -U)",
        ..Opt::NONE
    },
    Opt {
        id: Id::TunnelAddress,
        short: Some('L'),
        long: Some("tunnel-address"),
        key: Some("tunnel_address"),
        rule: Rule::Text,
        arg: "HOST:PORT",
        modes: Modes::TUNNEL,
        guard: Some("the destination would be missing"),
        help: "destination to forward to",
        ..Opt::NONE
    },
    Opt {
        id: Id::TcpTproxy,
        short: Some('T'),
        long: Some("tcp-tproxy"),
        key: Some("tcp_tproxy"),
        modes: Modes::REDIR,
        help: "transparent TCP via TPROXY instead of REDIRECT",
        ..Opt::NONE
    },
    Opt {
        id: Id::Nameserver,
        short: Some('d'),
        long: Some("nameserver"),
        key: Some("nameserver"),
        rule: Rule::Nameservers,
        arg: "IP[:PORT]",
        modes: Modes::ALL,
        repeat: true,
        help: "name servers for server names (client modes) or target names (ss-server); \
               repeat or separate with commas (default: /etc/resolv.conf)",
        ..Opt::NONE
    },
    Opt {
        id: Id::Ipv6First,
        short: Some('6'),
        long: Some("ipv6-first"),
        key: Some("ipv6_first"),
        help: "prefer IPv6 when resolving names",
        ..Opt::NONE
    },
    Opt {
        id: Id::Nofile,
        short: Some('n'),
        long: Some("nofile"),
        key: Some("nofile"),
        rule: Rule::Int(&value::NOFILE),
        arg: "NUM",
        help: "raise the open file limit (RLIMIT_NOFILE) to this",
        ..Opt::NONE
    },
    Opt {
        id: Id::User,
        short: Some('a'),
        long: Some("user"),
        key: Some("user"),
        rule: Rule::Text,
        arg: "USER",
        help: "drop privileges to this user after binding",
        ..Opt::NONE
    },
    Opt {
        id: Id::PidFile,
        short: Some('f'),
        long: Some("pid-file"),
        rule: Rule::Text,
        arg: "FILE",
        help: "write the process id to this file",
        ..Opt::NONE
    },
    Opt {
        id: Id::Interface,
        short: Some('i'),
        long: Some("interface"),
        rule: Rule::Interface,
        arg: "IFACE",
        modes: Modes::CLIENTS,
        help: "bind sockets to the server to this interface (SO_BINDTODEVICE)",
        ..Opt::NONE
    },
    Opt {
        id: Id::TargetInterface,
        short: Some('i'),
        long: Some("interface"),
        rule: Rule::Interface,
        arg: "IFACE",
        modes: Modes::SERVER,
        help: "bind sockets to targets to this interface (SO_BINDTODEVICE)",
        ..Opt::NONE
    },
    Opt {
        id: Id::Verbose,
        short: Some('v'),
        long: Some("verbose"),
        key: Some("verbose"),
        help: "log debug messages",
        ..Opt::NONE
    },
    Opt {
        id: Id::UseSyslog,
        long: Some("use-syslog"),
        key: Some("use_syslog"),
        help: "log to syslog (/dev/log) instead of stderr",
        ..Opt::NONE
    },
    Opt {
        id: Id::FastOpen,
        long: Some("fast-open"),
        key: Some("fast_open"),
        help: "TCP Fast Open",
        ..Opt::NONE
    },
    Opt {
        id: Id::ReusePort,
        long: Some("reuse-port"),
        key: Some("reuse_port"),
        help: "SO_REUSEPORT on listening sockets",
        ..Opt::NONE
    },
    Opt {
        id: Id::NoDelay,
        long: Some("no-delay"),
        key: Some("no_delay"),
        help: "TCP_NODELAY on relayed connections",
        ..Opt::NONE
    },
    Opt {
        id: Id::Mtu,
        long: Some("mtu"),
        key: Some("mtu"),
        rule: Rule::Int(&value::MTU),
        arg: "MTU",
        default: Some("0"),
        help: "MTU of the path, used to size UDP reads (0: the usual size)",
        ..Opt::NONE
    },
    Opt {
        id: Id::Plugin,
        long: Some("plugin"),
        key: Some("plugin"),
        rule: Rule::OptionalText,
        arg: "NAME",
        guard: Some("the connection would go to the server without the plugin"),
        help: "SIP003 plugin program: a path, or a name looked up on PATH",
        ..Opt::NONE
    },
    Opt {
        id: Id::PluginOpts,
        long: Some("plugin-opts"),
        key: Some("plugin_opts"),
        rule: Rule::OptionalText,
        arg: "OPTS",
        guard: Some("the plugin would run without its options"),
        help: "SIP003 plugin options, e.g. \"obfs=http;obfs-host=example.com\"",
        ..Opt::NONE
    },
    Opt {
        id: Id::PluginArgs,
        long: Some("plugin-args"),
        key: Some("plugin_args"),
        rule: Rule::Args,
        arg: "ARG",
        repeat: true,
        help: "an extra command-line argument for the plugin (repeatable; JSON: a list)",
        ..Opt::NONE
    },
    Opt {
        id: Id::Users,
        key: Some("users"),
        rule: Rule::Users,
        arg: "LIST",
        modes: Modes::SERVER,
        help: "Shadowsocks 2022 users (AES methods): [{\"name\": …, \"password\": BASE64}, …]; \
               clients give SERVER_KEY:USER_KEY",
        ..Opt::NONE
    },
    Opt {
        id: Id::PluginMode,
        long: Some("plugin-mode"),
        key: Some("plugin_mode"),
        rule: Rule::Transport,
        arg: "MODE",
        default: Some("tcp_only"),
        help: "what the plugin carries: tcp_only (UDP goes straight to the server), \
               tcp_and_udp or udp_only (SIP003u)",
        ..Opt::NONE
    },
    Opt {
        id: Id::Fwmark,
        long: Some("fwmark"),
        key: Some("fwmark"),
        rule: Rule::Int(&value::FWMARK),
        arg: "MARK",
        default: Some("0"),
        help: "**new**: SO_MARK on every socket to the server (0: none), so a router's \
               redirect rules can let proxied traffic through",
        ..Opt::NONE
    },
    Opt {
        id: Id::MaxConns,
        long: Some("max-conns"),
        key: Some("max_conns"),
        rule: Rule::Int(&value::MAX_CONNS),
        arg: "NUM",
        default: Some("1024"),
        help: "**new**: TCP connections at once; further accepts wait",
        ..Opt::NONE
    },
    Opt {
        id: Id::PoolBlocks,
        long: Some("pool-blocks"),
        key: Some("pool_blocks"),
        rule: Rule::Int(&value::POOL_BLOCKS),
        arg: "NUM",
        default: Some("64"),
        help: "**new**: relay buffers of 32 KiB allocated at start; bounds relay memory",
        ..Opt::NONE
    },
    Opt {
        id: Id::UdpAssocs,
        long: Some("udp-assocs"),
        key: Some("udp_assocs"),
        rule: Rule::Int(&value::UDP_ASSOCS),
        arg: "NUM",
        default: Some("256"),
        help: "**new**: UDP associations kept; when full, the least recently used one that never \
               had a reply is evicted first",
        ..Opt::NONE
    },
    Opt {
        id: Id::ReplayCapacity,
        long: Some("replay-capacity"),
        key: Some("replay_capacity"),
        rule: Rule::Int(&value::REPLAY_CAPACITY),
        arg: "NUM",
        default: Some("65536"),
        modes: Modes::SERVER,
        help: "**new**: salts remembered by the replay filter, per half of a ping-pong Bloom \
               filter (about 7.2 bytes each; UDP has a separate filter a quarter that size); \
               Shadowsocks 2022: the most request salts kept for their minute (about 90 bytes \
               each, as they come; more new sessions are refused)",
        ..Opt::NONE
    },
    Opt {
        id: Id::BanFailures,
        long: Some("ban-failures"),
        key: Some("ban_failures"),
        rule: Rule::Int(&value::BAN_FAILURES),
        arg: "NUM",
        default: Some("20"),
        modes: Modes::SERVER,
        help: "**new**: ban a source (IPv4 address or IPv6 /64) after this many failed \
               authentications within the ban window (0: never); a banned source's failures \
               are closed at once instead of held, its clients may still authenticate",
        ..Opt::NONE
    },
    Opt {
        id: Id::BanWindow,
        long: Some("ban-window"),
        key: Some("ban_window"),
        rule: Rule::Int(&value::BAN_SECONDS),
        arg: "SECS",
        default: Some("60"),
        modes: Modes::SERVER,
        help: "**new**: seconds over which failed authentications are counted",
        ..Opt::NONE
    },
    Opt {
        id: Id::BanTime,
        long: Some("ban-time"),
        key: Some("ban_time"),
        rule: Rule::Int(&value::BAN_SECONDS),
        arg: "SECS",
        default: Some("120"),
        modes: Modes::SERVER,
        help: "**new**: seconds a source stays banned",
        ..Opt::NONE
    },
    Opt {
        id: Id::AllowPrivateTargets,
        long: Some("allow-private-targets"),
        key: Some("allow_private_targets"),
        modes: Modes::SERVER,
        help: "**new**: let clients reach loopback, private (RFC 1918, fc00::/7), link-local \
               and CGNAT addresses; refused by default so the password does not open the \
               router's LAN",
        ..Opt::NONE
    },
];

/// The row of `id`. Every `Id` has one (a unit test checks), so the fallback is never used; it
/// exists so that a mistake there cannot panic.
pub fn opt(id: Id) -> &'static Opt {
    OPTIONS.iter().find(|o| o.id == id).unwrap_or(&OPTIONS[0])
}

/// The row for a JSON key. Rows sharing a key (`-s` client and server) share its rule, so the
/// first does for reading; which one applies is decided with the mode, later.
pub fn by_key(key: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.key == Some(key))
}

/// Levenshtein distance over bytes, for "did you mean": keys and flags are ASCII, and a
/// stray multi-byte character only counts a little more.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut prev = i;
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest of `candidates` to `word`: exact after normalising dashes and case, else within
/// an edit distance of 2 (1 for short words, where 2 would match almost anything).
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let norm: String = word
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let limit = if norm.len() <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let c_norm = c.replace('-', "_");
        let d = if c_norm == norm {
            0
        } else {
            edit_distance(&norm, &c_norm)
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// How a mode is named to the user: as it was invoked, `ss-local` or `ss-smol local`.
pub fn mode_name(mode: Mode, multi_call: bool) -> String {
    if multi_call {
        format!("ss-smol {}", &mode.program()[3..])
    } else {
        mode.program().to_string()
    }
}

/// One mode's `--help`: only the options it takes.
pub fn help_text(mode: Mode, program: &str) -> String {
    let mut out = format!(
        "Usage: {program} [OPTIONS]\n\n{}\n\nOptions (shadowsocks-libev compatible; they \
         override the -c file):\n",
        mode_summary(mode)
    );
    for o in OPTIONS.iter().filter(|o| o.modes.has(mode)) {
        let Some(long) = o.long else { continue };
        let short = match o.short {
            Some(c) => format!("-{c}, "),
            None => "    ".into(),
        };
        let mut text = plain(o.help);
        if let Some(d) = o.default {
            text.push_str(&format!(" (default {d})"));
        }
        push_help_line(&mut out, &format!("{short}--{long} {}", o.arg), &text);
    }
    push_help_line(&mut out, "-h, --help", "this text");
    push_help_line(&mut out, "    --version", "print the version");
    out
}

/// `  SPEC    TEXT`, TEXT wrapped at 100 columns under its own column.
fn push_help_line(out: &mut String, spec: &str, text: &str) {
    const COL: usize = 34;
    let mut line = format!("  {:<w$}", spec.trim_end(), w = COL - 3);
    line.push(' ');
    let mut width = line.chars().count().max(COL);
    for word in text.split(' ') {
        if width + word.len() > 100 && width > COL {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(COL);
        }
        line.push_str(word);
        line.push(' ');
        width = line.chars().count();
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn mode_summary(mode: Mode) -> &'static str {
    match mode {
        Mode::Local => "SOCKS5 proxy (CONNECT, UDP ASSOCIATE) through a Shadowsocks server.",
        Mode::Tunnel => "Port forward through a Shadowsocks server to one fixed destination.",
        Mode::Redir => {
            "Transparent proxy: TCP by nftables/iptables REDIRECT or TPROXY (-T), UDP by TPROXY."
        }
        Mode::Server => "Shadowsocks server (TCP and UDP, probe-resistant).",
    }
}

/// Help text without the README's markdown.
fn plain(s: &str) -> String {
    s.replace("**new**: ", "").replace('`', "")
}

/// The README's option table, rendered from [`OPTIONS`].
pub fn readme_table() -> String {
    let mut out = String::from("| flag | JSON key | programs | meaning |\n|---|---|---|---|\n");
    for o in OPTIONS {
        let mut flag = Vec::new();
        if let Some(c) = o.short {
            flag.push(format!("`-{c}`"));
        }
        if let Some(l) = o.long {
            flag.push(format!("`--{l}`"));
        }
        let mut flag = flag.join(", ");
        if !o.arg.is_empty() && !flag.is_empty() {
            flag.push_str(&format!(" {}", o.arg));
        }
        let key = o.key.map(|k| format!("`{k}`")).unwrap_or_default();
        let modes = if o.modes == Modes::ALL {
            "all".to_string()
        } else {
            o.modes
                .iter()
                .map(|m| &m.program()[3..])
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut meaning = o.help.replace('|', "\\|");
        if let Some(d) = o.default {
            meaning.push_str(&format!(" (default `{d}`)"));
        }
        out.push_str(&format!("| {flag} | {key} | {modes} | {meaning} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_has_one_row_per_mode() {
        for (i, o) in OPTIONS.iter().enumerate() {
            assert_eq!(opt(o.id).id, o.id);
            assert!(
                OPTIONS[i + 1..].iter().all(|p| p.id != o.id),
                "{:?} twice",
                o.id
            );
            // A spelling may appear twice only for disjoint modes, so lookup is unambiguous.
            for p in &OPTIONS[i + 1..] {
                let same = (o.short.is_some() && o.short == p.short)
                    || (o.long.is_some() && o.long == p.long)
                    || (o.key.is_some() && o.key == p.key);
                if same {
                    assert_eq!(o.modes.0 & p.modes.0, 0, "{:?} and {:?}", o.id, p.id);
                    assert_eq!(o.rule, p.rule, "{:?} and {:?}", o.id, p.id);
                }
            }
            assert!(o.short.is_some() || o.long.is_some() || o.key.is_some());
            assert_eq!(o.arg.is_empty(), o.rule == Rule::Switch, "{:?}", o.id);
            assert!(!o.help.is_empty());
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("methd", "method"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let keys = || OPTIONS.iter().filter_map(|o| o.key);
        assert_eq!(closest("methd", keys()), Some("method"));
        assert_eq!(closest("Server-Port", keys()), Some("server_port"));
        assert_eq!(closest("passwrod", keys()), Some("password"));
        assert_eq!(closest("kye", keys()), None);
        assert_eq!(closest("bogus", keys()), None);
    }

    #[test]
    fn help_lists_only_the_modes_options() {
        let local = help_text(Mode::Local, "ss-smol local");
        assert!(
            local.starts_with("Usage: ss-smol local [OPTIONS]"),
            "{local}"
        );
        for absent in ["--ban-", "--replay-capacity", "-T,", "-L,"] {
            assert!(!local.contains(absent), "{absent} in\n{local}");
        }
        assert!(local.contains("--server-port PORT") && local.contains("(default 60)"));
        let server = help_text(Mode::Server, "ss-server");
        for absent in ["-L,", "-T,", "-l,"] {
            assert!(!server.contains(absent), "{absent} in\n{server}");
        }
        assert!(server.contains("--ban-failures") && server.contains("(default 0.0.0.0)"));
        assert!(help_text(Mode::Redir, "ss-redir").contains("-T, --tcp-tproxy"));
        assert!(help_text(Mode::Tunnel, "ss-tunnel").contains("-L, --tunnel-address"));
    }

    #[test]
    fn defaults_parse_and_match_the_code_that_uses_them() {
        use crate::config::value::{parse_text, Val};
        for o in OPTIONS {
            if let Some(d) = o.default {
                assert!(
                    matches!(parse_text(o.rule, d), Ok(Some(_))),
                    "{:?}: default {d:?} does not parse",
                    o.id
                );
            }
        }
        let num = |id| match opt(id).default.map(|d| parse_text(opt(id).rule, d)) {
            Some(Ok(Some(Val::Num(n)))) => n,
            other => panic!("{id:?}: {other:?}"),
        };
        let limits = crate::config::Limits::default();
        assert_eq!(num(Id::MaxConns), limits.max_conns as u64);
        assert_eq!(num(Id::PoolBlocks), limits.pool_blocks as u64);
        assert_eq!(num(Id::UdpAssocs), limits.udp_assocs as u64);
        let server = crate::config::ServerOpts::default();
        assert_eq!(num(Id::ReplayCapacity), server.replay_capacity as u64);
        assert_eq!(num(Id::BanFailures), u64::from(server.ban.failures));
        assert_eq!(num(Id::BanWindow), server.ban.window.as_secs());
        assert_eq!(num(Id::BanTime), server.ban.duration.as_secs());
        assert_eq!(
            opt(Id::Method)
                .default
                .map(crate::proto::cipher::Method::from_name),
            Some(Ok(crate::proto::cipher::Method::default()))
        );
    }

    /// The README's option table is this table rendered; `SS_SMOL_UPDATE_README=1 cargo test
    /// --lib readme` rewrites it.
    #[test]
    fn readme_option_table_is_current() {
        const BEGIN: &str = "<!-- options:begin -->\n";
        const END: &str = "<!-- options:end -->";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
            panic!("README.md has no {BEGIN:?} … {END:?} block");
        };
        let start = b + BEGIN.len();
        assert!(start <= e, "README.md: {END:?} before {BEGIN:?}");
        let want = readme_table();
        if readme[start..e] == want {
            return;
        }
        if std::env::var_os("SS_SMOL_UPDATE_README").is_some() {
            let updated = format!("{}{want}{}", &readme[..start], &readme[e..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        panic!(
            "README.md's option table is out of date; run `SS_SMOL_UPDATE_README=1 cargo test \
             --lib readme`, or put this between the markers:\n{want}"
        );
    }
}
