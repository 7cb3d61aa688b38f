//! Process-wide settings made once at start-up: the open-file limit that bounds how many
//! connections can exist, and dropping root to an unprivileged user (libev `-a`), keeping only
//! the capabilities the mode still needs while it runs.
//!
//! Capabilities are set with the raw `capset` system call: OpenWrt has no libcap, and nix does
//! not wrap it.

use super::accounts::{self, Account};
use super::{ctx, ctx_hint};
use crate::quote::Quoted;
use nix::errno::Errno;
use nix::sys::resource::{getrlimit, rlim_t, setrlimit, Resource, RLIM_INFINITY};
use nix::unistd::{getuid, setgid, setgroups, setuid, Gid, Uid};
use std::io;

/// RLIMIT_NOFILE soft limit to `n`, raising the hard limit too when `n` is above it (needs
/// root or CAP_SYS_RESOURCE). The hard limit is never lowered, so a later
/// [`raise_nofile_to_hard`] can still grow the soft limit.
pub fn set_nofile(n: u64) -> io::Result<()> {
    let (_, hard) = get()?;
    let want = to_rlim(n);
    let new_hard = if hard == RLIM_INFINITY || want <= hard {
        hard
    } else {
        want
    };
    setrlimit(Resource::RLIMIT_NOFILE, want, new_hard).map_err(|e| match e {
        Errno::EPERM => ctx_hint(
            e,
            format_args!("raise open-file limit to {n}"),
            &format!(
                "hard limit is {}; going above it needs root, and never above fs.nr_open",
                to_u64(hard)
            ),
        ),
        _ => ctx(e, format_args!("setrlimit(RLIMIT_NOFILE, {n})")),
    })
}

/// Current soft RLIMIT_NOFILE (`u64::MAX` for unlimited).
pub fn nofile() -> io::Result<u64> {
    Ok(to_u64(get()?.0))
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (best effort, used when the connection cap
/// needs more fds). Returns the soft limit in force afterwards.
pub fn raise_nofile_to_hard() -> io::Result<u64> {
    let (soft, hard) = get()?;
    if soft == hard {
        return Ok(to_u64(soft));
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok(to_u64(hard)),
        // An unlimited hard limit is not a value Linux accepts for NOFILE (capped by
        // fs.nr_open); keep what we have rather than fail start-up.
        Err(Errno::EPERM) if hard == RLIM_INFINITY => Ok(to_u64(soft)),
        Err(e) => Err(ctx(e, "setrlimit(RLIMIT_NOFILE) to the hard limit")),
    }
}

/// A capability a mode may need after the switch to an unprivileged user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Binding ports below 1024 (listeners opened again later, plugins).
    NetBindService,
    /// Transparent sockets (IP_TRANSPARENT) for ss-redir's UDP replies.
    NetAdmin,
}

impl Capability {
    /// The number in linux/capability.h.
    pub const fn number(self) -> u32 {
        match self {
            Capability::NetBindService => 10,
            Capability::NetAdmin => 12,
        }
    }
}

/// The capability set (bit N for capability N) holding exactly `keep`.
pub fn capability_mask(keep: &[Capability]) -> u64 {
    keep.iter().fold(0, |m, c| m | 1 << c.number())
}

/// What a process listening on `ports` must keep across `-a USER`: CAP_NET_BIND_SERVICE when a
/// port is below 1024, CAP_NET_ADMIN when it needs transparent sockets (ss-redir's UDP).
pub fn kept_capabilities(
    ports: impl IntoIterator<Item = u16>,
    transparent: bool,
) -> Vec<Capability> {
    let mut keep = Vec::new();
    if ports.into_iter().any(|p| p < 1024) {
        keep.push(Capability::NetBindService);
    }
    if transparent {
        keep.push(Capability::NetAdmin);
    }
    keep
}

/// setgid/setgroups/setuid to the named user (like libev's `-a`), also accepting a numeric
/// uid as libev does, keeping exactly the capabilities in `keep` (permitted and effective) and
/// nothing else, not even in the bounding set, so no program started later (a plugin) can gain
/// more. A no-op when already running as that user; an error if the user does not exist or we
/// are not root.
///
/// Call after binding privileged ports. Both glibc and musl apply the uid change to every
/// thread of the process; capabilities are per thread, so call it before starting any.
pub fn run_as(user: &str, keep: &[Capability]) -> io::Result<()> {
    let pw = lookup_user(user)?;
    if pw.uid == getuid().as_raw() {
        return Ok(());
    }
    if !getuid().is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("cannot run as user {user}: switching users needs root"),
        ));
    }
    let mask = capability_mask(keep);
    // While we are still root (CAP_SETPCAP): the bounding set is what any later exec can have.
    drop_bounding_except(mask)?;
    // Supplementary groups first: they are root's (e.g. 0) until replaced, and replacing
    // them needs the privilege that setuid is about to drop.
    let groups = accounts::groups(&pw.name, pw.gid)
        .map_err(|e| io::Error::new(e.kind(), format!("reading /etc/group for {user}: {e}")))?;
    let groups: Vec<Gid> = groups.into_iter().map(Gid::from_raw).collect();
    setgroups(&groups).map_err(|e| ctx(e, format_args!("setgroups for {user}")))?;
    setgid(Gid::from_raw(pw.gid)).map_err(|e| ctx(e, format_args!("setgid to {}", pw.gid)))?;
    // Without KEEPCAPS, setuid away from root empties the permitted set, and nothing can
    // bring a capability back.
    set_keepcaps(mask != 0)?;
    setuid(Uid::from_raw(pw.uid)).map_err(|e| ctx(e, format_args!("setuid to {}", pw.uid)))?;
    if mask != 0 {
        set_capabilities(mask)?;
        set_keepcaps(false)?;
    }
    Ok(())
}

fn set_keepcaps(on: bool) -> io::Result<()> {
    // SAFETY: PR_SET_KEEPCAPS takes one integer argument and touches no memory of ours.
    let rc = unsafe { nix::libc::prctl(nix::libc::PR_SET_KEEPCAPS, nix::libc::c_ulong::from(on)) };
    Errno::result(rc)
        .map(drop)
        .map_err(|e| ctx(e, "prctl(PR_SET_KEEPCAPS)"))
}

/// Removes every capability not in `mask` from the bounding set.
fn drop_bounding_except(mask: u64) -> io::Result<()> {
    for cap in 0..64u32 {
        if mask & 1 << cap != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes one integer argument and touches no memory of ours.
        let rc =
            unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, nix::libc::c_ulong::from(cap)) };
        match Errno::result(rc) {
            Ok(_) => {}
            // Past the last capability this kernel knows.
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(ctx(e, format_args!("prctl(PR_CAPBSET_DROP, {cap})"))),
        }
    }
    Ok(())
}

/// The kernel's capability header and one of its two data words (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Version 3: 64-bit sets as two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Permitted and effective sets of this thread to exactly `mask`; inheritable empty.
fn set_capabilities(mask: u64) -> io::Result<()> {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [mask as u32, (mask >> 32) as u32].map(|word| CapData {
        effective: word,
        permitted: word,
        inheritable: 0,
    });
    // SAFETY: capset reads one header and, for version 3, two data structs, which is what
    // both pointers point at (repr(C), the kernel's layout); it writes nothing of ours.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_capset,
            &header as *const CapHeader,
            data.as_ptr(),
        )
    };
    Errno::result(rc)
        .map(drop)
        .map_err(|e| ctx(e, format_args!("capset({mask:#x})")))
}

fn lookup_user(user: &str) -> io::Result<Account> {
    if user.is_empty() || user.contains('\0') {
        return Err(bad_user(user));
    }
    let found = accounts::lookup(user).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("looking up user {user} in /etc/passwd: {e}"),
        )
    })?;
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot run as user {user}: no such user"),
        )
    })
}

fn bad_user(user: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid user name {}", Quoted(user)),
    )
}

fn get() -> io::Result<(rlim_t, rlim_t)> {
    getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| ctx(e, "getrlimit(RLIMIT_NOFILE)"))
}

// rlim_t is u64 on musl and 64-bit glibc but u32 on 32-bit uClibc and old 32-bit glibc.
#[allow(clippy::useless_conversion)]
fn to_u64(v: rlim_t) -> u64 {
    if v == RLIM_INFINITY {
        u64::MAX
    } else {
        u64::from(v)
    }
}

#[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
fn to_rlim(n: u64) -> rlim_t {
    rlim_t::try_from(n).unwrap_or(RLIM_INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::is_root;

    #[test]
    fn nofile_round_trip() {
        let start = nofile().unwrap();
        let (_, hard) = get().unwrap();
        assert!(start > 16);
        // Other tests run in parallel threads: only ever dip by one descriptor.
        set_nofile(start - 1).unwrap();
        assert_eq!(nofile().unwrap(), start - 1);
        assert_eq!(get().unwrap().1, hard, "the hard limit must not be lowered");
        let raised = raise_nofile_to_hard().unwrap();
        assert!(raised >= start);
        assert_eq!(nofile().unwrap(), raised);
        set_nofile(start).unwrap();
        assert_eq!(nofile().unwrap(), start);
    }

    #[test]
    fn nofile_above_hard_needs_privilege() {
        let (_, hard) = get().unwrap();
        if is_root() || hard == RLIM_INFINITY {
            return;
        }
        let e = set_nofile(to_u64(hard) + 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("hard limit"), "{e}");
    }

    #[test]
    fn run_as_unknown_user_fails() {
        let e = run_as("nonexistent-user-xyz", &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("nonexistent-user-xyz"), "{e}");
        assert_eq!(
            run_as("", &[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            run_as("a\0b", &[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        if !is_root() {
            assert_eq!(
                run_as("root", &[]).unwrap_err().kind(),
                io::ErrorKind::PermissionDenied
            );
        }
    }

    #[test]
    fn keep_lists_become_the_kernel_bit_numbers() {
        use Capability::*;
        assert_eq!(capability_mask(&[]), 0);
        assert_eq!(capability_mask(&[NetBindService]), 0x400);
        assert_eq!(capability_mask(&[NetAdmin]), 0x1000);
        assert_eq!(
            capability_mask(&[NetAdmin, NetBindService, NetAdmin]),
            0x1400
        );
        assert_eq!(kept_capabilities([8388, 1024], false), []);
        assert_eq!(kept_capabilities([8388, 1023], false), [NetBindService]);
        assert_eq!(kept_capabilities([80], true), [NetBindService, NetAdmin]);
        assert_eq!(kept_capabilities([], true), [NetAdmin]);
    }

    const CHILD_ENV: &str = "SS_SMOL_TEST_RUN_AS";

    /// Dropping privileges is irreversible and process-wide, so it runs in a child process:
    /// this test binary re-executed with only `run_as_child` selected.
    #[test]
    fn run_as_drops_to_nobody() {
        if !is_root() || accounts::lookup("nobody").ok().flatten().is_none() {
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::process::tests::run_as_child",
                "--nocapture",
            ])
            .env(CHILD_ENV, "nobody")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{log}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(log.contains("1 passed"), "child test did not run: {log}");
    }

    #[test]
    fn run_as_child() {
        let Ok(user) = std::env::var(CHILD_ENV) else {
            return;
        };
        let pw = accounts::lookup(&user).unwrap().unwrap();
        run_as(&user, &[]).unwrap();
        assert_eq!(
            (getuid().as_raw(), nix::unistd::getgid().as_raw()),
            (pw.uid, pw.gid)
        );
        assert_eq!(nix::unistd::geteuid().as_raw(), pw.uid);
        // Root's supplementary groups must be gone.
        let groups = nix::unistd::getgroups().unwrap();
        assert!(
            !groups.contains(&nix::unistd::Gid::from_raw(0)),
            "{groups:?}"
        );
        assert_eq!(setuid(Uid::from_raw(0)), Err(Errno::EPERM));
    }

    #[test]
    fn run_as_self_is_a_no_op() {
        let me = accounts::lookup(&getuid().to_string()).unwrap();
        if let Some(me) = me {
            run_as(&me.name, &[]).unwrap();
            assert_eq!(getuid().as_raw(), me.uid);
        }
        // A numeric uid is accepted too, as in libev.
        run_as(&getuid().to_string(), &[]).unwrap();
    }
}
