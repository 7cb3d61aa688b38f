//! `Async<T>`: a non-blocking socket (or other descriptor) registered with the event loop.
//!
//! Every operation is tried first and waits only if it would block, which is also what tells
//! the edge-triggered reactor to wait for the next edge: so all I/O goes through
//! [`Async::try_read_with`] / [`Async::try_write_with`] or the async helpers built on them,
//! never through [`Async::get_ref`] (that is for socket options and addresses).

use super::{reactor, Reactor, Source, READ, WRITE};
use futures_lite::{AsyncRead, AsyncWrite};
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

pub struct Async<T: AsFd> {
    io: T,
    source: Rc<Source>,
    reactor: Rc<Reactor>,
}

impl<T: AsFd> Async<T> {
    /// Registers `io`, which must already be non-blocking ([`Async::new`] makes sockets so).
    /// Both directions start out ready: the first operation finds out.
    pub fn new_nonblocking(io: T) -> io::Result<Async<T>> {
        let reactor = reactor()?;
        let source = reactor.register();
        if let Err(e) = reactor.poller.add(io.as_fd(), source.key as u64) {
            reactor.unregister(source.key);
            return Err(e);
        }
        Ok(Async {
            io,
            source,
            reactor,
        })
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Resolves once the descriptor may be readable: at once if no read has reported
    /// `WouldBlock` since the last edge.
    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| self.source.poll_ready(READ, cx)).await;
        Ok(())
    }

    /// As [`Async::readable`], for writing (a connecting socket becomes writable when the
    /// connection completes or fails).
    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| self.source.poll_ready(WRITE, cx)).await;
        Ok(())
    }

    /// Runs a non-blocking read-side operation on the descriptor; a `WouldBlock` result makes
    /// the next [`Async::readable`] wait for the kernel.
    pub fn try_read_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        self.try_with(READ, op)
    }

    /// The write-side counterpart of [`Async::try_read_with`].
    pub fn try_write_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        self.try_with(WRITE, op)
    }

    fn try_with<R>(&self, dir: usize, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        let r = op(&self.io);
        self.source.attempted(dir, is_would_block(&r));
        r
    }

    fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_with(READ, cx, op)
    }

    fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_with(WRITE, cx, op)
    }

    /// Runs `op` until it does not report `WouldBlock` or `Interrupted`, registering for the
    /// readiness of `dir` when it would block.
    fn poll_with<R>(
        &self,
        dir: usize,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            match self.try_with(dir, &mut op) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.source.poll_ready(dir, cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    /// A read-side operation, waiting while it would block.
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_read_with(cx, &mut op)).await
    }

    /// A write-side operation, waiting while it would block.
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_write_with(cx, &mut op)).await
    }
}

fn is_would_block<R>(r: &io::Result<R>) -> bool {
    matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl<T: AsFd> Drop for Async<T> {
    fn drop(&mut self) {
        // No EPOLL_CTL_DEL: closing the descriptor, which follows at once, removes it from the
        // epoll set, a system call less per socket. That holds while no copy of it lives on:
        // this process makes none, and a child started with `std::process::Command` holds
        // copies only until its exec closes them (close-on-exec), while this thread waits in
        // `spawn`, so never when a source is dropped. Even a stray event under a reused key
        // would only make an operation find `WouldBlock`.
        self.reactor.unregister(self.source.key);
    }
}

/// Descriptors [`Async::new`] can make non-blocking itself.
pub trait Socket: AsFd {
    fn set_nonblocking(&self) -> io::Result<()>;
}

macro_rules! socket {
    ($($t:ty),*) => {$(
        impl Socket for $t {
            fn set_nonblocking(&self) -> io::Result<()> {
                <$t>::set_nonblocking(self, true)
            }
        }
    )*};
}
socket!(TcpStream, TcpListener, UdpSocket);

impl<T: Socket> Async<T> {
    /// Makes `io` non-blocking and registers it.
    pub fn new(io: T) -> io::Result<Self> {
        io.set_nonblocking()?;
        Async::new_nonblocking(io)
    }
}

impl Async<TcpStream> {
    /// Registers a non-blocking socket whose connect is in progress (`sys::start_tcp_connect`
    /// makes them): writable only once the kernel says so (the connection completed or failed),
    /// and readable only once something arrives, which can only be after this registration.
    pub fn connecting(io: TcpStream) -> io::Result<Self> {
        let a = Async::new_nonblocking(io)?;
        a.source.attempted(WRITE, true);
        a.source.attempted(READ, true);
        Ok(a)
    }

    /// A read returned less than it asked for, so the receive queue was emptied: the next
    /// [`Async::readable`] waits for new data without a read that would only say `WouldBlock`.
    /// (A stream socket's read takes everything queued up to the buffer's size.) Not once the
    /// peer's FIN has been seen: its edge has passed, and the next read must find the EOF.
    pub fn drained(&self) {
        if !self.source.closed.get() {
            self.source.attempted(READ, true);
        }
    }

    /// Writes all of `buf`, waiting while the socket would block. A small future (the
    /// relay keeps one in every connection's state while a peer is slow).
    pub fn write_all<'a>(&'a self, buf: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        let mut at = 0;
        poll_fn(move |cx| {
            while at < buf.len() {
                match self.poll_write_with(cx, |mut s| s.write(&buf[at..])) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => at += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(()))
        })
    }

    /// Waits until at least `n` bytes are queued for reading, or the peer has closed its side
    /// (then fewer may ever come). Pair with SO_RCVLOWAT = `n`, which holds the kernel's
    /// readiness edges back until then; without it every arrival wakes the task to count again.
    pub async fn queued(&self, n: usize) -> io::Result<()> {
        self.read_with(|s| {
            if self.source.closed.get() || crate::sys::bytes_queued(s)? >= n {
                Ok(())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        })
        .await
    }
}

impl Async<UdpSocket> {
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.read_with(|s| s.recv_from(buf)).await
    }

    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.write_with(|s| s.send_to(buf, to)).await
    }

    /// `send` on a connected socket.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|s| s.send(buf)).await
    }
}

impl Async<TcpListener> {
    /// The next connection, already non-blocking and registered.
    pub async fn accept(&self) -> io::Result<(Async<TcpStream>, SocketAddr)> {
        let (stream, peer) = self.read_with(crate::sys::accept).await?;
        Ok((Async::new_nonblocking(stream)?, peer))
    }
}

// Byte-stream traits for `&Async<TcpStream>`, so both halves of a connection can be used at
// once from shared references (one task reads while another writes).

impl AsyncRead for &Async<TcpStream> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_with(cx, |mut s| s.read(buf))
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_with(cx, |mut s| s.read_vectored(bufs))
    }
}

impl AsyncWrite for &Async<TcpStream> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |mut s| s.write_vectored(bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.shutdown(std::net::Shutdown::Write))
    }
}
