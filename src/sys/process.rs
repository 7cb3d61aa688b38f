//! Process-wide settings made once at start-up: the open-file limit that bounds how many
//! connections can exist, and dropping root to an unprivileged user (libev `-a`).

use super::{ctx, ctx_hint};
use nix::errno::Errno;
use nix::sys::resource::{getrlimit, rlim_t, setrlimit, Resource, RLIM_INFINITY};
use nix::unistd::{getuid, initgroups, setgid, setuid, Uid, User};
use std::ffi::CString;
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

/// setgid/setgroups/setuid to the named user (like libev's `-a`), also accepting a numeric
/// uid as libev does. A no-op when already running as that user; an error if the user does
/// not exist or we are not root.
///
/// Call after binding privileged ports. Both glibc and musl apply the change to every
/// thread of the process.
pub fn run_as(user: &str) -> io::Result<()> {
    let pw = lookup_user(user)?;
    if pw.uid == getuid() {
        return Ok(());
    }
    if !getuid().is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("cannot run as user {user}: switching users needs root"),
        ));
    }
    let name = CString::new(pw.name.as_str()).map_err(|_| bad_user(user))?;
    // Supplementary groups first: they are root's (e.g. 0) until replaced, and replacing
    // them needs the privilege that setuid is about to drop.
    initgroups(&name, pw.gid).map_err(|e| ctx(e, format_args!("initgroups for {user}")))?;
    setgid(pw.gid).map_err(|e| ctx(e, format_args!("setgid to {}", pw.gid)))?;
    setuid(pw.uid).map_err(|e| ctx(e, format_args!("setuid to {}", pw.uid)))?;
    Ok(())
}

fn lookup_user(user: &str) -> io::Result<User> {
    if user.is_empty() || user.contains('\0') {
        return Err(bad_user(user));
    }
    let by_name =
        User::from_name(user).map_err(|e| ctx(e, format_args!("looking up user {user}")))?;
    let found = match (by_name, user.parse::<u32>()) {
        (Some(pw), _) => Some(pw),
        (None, Ok(uid)) => User::from_uid(Uid::from_raw(uid))
            .map_err(|e| ctx(e, format_args!("looking up uid {uid}")))?,
        (None, Err(_)) => None,
    };
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
        format!("invalid user name {user:?}"),
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
        let e = run_as("nonexistent-user-xyz").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("nonexistent-user-xyz"), "{e}");
        assert_eq!(run_as("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            run_as("a\0b").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        if !is_root() {
            assert_eq!(
                run_as("root").unwrap_err().kind(),
                io::ErrorKind::PermissionDenied
            );
        }
    }

    const CHILD_ENV: &str = "SS_SMOL_TEST_RUN_AS";

    /// Dropping privileges is irreversible and process-wide, so it runs in a child process:
    /// this test binary re-executed with only `run_as_child` selected.
    #[test]
    fn run_as_drops_to_nobody() {
        if !is_root() || User::from_name("nobody").ok().flatten().is_none() {
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
        let pw = User::from_name(&user).unwrap().unwrap();
        run_as(&user).unwrap();
        assert_eq!((getuid(), nix::unistd::getgid()), (pw.uid, pw.gid));
        assert_eq!(nix::unistd::geteuid(), pw.uid);
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
        let me = User::from_uid(getuid()).unwrap();
        if let Some(me) = me {
            run_as(&me.name).unwrap();
            assert_eq!(getuid(), me.uid);
        }
        // A numeric uid is accepted too, as in libev.
        run_as(&getuid().to_string()).unwrap();
    }
}
