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
