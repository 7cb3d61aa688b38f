//! The values one run was given, by option: the command line's and the file's, kept apart so
//! the merge can say where a value came from, with typed getters that fall back to the
//! option's default from the table.
//!
//! Only options of the run's mode are visible: a file shared by ss-local and ss-redir may
//! carry `tcp_tproxy`, and ss-local simply never sees it.

use super::options::{self, Id};
use super::server_entry::ServerEntry;
use super::value::{self, HostPort, Secret, Val};
use super::{Mode, Transport};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    /// The `-c` file, for messages.
    pub path: Option<PathBuf>,
    cli: Vec<(Id, Val)>,
    file: Vec<(&'static str, Val)>,
}

impl Settings {
    pub fn new(mode: Mode) -> Settings {
        Settings {
            mode,
            path: None,
            cli: Vec::new(),
            file: Vec::new(),
        }
    }

    /// A command-line value. Repeatable options add up; others: the last one wins, as with
    /// getopt.
    pub fn set_cli(&mut self, id: Id, v: Val) {
        let repeat = options::opt(id).repeat;
        if let Some((_, old)) = self.cli.iter_mut().find(|(i, _)| *i == id) {
            match (old, v) {
                (Val::Hosts(a), Val::Hosts(b)) if repeat => a.extend(b),
                (Val::Nameservers(a), Val::Nameservers(b)) if repeat => a.extend(b),
                (Val::Args(a), Val::Args(b)) if repeat => a.extend(b),
                (Val::Entries(a), Val::Entries(b)) if repeat => a.extend(b),
                (old, v) => *old = v,
            }
        } else {
            self.cli.push((id, v));
        }
    }

    pub fn set_file(&mut self, values: Vec<(&'static str, Val)>) {
        self.file = values;
    }

    /// File keys that no option of this mode reads (other programs' keys).
    pub fn unused_file_keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.file.iter().map(|(k, _)| *k).filter(|k| {
            !options::OPTIONS
                .iter()
                .any(|o| o.key == Some(k) && o.modes.has(self.mode))
        })
    }

    fn applies(&self, id: Id) -> bool {
        options::opt(id).modes.has(self.mode)
    }

    pub fn cli(&self, id: Id) -> Option<&Val> {
        if !self.applies(id) {
            return None;
        }
        self.cli.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    pub fn file(&self, id: Id) -> Option<&Val> {
        let key = options::opt(id).key?;
        if !self.applies(id) {
            return None;
        }
        self.file.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Command line over file.
    pub fn given(&self, id: Id) -> Option<&Val> {
        self.cli(id).or_else(|| self.file(id))
    }

    /// Command line over file over the table's default.
    pub fn value(&self, id: Id) -> Option<Val> {
        if let Some(v) = self.given(id) {
            return Some(v.clone());
        }
        let o = options::opt(id);
        if !self.applies(id) {
            return None;
        }
        // Defaults are checked by a unit test; a bad one reads as "not set", not a panic.
        value::parse_text(o.rule, o.default?).ok().flatten()
    }

    /// Where `id`'s value came from, as the user would look for it.
    pub fn source(&self, id: Id) -> String {
        if self.cli(id).is_some() {
            return options::opt(id).flag();
        }
        self.file_source(id)
    }

    /// `"key" in config FILE`.
    pub fn file_source(&self, id: Id) -> String {
        let o = options::opt(id);
        let path = self
            .path
            .as_deref()
            .unwrap_or(std::path::Path::new("(none)"));
        format!(
            "\"{}\" in config {}",
            o.key.unwrap_or_default(),
            path.display()
        )
    }

    pub fn num(&self, id: Id) -> Option<u64> {
        match self.value(id) {
            Some(Val::Num(n)) => Some(n),
            _ => None,
        }
    }

    pub fn port(&self, id: Id) -> Option<u16> {
        self.num(id).and_then(|n| u16::try_from(n).ok())
    }

    /// A switch: on if either source says so (a file's `false` cannot undo a flag).
    pub fn flag(&self, id: Id) -> bool {
        self.value(id) == Some(Val::Bool(true))
    }

    pub fn text(&self, id: Id) -> Option<String> {
        match self.value(id) {
            Some(Val::Text(s)) => Some(s),
            _ => None,
        }
    }

    pub fn hosts(&self, id: Id) -> Vec<HostPort> {
        match self.value(id) {
            Some(Val::Hosts(h)) => h,
            _ => Vec::new(),
        }
    }

    pub fn nameservers(&self, id: Id) -> Vec<SocketAddr> {
        match self.value(id) {
            Some(Val::Nameservers(n)) => n,
            _ => Vec::new(),
        }
    }

    pub fn args(&self, id: Id) -> Vec<String> {
        match self.value(id) {
            Some(Val::Args(a)) => a,
            _ => Vec::new(),
        }
    }

    pub fn entries(&self, id: Id) -> Vec<ServerEntry> {
        match self.value(id) {
            Some(Val::Entries(e)) => e,
            _ => Vec::new(),
        }
    }

    pub fn users(&self, id: Id) -> Vec<(String, Secret)> {
        match self.value(id) {
            Some(Val::Users(u)) => u,
            _ => Vec::new(),
        }
    }

    pub fn transport(&self, id: Id) -> Option<Transport> {
        match self.value(id) {
            Some(Val::Transport(t)) => Some(t),
            _ => None,
        }
    }

    pub fn secret_cli(&self, id: Id) -> Option<&Secret> {
        match self.cli(id) {
            Some(Val::Secret(s)) => Some(s),
            _ => None,
        }
    }

    pub fn secret_file(&self, id: Id) -> Option<&Secret> {
        match self.file(id) {
            Some(Val::Secret(s)) => Some(s),
            _ => None,
        }
    }
}
