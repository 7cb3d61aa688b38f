//! ss-server's far side: the targets clients name, reached directly. Names are resolved
//! without blocking (`dns`), and the address actually connected to must pass the target
//! policy (`policy::targets`): a name may resolve to 127.0.0.1, and checking the name would
//! miss it.

use super::connect::connect_tcp;
use crate::dns::Resolver;
use crate::policy::targets::target_allowed;
use crate::proto::address::Address;
use crate::rt::Async;
use crate::sys::OutboundOpts;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

pub struct Targets {
    pub resolver: Rc<Resolver>,
    pub allow_private: bool,
    /// Outbound options per target family (the source address differs).
    pub out_v4: OutboundOpts,
    pub out_v6: OutboundOpts,
}

impl Targets {
    pub fn outbound(&self, target: &SocketAddr) -> &OutboundOpts {
        if target.is_ipv4() {
            &self.out_v4
        } else {
            &self.out_v6
        }
    }

    /// Resolves `target` to the first address policy allows.
    pub async fn resolve(&self, target: &Address) -> Result<SocketAddr, String> {
        let candidates = match target {
            Address::Ip(sa) => vec![*sa],
            Address::Domain(name, port) => self
                .resolver
                .resolve(name, *port)
                .await
                .map_err(|e| e.to_string())?,
        };
        candidates
            .into_iter()
            .find(|sa| target_allowed(sa.ip(), self.allow_private))
            .ok_or_else(|| {
                "target is a loopback/private/link-local address (allow with --allow-private-targets)"
                    .to_string()
            })
    }

    pub async fn connect(
        &self,
        target: &Address,
        timeout: Duration,
    ) -> Result<Async<TcpStream>, String> {
        let addr = self.resolve(target).await?;
        connect_tcp(addr, self.outbound(&addr), timeout)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))
    }
}
