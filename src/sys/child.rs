//! Child programs (SIP003 plugins) started so that they cannot outlive us.
//!
//! ```text
//!   ss-smol ──fork──▶ guard (process group leader, no exec) ──fork+exec──▶ plugin ──▶ …
//!      │                 │ parent-death signal: SIGHUP → SIGKILL to its whole group
//!      │                 │ plugin exits → the guard exits with the same status or signal
//!      └── SIGCHLD (signalfd) when the guard exits; SIGTERM/SIGKILL to the group to stop it
//! ```
//!
//! The guard is a forked copy of ss-smol that never execs: it only waits for signals. A parent
//! death signal is delivered to the direct child alone, so a plugin that forks (a shell
//! wrapper) would leave its children behind when ss-smol is killed with SIGKILL; the guard turns
//! that one signal into a SIGKILL for the whole process group. A process that leaves the group
//! (`setsid`, `setpgid`) cannot be reached that way.
//!
//! Between `fork` and `exec` only async-signal-safe calls are made, on values prepared before
//! the fork (the process has one thread, but this keeps the child independent of that).

use super::ctx;
use nix::errno::Errno;
use nix::libc::{self, c_char, c_int, pid_t};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

/// The signal the guard receives when ss-smol dies. SIGKILL is no use: the guard must act on it.
const DEATH_SIGNAL: c_int = libc::SIGHUP;
/// Exit status of the plugin process when `execve` fails.
pub const EXEC_FAILED: i32 = 127;

/// A started child: the guard's pid, which is also the process group of the plugin.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// What a prepared `execve` needs, built before the fork.
pub struct Program {
    path: CString,
    // Keep the strings alive: the pointer arrays point into them.
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    env_ptrs: Vec<*const c_char>,
}

impl Program {
    /// `env` entries are `KEY=value`. Fails on a NUL byte inside any of them.
    pub fn new(path: &str, argv: &[String], env: Vec<Vec<u8>>) -> io::Result<Program> {
        let c = |s: Vec<u8>| {
            CString::new(s)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "contains a NUL byte"))
        };
        let path = c(path.into())?;
        // Loops, not `collect` into a `Result`: one adapter copy less per list.
        let mut args = Vec::with_capacity(argv.len());
        for a in argv {
            args.push(c(a.clone().into_bytes())?);
        }
        let argv = args;
        let mut vars = Vec::with_capacity(env.len());
        for e in env {
            vars.push(c(e)?);
        }
        let env = vars;
        let nul_terminated = |v: &[CString]| {
            let mut p: Vec<*const c_char> = v.iter().map(|s| s.as_ptr()).collect();
            p.push(ptr::null());
            p
        };
        Ok(Program {
            argv_ptrs: nul_terminated(&argv),
            env_ptrs: nul_terminated(&env),
            path,
            _argv: argv,
            _env: env,
        })
    }
}

/// Starts `program` behind a guard, with stdin from /dev/null and stdout and stderr into
/// `output` (the write end of a pipe; the caller keeps the read end).
pub fn spawn_guarded(program: &Program, output: &OwnedFd) -> io::Result<Child> {
    let devnull = std::fs::File::open("/dev/null")?;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded (one event loop thread), and the child only makes
    // async-signal-safe calls on memory prepared above before it execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ctx(Errno::last(), "fork"));
    }
    if pid == 0 {
        guard(parent, program, output.as_raw_fd(), devnull.as_raw_fd());
    }
    // Also set here, so the group exists before the parent signals it, whichever runs first.
    // SAFETY: setpgid on our own child has no memory-safety preconditions; EACCES (the child
    // already exec'd) or ESRCH are harmless.
    unsafe { libc::setpgid(pid, pid) };
    Ok(Child { pid })
}

/// The guard's whole life, in the forked child.
fn guard(parent: pid_t, program: &Program, output: c_int, stdin: c_int) -> ! {
    // SAFETY: every call below is async-signal-safe and takes pointers to memory owned by
    // `program` or to locals; the function never returns.
    unsafe {
        libc::setpgid(0, 0);
        let mut waited: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut waited);
        for s in [libc::SIGCHLD, DEATH_SIGNAL, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut waited, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &waited, ptr::null_mut());
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            DEATH_SIGNAL as libc::c_ulong,
            0,
            0,
            0,
        );
        // ss-smol may have died before the prctl: then nobody would send the signal.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        let plugin = libc::fork();
        if plugin == 0 {
            exec(program, output, stdin);
        }
        if plugin < 0 {
            libc::_exit(EXEC_FAILED);
        }
        close_from(3);
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&waited, &mut info);
            if sig == DEATH_SIGNAL {
                libc::kill(0, libc::SIGKILL);
            }
            // SIGTERM/SIGINT reach the plugin as a member of the group; wait for it to act.
            if sig != libc::SIGCHLD {
                continue;
            }
            let mut status: c_int = 0;
            if libc::waitpid(plugin, &mut status, libc::WNOHANG) != plugin {
                continue;
            }
            // What is left of the group (a wrapper's children) is asked to go too; ss-smol
            // sends SIGKILL to the group once it has seen this process end.
            libc::kill(0, libc::SIGTERM);
            if libc::WIFSIGNALED(status) {
                // Die of the same signal, so ss-smol can report it as the plugin's.
                let s = libc::WTERMSIG(status);
                let mut one: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut one);
                libc::sigaddset(&mut one, s);
                libc::signal(s, libc::SIG_DFL);
                libc::sigprocmask(libc::SIG_UNBLOCK, &one, ptr::null_mut());
                libc::kill(libc::getpid(), s);
                libc::_exit(128 + s);
            }
            libc::_exit(libc::WEXITSTATUS(status));
        }
    }
}

/// The plugin process: a clean signal state, the standard descriptors, then the program.
fn exec(program: &Program, output: c_int, stdin: c_int) -> ! {
    // SAFETY: async-signal-safe calls only; the pointer arrays are NUL-terminated and point
    // into CStrings that `program` keeps alive.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, ptr::null_mut());
        // Rust ignores SIGPIPE; an ignored disposition would survive the exec.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::dup2(stdin, 0);
        libc::dup2(output, 1);
        libc::dup2(output, 2);
        libc::execve(
            program.path.as_ptr(),
            program.argv_ptrs.as_ptr(),
            program.env_ptrs.as_ptr(),
        );
        libc::_exit(EXEC_FAILED);
    }
}

/// Closes every descriptor from `low` up: the guard needs none of ss-smol's sockets.
fn close_from(low: c_int) {
    // SAFETY: close_range and close only close descriptors; nothing in the guard uses them.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            low as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) == 0
        {
            return;
        }
        // Kernels before 5.9.
        let max = match libc::sysconf(libc::_SC_OPEN_MAX) {
            n if n > 0 => n.min(65_536) as c_int,
            _ => 1024,
        };
        for fd in low..max {
            libc::close(fd);
        }
    }
}

/// A pipe for a child's output: (read end, non-blocking; write end). Both close on exec; the
/// child's copies are made by `dup2`, which clears the flag.
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ctx(Errno::last(), "pipe2"));
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    nix::fcntl::fcntl(
        r.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| ctx(e, "fcntl(O_NONBLOCK)"))?;
    Ok((r, w))
}

/// Whether the child has ended, without reaping it: while it is a zombie its process group
/// id cannot be reused, so the group can still be signalled safely.
pub fn has_exited(child: &Child) -> bool {
    // SAFETY: `info` is a valid siginfo_t for waitid to fill.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            child.pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // ECHILD: already reaped, which only `reap` does.
        r != 0 || info.si_pid() != 0
    }
}

/// Sends `signal` to the child's whole process group.
pub fn signal_group(child: &Child, signal: c_int) {
    // SAFETY: kill has no memory-safety preconditions. The group id is the guard's pid, which
    // is not reused before `reap`.
    unsafe { libc::kill(-child.pid, signal) };
}

/// Waits for the child and returns how it ended.
pub fn reap(child: &Child) -> io::Result<Exit> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(child.pid, &mut status, 0) };
        if r == child.pid {
            break;
        }
        if Errno::last() != Errno::EINTR {
            return Err(ctx(Errno::last(), "waitpid"));
        }
    }
    Ok(if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    })
}

/// SIGCHLD joins SIGTERM and SIGINT in the signal mask before any child exists, so a child's
/// end is read from the event loop's signalfd rather than interrupting it.
pub fn block_sigchld() -> io::Result<()> {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGCHLD);
    set.thread_block().map_err(|e| ctx(e, "sigprocmask"))
}

/// A signal's name for messages ("SIGKILL"), or its number for the rarer ones.
pub fn signal_name(s: i32) -> String {
    let name = match s {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {s}"),
    };
    name.to_string()
}
