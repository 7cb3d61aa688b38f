//! shadowsocks-smol: a small, memory-bounded Shadowsocks client and server.
//!
//! Layers, dependencies pointing down only: `mode` (composition) → `plugin` (SIP003 plugins)
//! → `serve` (the flows every program runs) → `ingress` (front doors) → `relay` (pool, pumps,
//! connections) → `proto` and `policy` (sans-IO); `rt` is the event loop the async layers run
//! on, and `sys` the only place with OS specifics. ARCHITECTURE.md has the whole picture.
//!
//! `unsafe` is denied everywhere but in `sys`, and there every block needs a `// SAFETY:`
//! comment; `proto` and `dns::wire`, which read untrusted bytes, also deny every construct that
//! can panic (see [`proto`]).

#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod dns;
pub mod ingress;
pub mod logger;
pub mod mode;
pub mod plugin;
pub mod policy;
pub mod proto;
pub mod quote;
pub mod relay;
pub mod rt;
pub mod serve;
#[allow(unsafe_code)]
pub mod sys;
