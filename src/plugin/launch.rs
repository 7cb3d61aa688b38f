//! Starting, watching and stopping the plugin processes (the process calls are in
//! `sys::child`).
//!
//! ```text
//! start ──▶ wait until each plugin's port is open (or it exits, or START_WAIT passes)
//!   │
//! serve ──▶ SIGCHLD: a plugin ended → SIGKILL its group, reap, report → exit non-zero
//!   │
//! stop  ──▶ SIGTERM to every group, wait up to GRACE, SIGKILL what is left, reap
//! ```

use super::lines::Lines;
use crate::rt::Async;
use crate::rt::LocalExecutor;
use crate::sys;
use crate::sys::child::{self, Child, Exit, Program};
use crate::sys::ports::{self, Proto};
use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a plugin may take to open its port. Go plugins on a slow MIPS router take a few
/// seconds to start.
const START_WAIT: Duration = Duration::from_secs(10);
/// How long a plugin has to exit after SIGTERM before it is killed; procd waits 5 s.
const GRACE: Duration = Duration::from_secs(2);
/// Pauses while waiting: short at first (most plugins are up within milliseconds), then
/// longer, since each look at the kernel's socket tables costs a walk over them.
const POLL: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(100);

/// What one plugin process is started with.
pub struct Launch {
    /// The plugin program as configured (a path, or a name looked up on PATH), its options
    /// (SS_PLUGIN_OPTIONS), and where it was configured, for messages.
    pub program: String,
    pub opts: String,
    pub source: String,
    /// SS_REMOTE_HOST/PORT: where the plugin connects (client) or listens (server).
    pub remote: (String, u16),
    /// SS_LOCAL_HOST/PORT: where the plugin listens (client) or connects (server).
    pub local: (String, u16),
    /// The port that shows the plugin is up, and in which table.
    pub ready: (u16, Proto),
}

struct Running {
    /// The program's file name, which prefixes its log lines.
    name: Rc<str>,
    child: Child,
    ready: (u16, Proto),
    output: Cell<Option<OwnedFd>>,
    reaped: Cell<bool>,
}

/// The plugin processes of this run. Dropping it stops them.
pub struct Plugins {
    running: Vec<Running>,
}

impl Plugins {
    /// Starts one plugin per launch, each with `args` after its name.
    pub fn start(args: &[String], launches: &[Launch]) -> Result<Plugins, String> {
        let mut plugins = Plugins {
            running: Vec::new(),
        };
        for l in launches {
            let plugin = &l.program;
            let path = find_program(plugin)
                .map_err(|why| format!("plugin '{plugin}' ({}) {why}", l.source))?;
            let name: Rc<str> =
                Rc::from(path.file_name().and_then(OsStr::to_str).unwrap_or(plugin));
            let fail = |e: io::Error| format!("cannot start plugin '{plugin}': {e}");
            child::block_sigchld().map_err(fail)?;
            let mut argv = vec![plugin.to_string()];
            argv.extend(args.iter().cloned());
            let program =
                Program::new(&path.to_string_lossy(), &argv, environment(l)).map_err(fail)?;
            let (read, write) = child::output_pipe().map_err(fail)?;
            let child = child::spawn_guarded(&program, &write).map_err(fail)?;
            log::info!(
                "plugin {name} started (process group {}): local {}:{}, remote {}:{}",
                child.pid,
                l.local.0,
                l.local.1,
                l.remote.0,
                l.remote.1
            );
            plugins.running.push(Running {
                name,
                child,
                ready: l.ready,
                output: Cell::new(Some(read)),
                reaped: Cell::new(false),
            });
        }
        Ok(plugins)
    }

    /// Waits, before the event loop, until every plugin has opened its port. Connections that
    /// arrive meanwhile wait in the listeners' backlogs. `stop` is asked between looks: the
    /// signal that asks the process to stop, which ends the wait (`Ok(Some(name))`).
    pub fn wait_ready(
        &self,
        stop: impl Fn() -> Option<&'static str>,
    ) -> Result<Option<&'static str>, String> {
        let deadline = Instant::now() + START_WAIT;
        let mut pause = POLL;
        // Output is read while waiting: a plugin that writes more than the pipe holds before it
        // opens its port would otherwise block on the write and never open it.
        let mut outputs: Vec<Output> = self
            .running
            .iter()
            .map(|r| Output::new(Rc::clone(&r.name)))
            .collect();
        for r in &self.running {
            let (port, proto) = r.ready;
            while !ports::is_open(port, proto) {
                self.drain_into(&mut outputs);
                if let Some(why) = self.ended(r) {
                    self.log_what_was_written();
                    return Err(format!("{why} before opening its port"));
                }
                if Instant::now() >= deadline {
                    self.log_what_was_written();
                    return Err(format!(
                        "plugin {} did not open {proto} port {port} within {} s; check its \
                         options (SS_PLUGIN_OPTIONS) and its log lines above",
                        r.name,
                        START_WAIT.as_secs()
                    ));
                }
                if let Some(name) = stop() {
                    return Ok(Some(name));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(POLL_MAX);
            }
        }
        Ok(None)
    }

    /// Logs what the plugins have written so far, each through its own `Output` (partial lines
    /// kept), leaving the pipes in place for the event loop.
    fn drain_into(&self, outputs: &mut [Output]) {
        for (r, out) in self.running.iter().zip(outputs) {
            if let Some(fd) = r.output.take() {
                let file = File::from(fd);
                // The read end is non-blocking: this stops at what is there.
                let _ = out.drain(&file);
                r.output.set(Some(OwnedFd::from(file)));
            }
        }
    }

    /// Before the event loop: logs what the plugins have written so far, since a plugin that
    /// fails to start usually says why.
    fn log_what_was_written(&self) {
        for r in &self.running {
            let Some(fd) = r.output.take() else { continue };
            let mut out = Output::new(Rc::clone(&r.name));
            // The read end is non-blocking: this stops at what is there (or at the end).
            let _ = out.drain(&File::from(fd));
            out.finish();
        }
    }

    /// Logs the plugins' output from the event loop, a line at a time.
    pub fn log_output(&self, ex: &LocalExecutor) -> io::Result<()> {
        for r in &self.running {
            if let Some(fd) = r.output.take() {
                let pipe = Async::new_nonblocking(File::from(fd))?;
                ex.spawn_detached(forward(Rc::clone(&r.name), pipe));
            }
        }
        Ok(())
    }

    /// On SIGCHLD: the first plugin found ended, as a message; its group is killed and it is
    /// reaped.
    pub fn exited(&self) -> Option<String> {
        self.running.iter().find_map(|r| self.ended(r))
    }

    fn ended(&self, r: &Running) -> Option<String> {
        if r.reaped.get() || !child::has_exited(&r.child) {
            return None;
        }
        let how = match self.kill_and_reap(r) {
            Ok(Exit::Code(child::EXEC_FAILED)) => {
                "exited with status 127 (it, or a program it runs, could not be executed)".into()
            }
            Ok(Exit::Code(c)) => format!("exited with status {c}"),
            Ok(Exit::Signal(s)) => format!("was killed by {}", child::signal_name(s)),
            Err(e) => format!("ended ({e})"),
        };
        Some(format!("plugin {} {how}", r.name))
    }

    /// SIGKILL for what is left of the group (the ended process still holds its id), then
    /// the reap that frees the id.
    fn kill_and_reap(&self, r: &Running) -> io::Result<Exit> {
        child::signal_group(&r.child, nix::libc::SIGKILL);
        r.reaped.set(true);
        child::reap(&r.child)
    }

    /// SIGTERM to every plugin's group, SIGKILL to what is still there after [`GRACE`], and
    /// every process reaped. Safe to call twice.
    pub fn stop(&self) {
        let live: Vec<&Running> = self.running.iter().filter(|r| !r.reaped.get()).collect();
        for r in &live {
            child::signal_group(&r.child, nix::libc::SIGTERM);
        }
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && live.iter().any(|r| !child::has_exited(&r.child)) {
            std::thread::sleep(POLL);
        }
        for r in live {
            if !child::has_exited(&r.child) {
                log::warn!(
                    "plugin {} did not exit within {} s of SIGTERM; killing it",
                    r.name,
                    GRACE.as_secs()
                );
            }
            let _ = self.kill_and_reap(r);
        }
    }
}

impl Drop for Plugins {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies the plugin's output into our log, prefixed with its name.
async fn forward(name: Rc<str>, pipe: Async<File>) {
    let mut out = Output::new(name);
    // `drain` ends with WouldBlock while the plugin is quiet: read_with waits and calls again.
    let _ = pipe.read_with(|f| out.drain(f)).await;
    out.finish();
}

/// A plugin's output on its way into the log.
struct Output {
    name: Rc<str>,
    lines: Lines,
    buf: [u8; 512],
}

impl Output {
    fn new(name: Rc<str>) -> Output {
        Output {
            name,
            lines: Lines::default(),
            buf: [0; 512],
        }
    }

    /// Logs what can be read now: `Ok` at the end of the output, `WouldBlock` when there is
    /// no more for now, or the read's error.
    fn drain(&mut self, mut pipe: &File) -> io::Result<()> {
        loop {
            let n = pipe.read(&mut self.buf)?;
            if n == 0 {
                return Ok(());
            }
            let name = &self.name;
            self.lines
                .feed(self.buf.get(..n).unwrap_or_default(), |l, cut| {
                    log_line(name, l, cut)
                });
        }
    }

    fn finish(&mut self) {
        let name = &self.name;
        self.lines.finish(|l, cut| log_line(name, l, cut));
    }
}

fn log_line(name: &str, line: &str, cut: bool) {
    let more = if cut { " […]" } else { "" };
    log::info!("{name}: {}{more}", line.trim_start());
}

/// The environment SIP003 gives a plugin, on top of ours (as bytes: an entry that is not
/// UTF-8 is passed on as it is). IPv6 hosts go without brackets.
fn environment(l: &Launch) -> Vec<Vec<u8>> {
    let ours = [
        ("SS_REMOTE_HOST", l.remote.0.clone()),
        ("SS_REMOTE_PORT", l.remote.1.to_string()),
        ("SS_LOCAL_HOST", l.local.0.clone()),
        ("SS_LOCAL_PORT", l.local.1.to_string()),
        ("SS_PLUGIN_OPTIONS", l.opts.clone()),
    ];
    let mut env: Vec<Vec<u8>> = std::env::vars_os()
        .filter(|(k, _)| !ours.iter().any(|(name, _)| k.as_bytes() == name.as_bytes()))
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .collect();
    env.extend(ours.iter().map(|(k, v)| format!("{k}={v}").into_bytes()));
    env
}

/// `name` as a path when it has a `/`, else looked up on PATH. The error says why not.
fn find_program(name: &str) -> Result<PathBuf, String> {
    if name.contains('/') {
        return executable(Path::new(name)).map(|()| PathBuf::from(name));
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "is not found on PATH ({path}); install it or give its full path"
    ))
}

fn executable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) => Err(format!(
            "cannot be used: {}: {}",
            path.display(),
            sys::error_text(&e)
        )),
        Ok(m) if !m.is_file() => Err(format!("is not a file: {}", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!(
            "is not executable: {} (chmod +x it)",
            path.display()
        )),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_or_refused_with_the_reason() {
        assert!(find_program("sh").is_ok());
        assert!(find_program("no-such-plugin-xyz")
            .unwrap_err()
            .contains("not found on PATH"));
        assert!(find_program("/etc/passwd")
            .unwrap_err()
            .contains("is not executable"));
        assert!(find_program("/etc").unwrap_err().contains("is not a file"));
        assert!(find_program("/nonexistent/x")
            .unwrap_err()
            .contains("No such file"));
    }

    #[test]
    fn environment_has_the_sip003_variables_once() {
        let l = Launch {
            program: "obfs-local".into(),
            opts: "obfs=http;obfs-host=a\\;b".into(),
            source: "--plugin".into(),
            remote: ("2001:db8::1".into(), 8388),
            local: ("127.0.0.1".into(), 40000),
            ready: (40000, Proto::Tcp),
        };
        let env = environment(&l);
        let get = |k: &str| {
            let prefix = format!("{k}=");
            let v: Vec<_> = env
                .iter()
                .filter(|e| e.starts_with(prefix.as_bytes()))
                .collect();
            assert_eq!(v.len(), 1, "{k}");
            String::from_utf8(v[0][prefix.len()..].to_vec()).unwrap()
        };
        assert_eq!(get("SS_REMOTE_HOST"), "2001:db8::1");
        assert_eq!(get("SS_REMOTE_PORT"), "8388");
        assert_eq!(get("SS_LOCAL_HOST"), "127.0.0.1");
        assert_eq!(get("SS_LOCAL_PORT"), "40000");
        assert_eq!(get("SS_PLUGIN_OPTIONS"), "obfs=http;obfs-host=a\\;b");
    }
}
