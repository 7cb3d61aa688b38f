//! The user `-a` names and its groups, read from `/etc/passwd` and `/etc/group` directly.
//!
//! ```text
//! /etc/passwd   name:password:uid:gid:gecos:home:shell
//! /etc/group    name:password:gid:member,member,...
//! ```
//!
//! Why not getpwnam/initgroups: on a router these files are all there is (no NSS, no nscd), and
//! the C library's lookups (nscd client, stdio, the group walk) cost about 6 KB of the 512 KiB
//! the router binary may take. A line that does not parse is skipped, as the C library skips
//! it.

use std::io;

/// A user as `-a` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn parse_account(line: &str) -> Option<Account> {
    let mut f = line.split(':');
    let name = f.next()?;
    let _password = f.next()?;
    let uid = f.next()?.parse().ok()?;
    let gid = f.next()?.parse().ok()?;
    (!name.is_empty()).then(|| Account {
        name: name.to_string(),
        uid,
        gid,
    })
}

/// The account named `user` in `passwd` (the file's text), or else, when `user` is a number,
/// the first account with that uid (libev's `-a` takes either).
pub fn find_account(passwd: &str, user: &str) -> Option<Account> {
    let accounts = || passwd.lines().filter_map(parse_account);
    accounts().find(|a| a.name == user).or_else(|| {
        let uid: u32 = user.parse().ok()?;
        accounts().find(|a| a.uid == uid)
    })
}

/// The groups `initgroups(name, gid)` would set from `group` (the file's text): `gid` first,
/// then every group listing `name` as a member.
pub fn groups_of(group: &str, name: &str, gid: u32) -> Vec<u32> {
    let mut out = vec![gid];
    for line in group.lines() {
        let mut f = line.split(':');
        let (Some(_), Some(_), Some(id), Some(members)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else {
            continue;
        };
        if members.split(',').any(|m| m == name) && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// `find_account` on the system's `/etc/passwd`.
pub fn lookup(user: &str) -> io::Result<Option<Account>> {
    Ok(find_account(&std::fs::read_to_string("/etc/passwd")?, user))
}

/// `groups_of` on the system's `/etc/group` (none there: just `gid`).
pub fn groups(name: &str, gid: u32) -> io::Result<Vec<u32>> {
    match std::fs::read_to_string("/etc/group") {
        Ok(text) => Ok(groups_of(&text, name, gid)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![gid]),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/ash\n\
        broken line\n\
        daemon:*:1:1:daemon:/var:/bin/false\n\
        bad:x:notanumber:1::/:\n\
        nobody:*:65534:65534:nobody:/var:/bin/false\n\
        2000:x:2001:2001::/:\n";

    fn acct(name: &str, uid: u32, gid: u32) -> Option<Account> {
        Some(Account {
            name: name.into(),
            uid,
            gid,
        })
    }

    #[test]
    fn users_by_name_then_by_uid() {
        assert_eq!(find_account(PASSWD, "nobody"), acct("nobody", 65534, 65534));
        assert_eq!(find_account(PASSWD, "0"), acct("root", 0, 0));
        // A name that looks like a number is a name first.
        assert_eq!(find_account(PASSWD, "2000"), acct("2000", 2001, 2001));
        assert_eq!(find_account(PASSWD, "2001"), acct("2000", 2001, 2001));
        assert_eq!(find_account(PASSWD, "bad"), None);
        assert_eq!(find_account(PASSWD, "nosuch"), None);
        assert_eq!(find_account(PASSWD, ""), None);
        assert_eq!(find_account("", "root"), None);
    }

    #[test]
    fn groups_are_the_primary_then_the_memberships() {
        let group = "root:x:0:\nnet:x:10:alice,nobody\nbroken\nwww:x:33:nobody\n\
            nogroup:x:65534:\nodd:x:x:nobody\nself:x:65534:nobody\n";
        assert_eq!(groups_of(group, "nobody", 65534), [65534, 10, 33]);
        assert_eq!(groups_of(group, "alice", 100), [100, 10]);
        assert_eq!(groups_of(group, "bob", 5), [5]);
        assert_eq!(groups_of("", "bob", 5), [5]);
    }
}
