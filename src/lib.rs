//! shadowsocks-smol: a small, memory-bounded Shadowsocks client and server.
//!
//! Layers, dependencies pointing down only: `mode` (composition) → `relay` (async glue) →
//! `proto` (sans-IO wire formats and ciphers); `rt` is the event loop the async layers run on,
//! and `sys` the only place with OS specifics.

pub mod config;
pub mod dns;
pub mod ingress;
pub mod logger;
pub mod mode;
pub mod policy;
pub mod proto;
pub mod relay;
pub mod rt;
pub mod serve;
pub mod sys;
