//! Operating-system specifics: the only module that calls socket options, rlimits and
//! credentials (Linux only, via nix).
//!
//! Everything above this layer sees plain `std::net` types. Functions used once at start-up
//! wrap errors with a line of context naming the option or address, so a start-up failure
//! prints something an admin can act on; functions on the per-connection path return the
//! bare OS error (kind and `raw_os_error` intact) unless the failure is a configuration
//! problem (fwmark, interface) that the message should name.
//!
//! All option numbers come from `libc`/`nix`: on MIPS (most OpenWrt routers) `SOL_SOCKET`,
//! `SO_REUSEADDR`, `SOCK_STREAM` and friends have different values than on x86/ARM.
//!
//! The one module where `unsafe` is allowed (the crate root denies it everywhere else, and
//! `lib.rs` lifts that for `sys` alone); clippy rejects any unsafe block here without a
//! `// SAFETY:` comment.

mod accounts;
mod alloc;
#[cfg(all(target_env = "musl", not(test)))]
mod c_heap;
pub mod child;
mod net;
mod poll;
pub mod ports;
mod process;
mod random;
mod redir;
mod slab;

pub use alloc::{release_pages, zeroed_bytes, Allocator};
pub use net::{
    bytes_queued, outbound_udp_socket, set_recv_lowat, start_tcp_connect, tcp_listener,
    udp_listener, OutboundOpts,
};
pub use poll::{accept, read_term_signal, term_signals, Events, Poller, Readiness};
pub use process::{
    capability_mask, kept_capabilities, nofile, raise_nofile_to_hard, run_as, set_nofile,
    Capability,
};
pub use random::random_salt;
pub use redir::{
    is_local_address, original_dst, recv_orig_dst, set_ip_transparent, tcp_tproxy_listener,
    udp_tproxy_listener, udp_tproxy_reply_socket, OrigDstBuf,
};

use nix::errno::Errno;
use std::fmt::Display;
use std::io;

/// An `io::Error` of the same kind as `e`, with `what` in front of the OS message.
fn ctx(e: Errno, what: impl Display) -> io::Error {
    io::Error::new(
        io::Error::from(e).kind(),
        format!("{what}: {}", os_message(e)),
    )
}

/// Like [`ctx`], with the likely cause or fix after the OS message.
fn ctx_hint(e: Errno, what: impl Display, hint: &str) -> io::Error {
    io::Error::new(
        io::Error::from(e).kind(),
        format!("{what}: {} ({hint})", os_message(e)),
    )
}

/// An I/O error's text without std's " (os error N)" suffix, for messages to users.
pub fn error_text(e: &io::Error) -> String {
    let mut text = e.to_string();
    if let Some(at) = text.rfind(" (os error ") {
        text.truncate(at);
    }
    text
}

/// The C library's text for `e` ("Permission denied"). Not `Errno::desc`: that is nix's own copy
/// of every message, kilobytes the binary already has in libc's `strerror`.
fn os_message(e: Errno) -> String {
    // std appends " (os error N)"; the number adds nothing for a reader.
    error_text(&io::Error::from(e))
}

#[cfg(test)]
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_libc_message_and_kind() {
        let e = ctx_hint(
            Errno::EACCES,
            "cannot bind 1.2.3.4:80",
            "try a port above 1023",
        );
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "cannot bind 1.2.3.4:80: Permission denied (try a port above 1023)"
        );
        assert_eq!(os_message(Errno::ENOENT), "No such file or directory");
    }
}
