//! The command line, read the way libev's getopt reads it, driven by the option table
//! (`config::options`): `-p 8388`, `-p8388`, `--server-port 8388`, `--server-port=8388`,
//! switches `-u -v` or combined `-uv`.
//!
//! A flag of another program (`--ban-failures` given to ss-local) is an error that says whose
//! it is: silently accepting it would leave the admin believing it took effect. Every error is
//! one line ending in `(see PROGRAM --help)`, PROGRAM named as it was invoked.

use super::options::{self, Opt, Rule, OPTIONS};
use super::settings::Settings;
use super::value;
use super::LoadError;
use crate::quote::Quoted;
use std::path::PathBuf;

/// Reads `args` (without argv[0]) into `s`'s command-line layer. `program` is how the user
/// invoked us (`ss-local`, `ss-smol local`), for help and messages.
pub fn parse_args(s: &mut Settings, program: &str, args: &[&str]) -> Result<(), LoadError> {
    let fail = |msg: String| LoadError::Invalid(format!("{msg} (see {program} --help)"));
    let mut i = 0;
    while let Some(&arg) = args.get(i) {
        i += 1;
        if arg == "-h" || arg == "--help" {
            return Err(LoadError::Help(options::help_text(s.mode, program)));
        }
        if let Some(long) = arg.strip_prefix("--").filter(|l| !l.is_empty()) {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let shown = format!("--{name}");
            let o = find(s, program, &shown, |o| o.long == Some(name)).map_err(fail)?;
            let text = match (o.rule, inline) {
                (Rule::Switch, Some(_)) => return Err(fail(format!("{shown} takes no value"))),
                (Rule::Switch, None) => "",
                (_, Some(v)) => v,
                (_, None) => next_value(args, &mut i, &shown).map_err(fail)?,
            };
            store(s, o, &shown, text).map_err(fail)?;
        } else if let Some(shorts) = arg.strip_prefix('-').filter(|r| !r.is_empty()) {
            for (at, c) in shorts.char_indices() {
                let shown = format!("-{c}");
                let o = find(s, program, &shown, |o| o.short == Some(c)).map_err(fail)?;
                if o.rule == Rule::Switch {
                    store(s, o, &shown, "").map_err(fail)?;
                    continue;
                }
                // `-p8388`: the rest of the word is the value; `-p 8388`: the next word.
                let rest = &shorts[at + c.len_utf8()..];
                let text = if rest.is_empty() {
                    next_value(args, &mut i, &shown).map_err(fail)?
                } else {
                    rest
                };
                store(s, o, &shown, text).map_err(fail)?;
                break;
            }
        } else {
            return Err(fail(format!("unexpected argument {}", Quoted(arg))));
        }
    }
    Ok(())
}

fn next_value<'a>(args: &[&'a str], i: &mut usize, shown: &str) -> Result<&'a str, String> {
    let v = args
        .get(*i)
        .ok_or_else(|| format!("{shown} needs a value"))?;
    *i += 1;
    Ok(v)
}

/// The row for a flag in this mode, or an error saying whose flag it is, or what was meant.
fn find(
    s: &Settings,
    program: &str,
    shown: &str,
    matches: impl Fn(&Opt) -> bool,
) -> Result<&'static Opt, String> {
    if let Some(o) = OPTIONS.iter().find(|o| matches(o) && o.modes.has(s.mode)) {
        return Ok(o);
    }
    let multi = program.starts_with("ss-smol");
    if let Some(o) = OPTIONS.iter().find(|o| matches(o)) {
        let owners: Vec<String> = o
            .modes
            .iter()
            .map(|m| options::mode_name(m, multi))
            .collect();
        let owners = match owners.as_slice() {
            [one] => format!("an {one} option"),
            [init @ .., last] => format!("an option of {} and {last}", init.join(", ")),
            [] => "not an option here".into(),
        };
        return Err(format!("{shown} is {owners}; remove it"));
    }
    let hint = shown
        .strip_prefix("--")
        .and_then(|l| {
            options::closest(
                l,
                OPTIONS
                    .iter()
                    .filter(|o| o.modes.has(s.mode))
                    .filter_map(|o| o.long),
            )
        })
        .map(|l| format!(" (did you mean --{l}?)"))
        .unwrap_or_default();
    Err(format!("unknown option {shown}{hint}"))
}

fn store(s: &mut Settings, o: &Opt, shown: &str, text: &str) -> Result<(), String> {
    if o.id == options::Id::Config {
        s.path = Some(PathBuf::from(text));
        return Ok(());
    }
    match value::parse_text(o.rule, text) {
        Ok(Some(v)) => s.set_cli(o.id, v),
        Ok(None) => {}
        // Secrets (and links, which hold one) are never echoed, even when wrong.
        Err(e) if matches!(o.rule, Rule::Secret | Rule::Links) => {
            return Err(format!("{shown} {e}"))
        }
        Err(e) => return Err(format!("{shown} {} {e}", Quoted(text))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::options::Id;
    use crate::config::value::{HostPort, Secret};
    use crate::config::Mode;

    fn parse_in(mode: Mode, args: &[&str]) -> Settings {
        let mut s = Settings::new(mode);
        match parse_args(&mut s, mode.program(), args) {
            Ok(()) => s,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn parse(args: &[&str]) -> Settings {
        parse_in(Mode::Tunnel, args)
    }

    fn fails_in(mode: Mode, args: &[&str]) -> String {
        let mut s = Settings::new(mode);
        match parse_args(&mut s, mode.program(), args) {
            Ok(()) => panic!("{args:?} accepted: {s:?}"),
            Err(LoadError::Help(h)) => panic!("{args:?} gave help: {h}"),
            Err(LoadError::Invalid(e)) => {
                assert!(
                    e.ends_with(&format!("(see {} --help)", mode.program())),
                    "{e}"
                );
                e
            }
        }
    }

    fn fails(args: &[&str]) -> String {
        fails_in(Mode::Local, args)
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
        ]);
        assert_eq!(cli.path, Some(PathBuf::from("/etc/ss.json")));
        assert_eq!(
            cli.hosts(Id::Server),
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
        assert_eq!(cli.port(Id::ServerPort), Some(8388));
        assert_eq!(cli.text(Id::LocalAddress).as_deref(), Some("0.0.0.0"));
        assert_eq!(cli.port(Id::LocalPort), Some(1080));
        assert_eq!(cli.secret_cli(Id::Password).map(Secret::expose), Some("pw"));
        assert_eq!(cli.text(Id::Method).as_deref(), Some("aes-256-gcm"));
        assert_eq!(cli.num(Id::Timeout), Some(300));
        assert!(cli.flag(Id::TcpAndUdp) && !cli.flag(Id::UdpOnly));
        assert_eq!(
            cli.text(Id::TunnelAddress).as_deref(),
            Some("192.0.2.53:53")
        );
        assert!(cli.flag(Id::Ipv6First) && cli.flag(Id::Verbose));
        assert_eq!(cli.num(Id::Nofile), Some(4096));
        assert_eq!(cli.text(Id::User).as_deref(), Some("nobody"));
        assert_eq!(cli.text(Id::PidFile).as_deref(), Some("/var/run/ss.pid"));
        assert_eq!(cli.text(Id::Interface).as_deref(), Some("eth1"));
        assert!(!format!("{cli:?}").contains("\"pw\""));

        let server = parse_in(
            Mode::Server,
            &["-d", "192.0.2.1", "-d", "192.0.2.2,192.0.2.3"],
        );
        assert_eq!(server.nameservers(Id::Nameserver).len(), 3);
        assert!(parse_in(Mode::Redir, &["-T"]).flag(Id::TcpTproxy));
    }

    #[test]
    fn getopt_forms() {
        let a = parse(&["-p8388", "--local-port=1080", "-uv", "-k", "-x-"]);
        assert_eq!(a.port(Id::ServerPort), Some(8388));
        assert_eq!(a.port(Id::LocalPort), Some(1080));
        assert!(a.flag(Id::TcpAndUdp) && a.flag(Id::Verbose));
        // A value that looks like a flag is still the value, as with getopt.
        assert_eq!(a.secret_cli(Id::Password).map(Secret::expose), Some("-x-"));
        // A switch followed by a value-taking flag in the same word.
        let b = parse(&["-vp443"]);
        assert!(b.flag(Id::Verbose));
        assert_eq!(b.port(Id::ServerPort), Some(443));
        assert!(fails(&["--fast-open=yes"]).contains("--fast-open takes no value"));
        assert!(fails(&["-p"]).starts_with("-p needs a value"));
        assert!(fails(&["--server-port"]).starts_with("--server-port needs a value"));
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
        assert!(
            cli.flag(Id::UdpOnly)
                && cli.flag(Id::FastOpen)
                && cli.flag(Id::ReusePort)
                && cli.flag(Id::NoDelay)
                && cli.flag(Id::UseSyslog)
        );
        assert_eq!(cli.num(Id::Mtu), Some(1492));
        assert_eq!(cli.text(Id::Plugin).as_deref(), Some("obfs-local"));
        assert_eq!(cli.text(Id::PluginOpts).as_deref(), Some("obfs=http"));
        assert_eq!(cli.num(Id::Fwmark), Some(1));
        assert_eq!(
            (
                cli.num(Id::MaxConns),
                cli.num(Id::PoolBlocks),
                cli.num(Id::UdpAssocs)
            ),
            (Some(10), Some(20), Some(30))
        );
        assert_eq!(cli.secret_cli(Id::Key).map(Secret::expose), Some("AAAA"));
    }

    #[test]
    fn server_defence_flags() {
        let cli = parse_in(
            Mode::Server,
            &[
                "--replay-capacity",
                "1024",
                "--ban-failures",
                "0",
                "--ban-window",
                "30",
                "--ban-time",
                "0x258",
                "--allow-private-targets",
            ],
        );
        assert_eq!(cli.num(Id::ReplayCapacity), Some(1024));
        assert_eq!(cli.num(Id::BanFailures), Some(0));
        assert_eq!(
            (cli.num(Id::BanWindow), cli.num(Id::BanTime)),
            (Some(30), Some(600))
        );
        assert!(cli.flag(Id::AllowPrivateTargets));
        let cli = parse_in(Mode::Server, &[]);
        assert!(cli.cli(Id::ReplayCapacity).is_none() && cli.cli(Id::BanFailures).is_none());
        assert!(!cli.flag(Id::AllowPrivateTargets));

        let srv = |a: &[&str]| fails_in(Mode::Server, a);
        assert!(srv(&["--replay-capacity", "0"]).contains("a salt count (1-4194304)"));
        assert!(srv(&["--replay-capacity", "99999999"]).contains("a salt count"));
        assert!(srv(&["--ban-failures", "-1"]).contains("a failure count"));
        assert!(srv(&["--ban-window", "0"]).contains("a number of seconds"));
        assert!(srv(&["--ban-time", "forever"]).contains("a number of seconds"));
        assert!(srv(&["--allow-private-targets", "true"]).contains("unexpected argument"));
    }

    #[test]
    fn other_programs_flags_are_refused() {
        assert_eq!(
            fails(&["--ban-failures", "3"]),
            "--ban-failures is an ss-server option; remove it (see ss-local --help)"
        );
        assert!(fails(&["-T"]).starts_with("-T is an ss-redir option"));
        assert!(fails(&["--replay-capacity", "9"]).starts_with("--replay-capacity is an ss-server"));
        assert!(fails(&["-L", "h:1"]).starts_with("-L is an ss-tunnel option"));
        assert!(fails_in(Mode::Server, &["-l", "1"])
            .starts_with("-l is an option of ss-local, ss-tunnel and ss-redir; remove it"));
        let mut s = Settings::new(Mode::Local);
        let e = parse_args(&mut s, "ss-smol local", &["--replay-capacity", "1"]).unwrap_err();
        assert_eq!(
            e,
            LoadError::Invalid(
                "--replay-capacity is an ss-smol server option; remove it (see ss-smol local \
                 --help)"
                    .into()
            )
        );
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
        assert!(!fails(&["--key", ""]).contains("\"\""));
        assert!(fails(&["--acl", "x"]).contains("unknown option --acl"));
        assert!(fails(&["--fast-opne"]).contains("(did you mean --fast-open?)"));
        assert!(fails(&["positional"]).contains("unexpected argument \"positional\""));
        assert!(fails(&["-x"]).starts_with("unknown option -x"));
    }

    #[test]
    fn help_is_not_an_error() {
        for flag in ["-h", "--help"] {
            let mut s = Settings::new(Mode::Tunnel);
            let Err(LoadError::Help(h)) = parse_args(&mut s, "ss-tunnel", &["-v", flag]) else {
                panic!("{flag}: no help");
            };
            assert!(h.starts_with("Usage: ss-tunnel"), "{h}");
            assert!(h.contains("--tunnel-address"));
        }
    }
}
