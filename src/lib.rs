//! shadowsocks-smol: a small, memory-bounded Shadowsocks client and server.
//!
//! Layers, dependencies pointing down only: `mode` (composition) → `serve` (the flows every
//! program runs) → `ingress` (front doors) → `relay` (pool, pumps, connections) → `proto` and
//! `policy` (sans-IO); `rt` is the event loop the async layers run on, and `sys` the only place
//! with OS specifics. ARCHITECTURE.md has the whole picture.

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
