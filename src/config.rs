//! The validated, typed configuration of one run, built from libev-compatible command-line
//! flags (`cli`) layered over an optional JSON file (`config::file`), both read by the one
//! table of options in `config::options`.
//!
//! Everything a mode needs is decided here, at start-up: a bad value is an error that names the
//! key (and file) and exits before any socket is opened. Later layers never re-validate.

pub mod cli;
pub mod file;
mod json;
mod merge;
pub mod options;
pub mod server_entry;
pub mod server_list;
pub mod settings;
pub mod sip003;
pub mod sip008;
pub mod value;

pub use merge::{build, links, load, settings, LoadError};

use crate::policy::ban::BanConfig;
use crate::proto::address::Address;
use crate::proto::cipher::{MasterKey, Method};
use crate::proto::replay;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Which program we are: picked from argv[0] or the first argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Local,
    Tunnel,
    Redir,
    Server,
}

impl Mode {
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "local" | "ss-local" => Some(Mode::Local),
            "tunnel" | "ss-tunnel" => Some(Mode::Tunnel),
            "redir" | "ss-redir" => Some(Mode::Redir),
            "server" | "ss-server" => Some(Mode::Server),
            _ => None,
        }
    }

    /// This mode's bit in `options::Modes`.
    pub fn bit(self) -> u8 {
        match self {
            Mode::Local => 1,
            Mode::Tunnel => 2,
            Mode::Redir => 4,
            Mode::Server => 8,
        }
    }

    /// The libev program name, used in logs and messages.
    pub fn program(self) -> &'static str {
        match self {
            Mode::Local => "ss-local",
            Mode::Tunnel => "ss-tunnel",
            Mode::Redir => "ss-redir",
            Mode::Server => "ss-server",
        }
    }
}

/// libev's `"mode"` / `-u` / `-U`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    TcpOnly,
    TcpAndUdp,
    UdpOnly,
}

impl Transport {
    pub fn tcp(self) -> bool {
        self != Transport::UdpOnly
    }
    pub fn udp(self) -> bool {
        self != Transport::TcpOnly
    }
    /// The JSON spelling (`"mode"`, `"plugin_mode"`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::TcpOnly => "tcp_only",
            Transport::TcpAndUdp => "tcp_and_udp",
            Transport::UdpOnly => "udp_only",
        }
    }
}

/// A remote Shadowsocks server as configured: host name or IP literal, not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
    /// Its own method, keys and plugin (the `servers` array, a link, a server list); `None`:
    /// the config's `method`, `key` and `plugin`.
    pub own: Option<Box<OwnSettings>>,
}

impl ServerAddr {
    pub fn new(host: String, port: u16) -> ServerAddr {
        ServerAddr {
            host,
            port,
            own: None,
        }
    }
}

/// A server's settings of its own.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnSettings {
    pub method: Method,
    pub key: MasterKey,
    /// SIP023 identity keys before `key`, outermost first.
    pub identity_keys: Vec<MasterKey>,
    /// Program and options; `None` for no plugin.
    pub plugin: Option<(String, Option<String>)>,
    pub remarks: Option<String>,
}

impl std::fmt::Debug for OwnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("OwnSettings")
            .field("method", &self.method)
            .field("plugin", &self.plugin)
            .field("remarks", &self.remarks)
            .finish_non_exhaustive()
    }
}

/// Memory and connection limits. Peak buffer memory is `pool_blocks * policy::memory::BLOCK_SIZE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Simultaneous TCP connections; the accept loop waits when reached.
    pub max_conns: usize,
    /// Number of fixed-size buffers allocated at start.
    pub pool_blocks: usize,
    /// UDP associations kept at once; the oldest idle one is evicted when full.
    pub udp_assocs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 1024,
            pool_blocks: 64,
            udp_assocs: 256,
        }
    }
}

/// ss-server's defences against probing and abuse. These are new keys: libev ignores them, and
/// client modes do too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerOpts {
    /// Salts per half of the replay filter (`--replay-capacity`/`replay_capacity`); at least
    /// this many recent sessions' salts are remembered.
    pub replay_capacity: usize,
    /// Per-source bans after failed authentications (`--ban-failures`/`ban_failures`,
    /// `--ban-window`/`ban_window`, `--ban-time`/`ban_time`); `failures == 0` disables them.
    pub ban: BanConfig,
    /// `--allow-private-targets`/`allow_private_targets`: let clients reach loopback, private
    /// and link-local targets (see `policy::targets`).
    pub allow_private_targets: bool,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            replay_capacity: replay::DEFAULT_CAPACITY,
            ban: BanConfig::default(),
            allow_private_targets: false,
        }
    }
}

/// One run's configuration, complete and checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    /// Remote servers (client modes); ss-server's listen addresses (server mode).
    pub servers: Vec<ServerAddr>,
    /// `--server-list`: a SIP008 file of more servers, read at start and on SIGHUP.
    pub server_list: Option<PathBuf>,
    pub method: Method,
    pub key: MasterKey,
    /// Listen address for client modes (`-b`/`local_address`, default 127.0.0.1). Not
    /// resolved yet. In server mode always 127.0.0.1 (`-b` means something else there).
    pub local_addr: String,
    /// Listen port for client modes (`-l`/`local_port`); in server mode 0 unless given.
    pub local_port: u16,
    /// ss-tunnel's fixed destination (`-L`/`tunnel_address`).
    pub tunnel_addr: Option<Address>,
    pub transport: Transport,
    /// Idle timeout for TCP connections and UDP associations (`-t`/`timeout`, default 60 s).
    pub timeout: Duration,
    /// `--handshake-timeout`: how long a new connection has for its request (SOCKS5) or first
    /// chunk (ss-server); default 10 s.
    pub handshake_timeout: Duration,
    pub fast_open: bool,
    pub no_delay: bool,
    pub reuse_port: bool,
    pub ipv6_first: bool,
    /// ss-redir `-T`/`tcp_tproxy`: TCP arrives via TPROXY (IP_TRANSPARENT) rather than REDIRECT.
    pub tcp_tproxy: bool,
    /// `-n`/`nofile`: raise RLIMIT_NOFILE to this.
    pub nofile: Option<u64>,
    /// `-a`/`user`: drop privileges to this user after binding.
    pub user: Option<String>,
    /// `-f`: write our pid here.
    pub pid_file: Option<PathBuf>,
    /// `-i`: SO_BINDTODEVICE on sockets to the server.
    pub interface: Option<String>,
    /// `--fwmark`/`fwmark`: SO_MARK on sockets to the server.
    pub fwmark: Option<u32>,
    /// `--mtu`/`mtu`: only used to size UDP reads; 0 = default.
    pub mtu: u32,
    pub verbose: bool,
    pub use_syslog: bool,
    pub plugin: Option<String>,
    /// Where `plugin` was set, for messages: `--plugin` or `"plugin" in the config file`
    /// (empty when there is no plugin).
    pub plugin_source: &'static str,
    pub plugin_opts: Option<String>,
    /// `plugin_args`/`--plugin-args`: extra argv for the plugin program.
    pub plugin_args: Vec<String>,
    /// `plugin_mode` (SIP003u): which of TCP and UDP go through the plugin.
    pub plugin_mode: Transport,
    /// ss-server: source address for outgoing IPv4 connections (`-b`, `local_address`,
    /// `local_ipv4_address`).
    pub outbound_bind_v4: Option<Ipv4Addr>,
    /// ss-server: source address for outgoing IPv6 connections (`-b`, `local_address`,
    /// `local_ipv6_address`).
    pub outbound_bind_v6: Option<Ipv6Addr>,
    /// ss-server `-d`/`nameserver`: resolvers for target names (port 53 unless given); empty
    /// means the system's.
    pub nameservers: Vec<SocketAddr>,
    pub limits: Limits,
    /// ss-server only: replay filter, bans and target policy.
    pub server: ServerOpts,
    /// Shadowsocks 2022 clients: the identity keys before `key` in an `iPSK:…:uPSK` chain
    /// (SIP023), outermost first; empty for a plain key.
    pub identity_keys: Vec<MasterKey>,
    /// ss-server with Shadowsocks 2022: its users' names and keys (`users`); `key` is then the
    /// server's identity key.
    pub users: Vec<(String, MasterKey)>,
}
