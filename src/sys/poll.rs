//! epoll and signalfd for the event loop in `rt`: sources are registered once, edge-triggered,
//! for both directions, so waiting never costs an `epoll_ctl`; SIGTERM and SIGINT arrive as a
//! readable descriptor instead of through a handler.

use nix::libc;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{SockaddrLike, SockaddrStorage};
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub struct Poller(Epoll);

/// What a wait reported for one source (`key` as given to [`Poller::add`]).
#[derive(Clone, Copy, Debug)]
pub struct Readiness {
    pub key: u64,
    pub readable: bool,
    pub writable: bool,
    /// The peer closed its sending side (RDHUP), or the descriptor hung up or failed.
    pub closed: bool,
}

/// The buffer a wait fills.
pub struct Events(Vec<EpollEvent>);

impl Events {
    pub fn with_capacity(n: usize) -> Events {
        Events(vec![EpollEvent::empty(); n.max(1)])
    }
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?))
    }

    /// Watches `fd` for both directions until it is deleted or closed. Edge-triggered: an event
    /// comes when the descriptor *becomes* readable or writable, so the owner keeps track of
    /// readiness until an operation reports `WouldBlock`.
    pub fn add(&self, fd: impl AsFd, key: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        Ok(self.0.add(fd, EpollEvent::new(flags, key))?)
    }

    /// Waits up to `timeout` (rounded up to a millisecond, so a timer is never woken for
    /// early; `None` = until an event) and returns the events. EINTR counts as no event.
    pub fn wait<'e>(
        &self,
        events: &'e mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<impl Iterator<Item = Readiness> + 'e> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => EpollTimeout::try_from(timeout_ms(t)).unwrap_or(EpollTimeout::MAX),
        };
        let n = match self.0.wait(&mut events.0, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(events.0[..n].iter().map(|e| {
            let f = e.events();
            let failed = f.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
            Readiness {
                key: e.data(),
                closed: failed || f.contains(EpollFlags::EPOLLRDHUP),
                readable: failed
                    || f.intersects(
                        EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLPRI,
                    ),
                writable: failed || f.contains(EpollFlags::EPOLLOUT),
            }
        }))
    }
}

/// Accepts a connection as a non-blocking, close-on-exec socket in one call (`accept4`),
/// where std's accept would need a second call to make it non-blocking.
pub fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` and `len` describe a writable sockaddr_storage; accept4 writes at most
    // `len` bytes into it and stores the length it used.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            addr.as_mut_ptr().cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: the storage was zeroed and the kernel filled `len` bytes of it.
    let storage = unsafe { SockaddrStorage::from_raw(addr.as_ptr().cast(), Some(len)) };
    let peer = storage.and_then(|s| match (s.as_sockaddr_in(), s.as_sockaddr_in6()) {
        (Some(a), _) => Some(SocketAddr::V4((*a).into())),
        (None, Some(a)) => Some(SocketAddr::V6((*a).into())),
        _ => None,
    });
    let peer = peer.ok_or_else(|| io::Error::other("accepted a connection that is not IP"))?;
    Ok((stream, peer))
}

/// SIGTERM, SIGINT and SIGCHLD (a plugin ended), blocked for the process and delivered
/// through a non-blocking descriptor. Call before any thread is started: the mask is per
/// thread, and a thread that does not block them would take the signals instead.
pub fn term_signals() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGUSR1);
    set.add(Signal::SIGHUP);
    set.thread_block()?;
    Ok(SignalFd::with_flags(
        &set,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
}

/// The next pending signal from [`term_signals`] by name; `WouldBlock` when there is none.
pub fn read_term_signal(fd: &SignalFd) -> io::Result<&'static str> {
    match fd.read_signal()? {
        Some(info) if info.ssi_signo == Signal::SIGINT as u32 => Ok("SIGINT"),
        Some(info) if info.ssi_signo == Signal::SIGCHLD as u32 => Ok("SIGCHLD"),
        Some(info) if info.ssi_signo == Signal::SIGUSR1 as u32 => Ok("SIGUSR1"),
        Some(info) if info.ssi_signo == Signal::SIGHUP as u32 => Ok("SIGHUP"),
        Some(_) => Ok("SIGTERM"),
        None => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// `t` in milliseconds, rounded up, at most `i32::MAX`. Whole seconds are whole milliseconds, so
/// only the nanoseconds round up (not `as_nanos().div_ceil(..)`: a u128 division links 2 KB of
/// compiler-rt into the router binaries).
fn timeout_ms(t: Duration) -> i32 {
    let sub_ms = u64::from(t.subsec_nanos().div_ceil(1_000_000));
    let ms = t.as_secs().saturating_mul(1000).saturating_add(sub_ms);
    ms.min(i32::MAX as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_a_millisecond() {
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(999_999),
            Duration::from_millis(1),
            Duration::new(1, 1),
            Duration::new(2_147_483, 647_000_000),
            Duration::new(2_147_483, 647_000_001),
            Duration::new(u64::MAX, 999_999_999),
        ];
        for t in cases {
            let expected = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
            assert_eq!(timeout_ms(t), expected, "{t:?}");
        }
    }
}
