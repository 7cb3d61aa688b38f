//! Keeping the servers' names resolved: a task per named server, on the event loop.
//!
//! At start every name is looked up at once, and the listeners serve once each was tried
//! (`FirstRound`). A name that resolved is looked up again when its answer expires (its TTL, as
//! the resolver cached it) or soon after the server starts failing, as its address may have
//! moved. A name that does not resolve is retried after 1 s, doubling to 60 s, and logged once
//! per episode; the last address that worked stays in use meanwhile, and a server never
//! resolved is skipped, so connections fail at once instead of waiting. The task ends when its
//! server is gone (a server list replaced on SIGHUP).

use super::upstream::{Server, Upstream};
use crate::dns::Resolver;
use crate::rt::{self, Timer};
use event_listener::Event;
use futures_lite::future;
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// How often a name with no TTL (from the hosts file) is looked up again, unless its server
/// fails first.
const NO_TTL: Duration = Duration::from_secs(3600);

/// The first pause before a name that did not resolve is tried again, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Names not tried yet at start.
#[derive(Default)]
pub struct FirstRound {
    left: Cell<usize>,
    done: Event,
}

impl FirstRound {
    pub fn expect(&self) {
        self.left.set(self.left.get() + 1);
    }

    fn tried(&self) {
        if let Some(n) = self.left.get().checked_sub(1) {
            self.left.set(n);
            self.done.notify(usize::MAX);
        }
    }

    pub async fn all_tried(&self) {
        loop {
            let listener = self.done.listen();
            if self.left.get() == 0 {
                return;
            }
            listener.await;
        }
    }
}

/// Keeps a server's name resolved for as long as the server is configured.
pub async fn keep_resolved(server: Weak<Server>, up: Rc<Upstream>, resolver: Rc<Resolver>) {
    let mut lookup = Lookup {
        first: true,
        pause: RETRY_FIRST,
        failing: false,
    };
    loop {
        let Some(s) = server.upgrade() else { return };
        let moved = s.moved.listen();
        let found = resolver.resolve(&s.host, s.port).await;
        if std::mem::take(&mut lookup.first) {
            up.first.tried();
        }
        // A name that resolved is looked up again when its answer expires or the server fails;
        // one that did not, after a pause (or sooner if the server fails).
        let until = lookup.found(&s, found, &resolver);
        future::or(Timer::at(until), moved).await;
        resolver.forget(&s.host);
    }
}

/// Where a server's lookups stand.
struct Lookup {
    first: bool,
    pause: Duration,
    /// A failure was logged and no lookup has succeeded since.
    failing: bool,
}

impl Lookup {
    /// Takes in a lookup's result, logging what changed; gives when to look again.
    fn found(&mut self, s: &Server, found: io::Result<Vec<SocketAddr>>, r: &Resolver) -> Instant {
        match found.map(|addrs| addrs.first().copied()) {
            Ok(Some(addr)) => {
                if s.addr.replace(Some(addr)) != Some(addr) {
                    log::info!("server '{}' resolves to {}", s.host, addr.ip());
                }
                self.failing = false;
                self.pause = RETRY_FIRST;
                // Never in the past, which would make the task spin.
                let now = rt::now();
                r.cached_until(&s.host)
                    .unwrap_or(now + NO_TTL)
                    .max(now + RETRY_FIRST)
            }
            Ok(None) => self.failed(s, &"no address"),
            Err(e) => self.failed(s, &e),
        }
    }

    fn failed(&mut self, s: &Server, e: &dyn std::fmt::Display) -> Instant {
        if !self.failing {
            let still = match s.addr.get() {
                Some(_) => "the last address meanwhile",
                None => "none meanwhile",
            };
            log::warn!(
                "server '{}': {e}; retrying with a growing pause (up to {} s), using {still}",
                s.host,
                RETRY_MAX.as_secs()
            );
            self.failing = true;
        } else {
            log::debug!("server '{}': again: {e}", s.host);
        }
        let pause = self.pause;
        self.pause = (pause * 2).min(RETRY_MAX);
        rt::now() + pause
    }
}
