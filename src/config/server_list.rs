//! `--server-list FILE`: a SIP008 document of servers (`config::sip008`), read at start and
//! again on SIGHUP. Each entry is checked as a `servers` entry is; a wrong one is left out with
//! a warning, so a provider's list with one bad server still gives the others.

use super::merge::own_server;
use super::sip008::parse_sip008;
use super::ServerAddr;
use std::path::Path;

/// Larger files are refused: a list of a few hundred servers is some tens of KiB.
pub const MAX_LIST_BYTES: u64 = 1 << 20;

/// The servers of the list at `path`, and one warning per entry left out.
pub fn read_server_list(path: &Path) -> Result<(Vec<ServerAddr>, Vec<String>), String> {
    let name = format!("server list {}", path.display());
    let text = read_bounded(path).map_err(|e| format!("{name}: {e}"))?;
    let (entries, mut warnings) = parse_sip008(&text).map_err(|e| format!("{name}: {e}"))?;
    for w in &mut warnings {
        w.insert_str(0, &format!("{name}: "));
    }
    let mut servers = Vec::new();
    for (n, e) in entries.iter().enumerate() {
        match own_server(e, &format!("{name}: server {}", n + 1)) {
            Ok(s) => servers.push(s),
            Err(why) => warnings.push(format!("{why}; skipped")),
        }
    }
    Ok((servers, warnings))
}

/// The file's text; its size is checked before reading, so a huge file is never read.
fn read_bounded(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_LIST_BYTES {
        return Err(format!("larger than {MAX_LIST_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_gives_its_good_servers_and_names_the_others() {
        let dir = std::env::temp_dir().join(format!("ss-smol-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("list.json");
        std::fs::write(
            &path,
            r#"{"version": 1, "servers": [
                {"server": "192.0.2.1", "server_port": 8388, "method": "aes-128-gcm",
                 "password": "a", "remarks": "one"},
                {"server": "192.0.2.2", "server_port": 8388, "method": "rc4-md5", "password": "b"},
                {"server": "192.0.2.3", "server_port": 8388, "method": "2022-blake3-aes-128-gcm",
                 "password": "not base64!"}]}"#,
        )
        .unwrap();
        let (servers, warnings) = read_server_list(&path).unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(
            servers[0].own.as_ref().unwrap().remarks.as_deref(),
            Some("one")
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("server 2") && warnings[0].contains("rc4-md5"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("server 3: the password"),
            "{warnings:?}"
        );
        assert!(
            !warnings.iter().any(|w| w.contains("not base64!")),
            "{warnings:?}"
        );
        let missing = read_server_list(&dir.join("nope.json")).unwrap_err();
        assert!(missing.contains("nope.json"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
