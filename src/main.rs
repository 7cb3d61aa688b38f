//! `ss-smol`: one binary, several programs. The mode comes from the name it was run as
//! (`ss-local`, `ss-tunnel`, `ss-redir`, `ss-server`) or from the first argument
//! (`ss-smol local …`).

#![deny(unsafe_code)]

use ss_smol::config::{self, LoadError, Mode};
use ss_smol::{logger, mode};
use std::process::ExitCode;

// Large zeroed blocks must cost no RSS until used, whichever C library is linked (sys/alloc.rs).
#[global_allocator]
static ALLOCATOR: ss_smol::sys::Allocator = ss_smol::sys::Allocator;

const USAGE: &str = "\
usage: ss-smol MODE [OPTIONS]    (or run as ss-local, ss-tunnel, ss-redir, ss-server)

A small Shadowsocks client and server for routers, compatible with shadowsocks-libev.

modes:
  local     SOCKS5 proxy (ss-local)
  tunnel    port forward through the server, e.g. DNS (ss-tunnel)
  redir     transparent proxy for nftables/iptables REDIRECT and TPROXY (ss-redir)
  server    Shadowsocks server (ss-server)
  url       ss:// links (SIP002): `ss-smol url LINK…` prints each as a config file,
            `ss-smol url -c FILE` (or -s -p -k -m …) prints the configured servers as links

`ss-smol MODE --help` lists a mode's options; `ss-smol --version` prints the version.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("ss-smol");
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    // Messages name the program as it was invoked, so "see … --help" can be typed as shown.
    let (mode, rest, program) = match Mode::from_name(name) {
        Some(m) => (m, args.get(1..).unwrap_or(&[]), m.program().to_string()),
        None => match args.get(1).map(String::as_str) {
            Some("--version" | "-V") => {
                println!("ss-smol {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            Some("--help" | "-h" | "help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some("url") => return url(args.get(2..).unwrap_or(&[])),
            Some(m) => match Mode::from_name(m) {
                Some(mode) => (
                    mode,
                    args.get(2..).unwrap_or(&[]),
                    config::options::mode_name(mode, true),
                ),
                None => {
                    eprintln!("ss-smol: unknown mode '{m}'; expected one of: local, tunnel, redir, server");
                    return ExitCode::from(2);
                }
            },
            None => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    if rest.iter().any(|a| a == "--version") {
        println!("{} (ss-smol) {}", mode.program(), env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    logger::init(mode.program());
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let cfg = match config::load(mode, &program, &rest) {
        Ok(cfg) => cfg,
        Err(LoadError::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(LoadError::Invalid(msg)) => {
            log::error!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    logger::configure(cfg.verbose, cfg.use_syslog);
    match mode::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            log::error!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// `ss-smol url`: links to config and back, for an admin pasting a provider's link.
fn url(args: &[String]) -> ExitCode {
    use ss_smol::config::server_entry::{parse_ss_url, to_json};
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: ss-smol url ss://LINK…        print each link as a config file (JSON)\n       \
             ss-smol url -c FILE | -s HOST -p PORT -k PASSWORD -m METHOD …\n                \
             print the configured servers as ss:// links"
        );
        return ExitCode::SUCCESS;
    }
    if args.iter().all(|a| a.starts_with("ss://")) {
        for (n, link) in args.iter().enumerate() {
            match parse_ss_url(link) {
                Ok(e) => println!("{}", to_json(&e)),
                Err(why) => {
                    eprintln!("ss-smol url: link {}: {why}", n + 1);
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let links = config::settings(Mode::Local, "ss-smol url", &args)
        .map_err(|e| match e {
            LoadError::Help(text) | LoadError::Invalid(text) => text,
        })
        .and_then(|s| config::links(&s));
    match links {
        Ok(links) => {
            links.iter().for_each(|l| println!("{l}"));
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("ss-smol url: {why}");
            ExitCode::FAILURE
        }
    }
}
