//! Command-line flags shared by ss-local, ss-tunnel, ss-redir and ss-server.
//!
//! Short flags are exactly shadowsocks-libev's, so procd init scripts and habits carry over;
//! long names follow libev where it has them. Values are checked by the same rules as the JSON
//! file (`config::value`); what is required, and what overrides what, is `config::merge`'s job.

use crate::config::value::{self, HostPort, Secret};
use argh::FromArgs;
use std::path::PathBuf;

/// Shadowsocks for routers (shadowsocks-libev compatible flags; they override the -c file).
#[derive(FromArgs, Debug, Default, Clone, PartialEq)]
#[argh(help_triggers("-h", "--help"))]
pub struct Cli {
    /// JSON config file in shadowsocks-libev format
    #[argh(option, short = 'c', arg_name = "file")]
    pub config: Option<PathBuf>,

    /// server host, HOST:PORT or [IPv6]:PORT; repeat for several servers (ss-server: address to
    /// listen on, default 0.0.0.0)
    #[argh(option, short = 's', arg_name = "host", from_str_fn(host_port))]
    pub server: Vec<HostPort>,

    /// server port (ss-server: port to listen on)
    #[argh(option, short = 'p', arg_name = "port", from_str_fn(port))]
    pub server_port: Option<u16>,

    /// client modes: address to listen on (default 127.0.0.1); ss-server: source address for
    /// outgoing connections
    #[argh(option, short = 'b', arg_name = "addr", from_str_fn(host))]
    pub local_address: Option<String>,

    /// client modes: port to listen on
    #[argh(option, short = 'l', arg_name = "port", from_str_fn(port))]
    pub local_port: Option<u16>,

    /// password (the key is derived from it)
    #[argh(option, short = 'k', arg_name = "password", from_str_fn(secret))]
    pub password: Option<Secret>,

    /// base64 key (standard or URL-safe); used instead of a password when both are given
    #[argh(option, arg_name = "base64", from_str_fn(secret))]
    pub key: Option<Secret>,

    /// cipher: chacha20-ietf-poly1305 (default), aes-128-gcm, aes-192-gcm, aes-256-gcm,
    /// xchacha20-ietf-poly1305
    #[argh(option, short = 'm', arg_name = "method", from_str_fn(nonempty))]
    pub encrypt_method: Option<String>,

    /// idle timeout in seconds (default 60)
    #[argh(option, short = 't', arg_name = "secs", from_str_fn(timeout))]
    pub timeout: Option<u64>,

    /// relay TCP and UDP
    #[argh(switch, short = 'u')]
    pub tcp_and_udp: bool,

    /// relay UDP only
    #[argh(switch, short = 'U')]
    pub udp_only: bool,

    /// ss-tunnel: destination HOST:PORT to forward to
    #[argh(option, short = 'L', arg_name = "host:port", from_str_fn(nonempty))]
    pub tunnel_address: Option<String>,

    /// prefer IPv6 when resolving names
    #[argh(switch, short = '6')]
    pub ipv6_first: bool,

    /// log debug messages
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// raise the open file limit (RLIMIT_NOFILE) to this
    #[argh(option, short = 'n', arg_name = "num", from_str_fn(nofile))]
    pub nofile: Option<u64>,

    /// run as this user after binding
    #[argh(option, short = 'a', arg_name = "user", from_str_fn(nonempty))]
    pub user: Option<String>,

    /// write the process id to this file
    #[argh(option, short = 'f', arg_name = "file")]
    pub pid_file: Option<PathBuf>,

    /// send traffic to the server (ss-server: to targets) through this network interface
    #[argh(option, short = 'i', arg_name = "iface", from_str_fn(interface))]
    pub interface: Option<String>,

    /// ss-server: name server IP[:PORT] for resolving targets; repeat or separate with commas
    #[argh(option, short = 'd', arg_name = "addr")]
    pub nameserver: Vec<String>,

    /// ss-redir: transparent TCP via TPROXY instead of REDIRECT
    #[argh(switch, short = 'T')]
    pub tcp_tproxy: bool,

    /// enable TCP fast open
    #[argh(switch)]
    pub fast_open: bool,

    /// set SO_REUSEPORT on listening sockets
    #[argh(switch)]
    pub reuse_port: bool,

    /// set TCP_NODELAY on relayed connections
    #[argh(switch)]
    pub no_delay: bool,

    /// MTU of the path, used to size UDP buffers (0: default)
    #[argh(option, arg_name = "mtu", from_str_fn(mtu))]
    pub mtu: Option<u32>,

    /// SIP003 plugin program
    #[argh(option, arg_name = "name")]
    pub plugin: Option<String>,

    /// SIP003 plugin options, e.g. "obfs=http;obfs-host=example.com"
    #[argh(option, arg_name = "opts")]
    pub plugin_opts: Option<String>,

    /// firewall mark (SO_MARK) for sockets to the server, decimal or 0x hex
    #[argh(option, arg_name = "mark", from_str_fn(fwmark))]
    pub fwmark: Option<u32>,

    /// most TCP connections relayed at once (default 1024)
    #[argh(option, arg_name = "num", from_str_fn(max_conns))]
    pub max_conns: Option<usize>,

    /// buffers allocated at start; bounds relay memory (default 64)
    #[argh(option, arg_name = "num", from_str_fn(pool_blocks))]
    pub pool_blocks: Option<usize>,

    /// most UDP associations kept at once (default 256)
    #[argh(option, arg_name = "num", from_str_fn(udp_assocs))]
    pub udp_assocs: Option<usize>,

    /// log to syslog (/dev/log) instead of stderr
    #[argh(switch)]
    pub use_syslog: bool,

    /// ss-server: recent salts remembered to refuse replayed connections (per half of the
    /// filter; RAM is about 7.2 bytes per salt, default 65536)
    #[argh(option, arg_name = "num", from_str_fn(replay_capacity))]
    pub replay_capacity: Option<usize>,

    /// ss-server: failed authentications from one address (IPv6: one /64) within --ban-window
    /// that get it refused; 0 disables banning (default 20)
    #[argh(option, arg_name = "num", from_str_fn(ban_failures))]
    pub ban_failures: Option<u32>,

    /// ss-server: seconds over which failed authentications are counted (default 60)
    #[argh(option, arg_name = "secs", from_str_fn(ban_seconds))]
    pub ban_window: Option<u64>,

    /// ss-server: seconds a banned address is refused (default 120)
    #[argh(option, arg_name = "secs", from_str_fn(ban_seconds))]
    pub ban_time: Option<u64>,

    /// ss-server: let clients reach loopback, private (RFC 1918, fc00::/7), link-local and
    /// similar addresses, which are refused by default
    #[argh(switch)]
    pub allow_private_targets: bool,
}

fn host_port(s: &str) -> Result<HostPort, String> {
    value::parse_host_port(s)
}
fn host(s: &str) -> Result<String, String> {
    value::check_host(s)
}
fn port(s: &str) -> Result<u16, String> {
    value::parse_port(s)
}
fn secret(s: &str) -> Result<Secret, String> {
    value::parse_nonempty(s).map(Secret::new)
}
fn nonempty(s: &str) -> Result<String, String> {
    value::parse_nonempty(s)
}
fn timeout(s: &str) -> Result<u64, String> {
    value::TIMEOUT.parse(s)
}
fn nofile(s: &str) -> Result<u64, String> {
    value::NOFILE.parse(s)
}
fn interface(s: &str) -> Result<String, String> {
    value::parse_interface(s)
}
fn mtu(s: &str) -> Result<u32, String> {
    value::parse_u32(&value::MTU, s)
}
fn fwmark(s: &str) -> Result<u32, String> {
    value::parse_u32(&value::FWMARK, s)
}
fn max_conns(s: &str) -> Result<usize, String> {
    value::parse_usize(&value::MAX_CONNS, s)
}
fn pool_blocks(s: &str) -> Result<usize, String> {
    value::parse_usize(&value::POOL_BLOCKS, s)
}
fn udp_assocs(s: &str) -> Result<usize, String> {
    value::parse_usize(&value::UDP_ASSOCS, s)
}
fn replay_capacity(s: &str) -> Result<usize, String> {
    value::parse_usize(&value::REPLAY_CAPACITY, s)
}
fn ban_failures(s: &str) -> Result<u32, String> {
    value::parse_u32(&value::BAN_FAILURES, s)
}
fn ban_seconds(s: &str) -> Result<u64, String> {
    value::BAN_SECONDS.parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        match Cli::from_args(&["ss-local"], args) {
            Ok(cli) => cli,
            Err(e) => panic!("{args:?}: {}", e.output),
        }
    }

    fn fails(args: &[&str]) -> String {
        match Cli::from_args(&["ss-local"], args) {
            Ok(cli) => panic!("{args:?} accepted: {cli:?}"),
            Err(e) => {
                assert!(e.status.is_err(), "{args:?} gave help");
                e.output
            }
        }
    }

    #[test]
    fn libev_short_flags() {
        let cli = parse(&[
            "-c",
            "/etc/ss.json",
            "-s",
            "203.0.113.1",
            "-s",
            "[2001:db8::1]:8443",
            "-p",
            "8388",
            "-b",
            "0.0.0.0",
            "-l",
            "1080",
            "-k",
            "pw",
            "-m",
            "aes-256-gcm",
            "-t",
            "300",
            "-u",
            "-L",
            "192.0.2.53:53",
            "-6",
            "-v",
            "-n",
            "4096",
            "-a",
            "nobody",
            "-f",
            "/var/run/ss.pid",
            "-i",
            "eth1",
            "-d",
            "192.0.2.1",
            "-T",
        ]);
        assert_eq!(cli.config, Some(PathBuf::from("/etc/ss.json")));
        assert_eq!(
            cli.server,
            vec![
                HostPort {
                    host: "203.0.113.1".into(),
                    port: None
                },
                HostPort {
                    host: "2001:db8::1".into(),
                    port: Some(8443)
                }
            ]
        );
        assert_eq!(cli.server_port, Some(8388));
        assert_eq!(cli.local_address.as_deref(), Some("0.0.0.0"));
        assert_eq!(cli.local_port, Some(1080));
        assert_eq!(cli.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(cli.encrypt_method.as_deref(), Some("aes-256-gcm"));
        assert_eq!(cli.timeout, Some(300));
        assert!(cli.tcp_and_udp && !cli.udp_only);
        assert_eq!(cli.tunnel_address.as_deref(), Some("192.0.2.53:53"));
        assert!(cli.ipv6_first && cli.verbose && cli.tcp_tproxy);
        assert_eq!(cli.nofile, Some(4096));
        assert_eq!(cli.user.as_deref(), Some("nobody"));
        assert_eq!(cli.pid_file, Some(PathBuf::from("/var/run/ss.pid")));
        assert_eq!(cli.interface.as_deref(), Some("eth1"));
        assert_eq!(cli.nameserver, vec!["192.0.2.1"]);
        assert!(!format!("{cli:?}").contains("\"pw\""));
    }

    #[test]
    fn long_flags() {
        let cli = parse(&[
            "--server",
            "ss.example",
            "--server-port",
            "1",
            "--local-port",
            "2",
            "--password",
            "x",
            "--key",
            "AAAA",
            "--encrypt-method",
            "aes-128-gcm",
            "--timeout",
            "5",
            "-U",
            "--fast-open",
            "--reuse-port",
            "--no-delay",
            "--mtu",
            "1492",
            "--plugin",
            "obfs-local",
            "--plugin-opts",
            "obfs=http",
            "--fwmark",
            "0x1",
            "--max-conns",
            "10",
            "--pool-blocks",
            "20",
            "--udp-assocs",
            "30",
            "--use-syslog",
        ]);
        assert!(cli.udp_only && cli.fast_open && cli.reuse_port && cli.no_delay && cli.use_syslog);
        assert_eq!(cli.mtu, Some(1492));
        assert_eq!(cli.plugin.as_deref(), Some("obfs-local"));
        assert_eq!(cli.plugin_opts.as_deref(), Some("obfs=http"));
        assert_eq!(cli.fwmark, Some(1));
        assert_eq!(
            (cli.max_conns, cli.pool_blocks, cli.udp_assocs),
            (Some(10), Some(20), Some(30))
        );
        assert_eq!(cli.key.as_ref().map(Secret::expose), Some("AAAA"));
    }

    #[test]
    fn server_defence_flags() {
        let cli = parse(&[
            "--replay-capacity",
            "1024",
            "--ban-failures",
            "0",
            "--ban-window",
            "30",
            "--ban-time",
            "0x258",
            "--allow-private-targets",
        ]);
        assert_eq!(cli.replay_capacity, Some(1024));
        assert_eq!(cli.ban_failures, Some(0));
        assert_eq!((cli.ban_window, cli.ban_time), (Some(30), Some(600)));
        assert!(cli.allow_private_targets);
        let cli = parse(&[]);
        assert_eq!(
            (
                cli.replay_capacity,
                cli.ban_failures,
                cli.ban_window,
                cli.ban_time
            ),
            (None, None, None, None)
        );
        assert!(!cli.allow_private_targets);

        assert!(fails(&["--replay-capacity", "0"]).contains("a salt count (1-4194304)"));
        assert!(fails(&["--replay-capacity", "99999999"]).contains("a salt count"));
        assert!(fails(&["--ban-failures", "-1"]).contains("a failure count"));
        assert!(fails(&["--ban-window", "0"]).contains("a number of seconds"));
        assert!(fails(&["--ban-time", "forever"]).contains("a number of seconds"));
        assert!(fails(&["--allow-private-targets", "true"]).contains("Unrecognized argument"));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(fails(&["-p", "abc"]).contains("must be a port number (1-65535)"));
        assert!(fails(&["-l", "0"]).contains("must be a port number"));
        assert!(fails(&["-t", "0"]).contains("must be a number of seconds"));
        assert!(fails(&["-s", "a:b:c"]).contains("-s"));
        assert!(fails(&["-i", "a-very-long-interface-name"]).contains("interface"));
        assert!(fails(&["--pool-blocks", "0"]).contains("buffer count"));
        assert!(fails(&["-k", ""]).contains("must not be empty"));
        assert!(fails(&["--acl", "x"]).contains("Unrecognized argument"));
        assert!(fails(&["positional"]).contains("Unrecognized argument"));
    }

    #[test]
    fn help_is_not_an_error() {
        for flag in ["-h", "--help"] {
            let e = Cli::from_args(&["ss-local"], &[flag]).unwrap_err();
            assert!(e.status.is_ok());
            assert!(e.output.contains("Usage: ss-local"), "{}", e.output);
            assert!(e.output.contains("--tunnel-address"));
        }
    }
}
