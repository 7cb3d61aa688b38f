//! `openwrt/build-packages.sh`, the OpenWrt packages of ss-smol, checked with OpenWrt's own
//! package managers: the vendored opkg (`opkg-lede`, for the .ipk of OpenWrt ≤ 24.10) and
//! apk-tools 3 (the .apk of OpenWrt 25.12), both built by `../shared/vendor/pkgtools/build.sh`.
//!
//! - The packages build for all four router arches from the static binaries of
//!   `cross/build.sh`, and twice in a row give the same bytes.
//! - The .ipk's outer container is what `scripts/ipkg-build` writes: a gzip'd GNU tar of
//!   `./debian-binary`, `./data.tar.gz`, `./control.tar.gz` in that order, owners 0:0, one mtime;
//!   re-packing its contents with ipkg-build's own tar and gzip commands gives the same bytes.
//! - The x86_64 packages install into a staged root (`opkg --offline-root`, `apk add --root`),
//!   where the binary runs through its symlinks; the package managers read back the control
//!   fields; removal leaves no file of the package behind.
//! - Next to an installed `shadowsocks-libev-ss-local` (a tiny fake owning `/usr/bin/ss-local`,
//!   as the real one does) both package managers refuse the install because of the declared
//!   conflict.
//!
//! Where things come from: the binaries from `SS_SMOL_CROSS_DIR` (default `target/cross`), the
//! kit from `PKGTOOLS` (default `../shared/vendor/pkgtools` next to the repository), its tools
//! from the kit's `out/bin` or, where the kit is read-only (CI), `${TMPDIR:-/tmp}/pkgtools-out/bin`.
//! The tests that need the tools are ignored by a plain `cargo test`; `bash tests/run-all.sh`
//! builds the kit and runs them, and a missing tool or binary fails them.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

const STEP: Duration = Duration::from_secs(120);
/// Fixed, so that the control file can be compared whole and two builds must agree.
const EPOCH: &str = "1700000000";
const NAME: &str = "shadowsocks-smol";
const ARCHES: [(&str, &str); 4] = [
    ("mipsel_24kc", "mipsel-unknown-linux-musl"),
    ("mips_24kc", "mips-unknown-linux-musl"),
    ("aarch64_cortex-a53", "aarch64-unknown-linux-musl"),
    ("x86_64", "x86_64-unknown-linux-musl"),
];
const LIBEV_CONFLICTS: [&str; 4] = [
    "shadowsocks-libev-ss-local",
    "shadowsocks-libev-ss-redir",
    "shadowsocks-libev-ss-tunnel",
    "shadowsocks-libev-ss-server",
];
const PROGRAMS: [&str; 4] = ["ss-local", "ss-tunnel", "ss-redir", "ss-server"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The version the packages must carry: Cargo's, release 1, in the `-r` form apk requires.
fn version() -> String {
    format!("{}-r1", env!("CARGO_PKG_VERSION"))
}

fn cross_dir() -> PathBuf {
    std::env::var_os("SS_SMOL_CROSS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/cross"))
}

/// The router binary of `triple`; a missing one fails the test.
fn cross_bin(triple: &str) -> PathBuf {
    let path = cross_dir().join(triple).join("ss-smol");
    assert!(
        path.is_file(),
        "cross-built binary {} not found: run `bash cross/build.sh {triple}` \
         (tests/run-all.sh does before the tests)",
        path.display()
    );
    path
}

/// The vendored opkg and apk. Missing tools fail the test: a skip would let a run without them
/// pass as if the packages had been installed.
struct Tools {
    opkg: PathBuf,
    apk: PathBuf,
}

fn tools() -> Tools {
    let kit = std::env::var_os("PKGTOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/vendor/pkgtools"));
    let tmp = std::env::var_os("TMPDIR")
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    // build.sh's own choice: the kit's out/ when the kit is writable, else this folder.
    let candidates = [kit.join("out/bin"), tmp.join("pkgtools-out/bin")];
    let found = candidates
        .iter()
        .find(|bin| is_executable(&bin.join("opkg")) && is_executable(&bin.join("apk")));
    let bin = found.unwrap_or_else(|| {
        panic!(
            "the vendored opkg and apk are not built (looked in {} and {}): \
             run `bash {}/build.sh`; `bash tests/run-all.sh` does",
            candidates[0].display(),
            candidates[1].display(),
            kit.display()
        )
    });
    Tools {
        opkg: bin.join("opkg"),
        apk: bin.join("apk"),
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn run(name: &str, cmd: Command) -> Finished {
    run_to_end(name, cmd, STEP)
}

fn run_ok(name: &str, cmd: Command) -> Finished {
    let f = run(name, cmd);
    assert!(
        f.status.success(),
        "{name}: {:?}\nstdout:\n{}\nstderr:\n{}",
        f.status,
        f.stdout,
        f.stderr
    );
    f
}

/// `bash openwrt/build-packages.sh` for `arches` into `out`, with the kit's apk; returns the
/// paths it printed.
fn build_packages(out: &Path, arches: &[&str], tools: &Tools) -> Vec<PathBuf> {
    build_packages_with(out, arches, &[], tools)
}

/// `build_packages` with more options for the script (e.g. `--release 2`).
fn build_packages_with(out: &Path, arches: &[&str], extra: &[&str], tools: &Tools) -> Vec<PathBuf> {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("openwrt/build-packages.sh"))
        .args(extra)
        .arg("--bin-dir")
        .arg(cross_dir())
        .arg("--out")
        .arg(out);
    for arch in arches {
        cmd.args(["--arch", arch]);
    }
    cmd.env("SOURCE_DATE_EPOCH", EPOCH).env("APK", &tools.apk);
    let f = run_ok("build-packages.sh", cmd);
    f.stdout.lines().map(PathBuf::from).collect()
}

fn ipk_path(out: &Path, arch: &str) -> PathBuf {
    out.join(arch)
        .join(format!("{NAME}_{}_{arch}.ipk", version()))
}

fn apk_path(out: &Path, arch: &str) -> PathBuf {
    out.join(arch).join(format!("{NAME}-{}.apk", version()))
}

/// The sub-packages, each arch-independent (the ipk says `all`) but built into every arch's
/// directory, as OpenWrt's bin/packages/<arch>/ has them.
const SUBPACKAGES: [&str; 3] = [
    "shadowsocks-smol-config",
    "shadowsocks-smol-rules",
    "shadowsocks-smol-rules-iptables",
];

fn sub_ipk(out: &Path, arch: &str, name: &str, version: &str) -> PathBuf {
    out.join(arch).join(format!("{name}_{version}_all.ipk"))
}

fn sub_apk(out: &Path, arch: &str, name: &str, version: &str) -> PathBuf {
    out.join(arch).join(format!("{name}-{version}.apk"))
}

/// The x86_64 packages (the binary that runs here), built into `dir/out`.
fn build_x86_64(dir: &TempDir, tools: &Tools) -> (PathBuf, PathBuf) {
    cross_bin("x86_64-unknown-linux-musl");
    let out = dir.join("out");
    build_packages(&out, &["x86_64"], tools);
    (ipk_path(&out, "x86_64"), apk_path(&out, "x86_64"))
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("run gzip");
    assert!(out.status.success(), "gzip -dc {}", path.display());
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// A reader for the tar archives, enough to check headers byte-wise.

#[derive(Debug)]
struct TarEntry {
    name: String,
    mode: u64,
    uid: u64,
    gid: u64,
    mtime: u64,
    kind: u8,
    link: String,
    /// The 8 bytes at 257: GNU tar's "ustar  \0" (POSIX ustar would be "ustar\x0000").
    magic: Vec<u8>,
    uname: String,
    gname: String,
    data: Vec<u8>,
}

fn field_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn field_octal(b: &[u8]) -> u64 {
    let s = field_str(b);
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    u64::from_str_radix(s, 8).unwrap_or_else(|_| panic!("bad octal field {s:?}"))
}

/// Entries up to the end-of-archive blocks; the archive must end in zeros and fill whole
/// 10240-byte records (tar's default blocking).
fn parse_tar(bytes: &[u8]) -> Vec<TarEntry> {
    assert_eq!(bytes.len() % 10240, 0, "tar size not a whole record");
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() {
        let h = &bytes[at..at + 512];
        if h.iter().all(|&c| c == 0) {
            assert!(
                bytes[at..].iter().all(|&c| c == 0),
                "data after the end-of-archive block"
            );
            return entries;
        }
        // The header checksum: the sum of its bytes with the checksum field taken as spaces.
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    c as u64
                }
            })
            .sum();
        assert_eq!(sum, field_octal(&h[148..156]), "header checksum at {at}");
        let size = field_octal(&h[124..136]) as usize;
        let data = bytes[at + 512..at + 512 + size].to_vec();
        entries.push(TarEntry {
            name: field_str(&h[0..100]),
            mode: field_octal(&h[100..108]),
            uid: field_octal(&h[108..116]),
            gid: field_octal(&h[116..124]),
            mtime: field_octal(&h[136..148]),
            kind: h[156],
            link: field_str(&h[157..257]),
            magic: h[257..265].to_vec(),
            uname: field_str(&h[265..297]),
            gname: field_str(&h[297..329]),
            data,
        });
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("tar without an end-of-archive block");
}

/// What ipkg-build's tar flags give every entry: GNU format, numeric owner 0:0 (fakeroot), no
/// owner names, the one mtime.
fn assert_ipkg_header(e: &TarEntry, what: &str) {
    assert_eq!(e.magic, b"ustar  \0", "{what} {}: not GNU format", e.name);
    assert_eq!((e.uid, e.gid), (0, 0), "{what} {}: owner", e.name);
    assert_eq!(
        (e.uname.as_str(), e.gname.as_str()),
        ("", ""),
        "{what} {}: --numeric-owner leaves the names empty",
        e.name
    );
    assert_eq!(e.mtime.to_string(), EPOCH, "{what} {}: mtime", e.name);
}

/// A gzip stream as `gzip -n` writes it: no name, mtime 0.
fn assert_gzip_n(bytes: &[u8], what: &str) {
    assert_eq!(&bytes[..3], &[0x1f, 0x8b, 8], "{what}: not gzip (deflate)");
    assert_eq!(bytes[3], 0, "{what}: gzip flags (a file name?)");
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "{what}: gzip mtime not 0");
}

// ---------------------------------------------------------------------------------------------
// Staged roots

/// An offline root for opkg, as OpenWrt's include/rootfs.mk drives it (flags instead of a
/// conf file); maintainer scripts run (`--force-postinstall`) with IPKG_INSTROOT set.
struct OpkgRoot {
    root: PathBuf,
    opkg: PathBuf,
}

impl OpkgRoot {
    fn new(root: PathBuf, tools: &Tools) -> OpkgRoot {
        // opkg locks ROOT/var/lock/opkg.lock and fails without the directory.
        fs::create_dir_all(root.join("var/lock")).unwrap();
        fs::create_dir_all(root.join("tmp")).unwrap();
        OpkgRoot {
            root,
            opkg: tools.opkg.clone(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.opkg);
        cmd.env("IPKG_INSTROOT", &self.root)
            .env("TMPDIR", self.root.join("tmp"))
            .env_remove("IPKG_NO_SCRIPT")
            .arg("--offline-root")
            .arg(&self.root)
            .args(["--force-postinstall", "--add-dest", "root:/"])
            .args(["--add-arch", "all:100", "--add-arch", "x86_64:200"])
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Finished {
        run(&format!("opkg {}", args.join(" ")), self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> Finished {
        run_ok(&format!("opkg {}", args.join(" ")), self.cmd(args))
    }

    fn install(&self, pkg: &Path) -> Finished {
        self.run(&["install", pkg.to_str().unwrap()])
    }
}

/// An offline root for apk, with the flags the kit's README tested: no network, no cache or
/// log in the root, no repositories, scripts run on the host with the environment kept.
struct ApkRoot {
    root: PathBuf,
    apk: PathBuf,
}

impl ApkRoot {
    fn new(root: PathBuf, tools: &Tools) -> ApkRoot {
        fs::create_dir_all(&root).unwrap();
        let r = ApkRoot {
            root,
            apk: tools.apk.clone(),
        };
        // An empty database first, so that what an install and removal leave can be compared
        // with what apk itself keeps.
        r.ok(&["add", "--initdb"]);
        r
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.apk);
        cmd.env("IPKG_INSTROOT", &self.root)
            .arg("--root")
            .arg(&self.root)
            .args([
                "--arch",
                "x86_64",
                "--no-network",
                "--no-cache",
                "--no-logfile",
            ])
            .args(["--repositories-file", "/dev/null"])
            .args(["--force-no-chroot", "--preserve-env"])
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Finished {
        run(&format!("apk {}", args.join(" ")), self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> Finished {
        run_ok(&format!("apk {}", args.join(" ")), self.cmd(args))
    }

    fn add(&self, pkg: &Path) -> Finished {
        self.run(&["add", "--allow-untrusted", pkg.to_str().unwrap()])
    }
}

/// Every file and symlink under `root`, relative; directories are left out (opkg leaves the
/// emptied /usr/bin in place, as it does on a router).
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// The installed binary and its four names: symlinks to `ss-smol`, each running as its mode.
fn assert_installed_programs(root: &Path, binary: &Path) {
    let bin = root.join("usr/bin/ss-smol");
    let meta = fs::symlink_metadata(&bin).expect("usr/bin/ss-smol installed");
    assert!(meta.is_file(), "ss-smol is a regular file");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "ss-smol mode");
    assert_eq!(
        fs::read(&bin).unwrap(),
        fs::read(binary).unwrap(),
        "ss-smol is the cross-built binary"
    );
    for prog in PROGRAMS {
        let link = root.join("usr/bin").join(prog);
        let target = fs::read_link(&link).unwrap_or_else(|e| panic!("{prog}: not a symlink: {e}"));
        assert_eq!(target, Path::new("ss-smol"), "{prog} points at ss-smol");
        let mut cmd = Command::new(&link);
        cmd.arg("--version");
        let f = run_ok(prog, cmd);
        let want = format!("{prog} (ss-smol) {}", env!("CARGO_PKG_VERSION"));
        assert_eq!(f.stdout.trim(), want, "{prog} --version");
    }
}

/// A tiny stand-in package `name` holding `files` (path, content; executables), as an ipk in
/// ipkg-build's layout and as an apk; returns (ipk, apk).
fn fake_package(
    dir: &Path,
    name: &str,
    version: &str,
    files: &[(&str, &str)],
    tools: &Tools,
) -> (PathBuf, PathBuf) {
    let work = dir.join(format!("fake-{name}"));
    let pkg = work.join("pkg");
    fs::create_dir_all(pkg.join("CONTROL")).unwrap();
    for (path, content) in files {
        let file = pkg.join(path.trim_start_matches('/'));
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, content).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(
        pkg.join("CONTROL/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: x86_64\n\
             Installed-Size: 0\nDescription:  stand-in\n"
        ),
    )
    .unwrap();
    let script = format!(
        r#"set -eu
T="tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0"
cd "{work}"
mkdir ipk
(cd pkg && $T --exclude=./CONTROL -cf - .) | gzip -n > ipk/data.tar.gz
(cd pkg/CONTROL && $T -cf - .) | gzip -n > ipk/control.tar.gz
echo 2.0 > ipk/debian-binary
(cd ipk && $T -cf - ./debian-binary ./data.tar.gz ./control.tar.gz) | gzip -n > fake.ipk
rm -r pkg/CONTROL
"{apk}" mkpkg --info name:{name} --info version:{version} \
    --info arch:x86_64 --info "description:stand-in" \
    --files pkg --output fake.apk
"#,
        work = work.display(),
        apk = tools.apk.display()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script);
    run_ok(&format!("make the fake package {name}"), cmd);
    (work.join("fake.ipk"), work.join("fake.apk"))
}

/// libev's `shadowsocks-libev-ss-local`, owning `/usr/bin/ss-local` as the real one does.
fn fake_libev_ss_local(dir: &Path, tools: &Tools) -> (PathBuf, PathBuf) {
    fake_package(
        dir,
        "shadowsocks-libev-ss-local",
        "3.3.5-r11",
        &[("/usr/bin/ss-local", "#!/bin/sh\necho libev\n")],
        tools,
    )
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The script's own checks need nothing but bash: a missing binary names the command that
/// builds it, an unknown arch is refused.
#[test]
fn refuses_missing_binaries_and_unknown_arches() {
    let dir = TempDir::new("pkg-refuse");
    let script = repo().join("openwrt/build-packages.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .args(["--format", "ipk", "--arch", "mipsel_24kc", "--bin-dir"])
        .arg(dir.join("nothing"))
        .arg("--out")
        .arg(dir.join("out"));
    let f = run("build-packages.sh", cmd);
    assert!(!f.status.success(), "built without a binary");
    assert!(
        f.stderr
            .contains("cross/build.sh mipsel-unknown-linux-musl"),
        "no hint how to build the binary: {}",
        f.stderr
    );
    let mut cmd = Command::new("bash");
    cmd.arg(&script).args(["--arch", "mipsel_74kc"]);
    let f = run("build-packages.sh", cmd);
    assert!(!f.status.success(), "accepted an unknown arch");
    assert!(
        f.stderr.contains("unknown arch 'mipsel_74kc'"),
        "{}",
        f.stderr
    );
}

#[test]
#[ignore = "needs shellcheck; bash tests/run-all.sh runs it"]
fn script_is_shellcheck_clean() {
    require_tool("shellcheck");
    let mut cmd = Command::new("shellcheck");
    cmd.arg(repo().join("openwrt/build-packages.sh"));
    let f = run("shellcheck", cmd);
    assert!(f.status.success(), "shellcheck:\n{}{}", f.stdout, f.stderr);
}

/// All four arches, each package saying its arch and holding its arch's binary; the sizes are
/// printed (README "Install on the router" has the table).
#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn builds_every_arch() {
    let tools = tools();
    for (_, triple) in ARCHES {
        cross_bin(triple);
    }
    let dir = TempDir::new("pkg-all");
    let out = dir.join("out");
    let arches: Vec<&str> = ARCHES.iter().map(|(a, _)| *a).collect();
    let printed = build_packages(&out, &arches, &tools);
    let mut want = Vec::new();
    for (arch, triple) in ARCHES {
        let (ipk, apk) = (ipk_path(&out, arch), apk_path(&out, arch));
        want.push(ipk.clone());
        want.push(apk.clone());
        for name in SUBPACKAGES {
            want.push(sub_ipk(&out, arch, name, &version()));
            want.push(sub_apk(&out, arch, name, &version()));
        }
        let binary = fs::read(cross_bin(triple)).unwrap();

        // The ipk: Architecture in its control file, the binary in its data.
        let work = dir.join(&format!("x-{arch}"));
        fs::create_dir_all(&work).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg("set -e; cd \"$1\"; tar -xzf \"$2\"; mkdir c d; tar -xzf control.tar.gz -C c; tar -xzf data.tar.gz -C d")
            .arg("-")
            .arg(&work)
            .arg(&ipk);
        run_ok("unpack ipk", cmd);
        let control = fs::read_to_string(work.join("c/control")).unwrap();
        assert!(
            control.contains(&format!("\nArchitecture: {arch}\n")),
            "{arch}: {control}"
        );
        assert_eq!(
            fs::read(work.join("d/usr/bin/ss-smol")).unwrap(),
            binary,
            "{arch}: ipk binary"
        );

        // The apk: its arch and size as apk reads them from the package.
        let mut cmd = Command::new(&tools.apk);
        cmd.arg("adbdump").arg(&apk);
        let dump = run_ok("apk adbdump", cmd).stdout;
        assert!(dump.contains(&format!("arch: {arch}")), "{arch}: {dump}");
        let installed: u64 = dump
            .lines()
            .find_map(|l| l.trim().strip_prefix("installed-size: "))
            .unwrap_or_else(|| panic!("no installed-size: {dump}"))
            .parse()
            .unwrap();
        assert!(
            installed >= binary.len() as u64 && installed < binary.len() as u64 + 4096,
            "{arch}: apk installed-size {installed} for a {}-byte binary",
            binary.len()
        );

        let ipk_len = fs::metadata(&ipk).unwrap().len();
        let apk_len = fs::metadata(&apk).unwrap().len();
        eprintln!(
            "{arch}: binary {} bytes, ipk {ipk_len} bytes, apk {apk_len} bytes",
            binary.len()
        );
        // Compressed, so smaller than the binary; the 250 KB goal is reported, not enforced.
        assert!(ipk_len < binary.len() as u64 && apk_len < binary.len() as u64);
    }
    assert_eq!(printed, want, "the paths printed on stdout");
}

#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn builds_are_reproducible() {
    let tools = tools();
    cross_bin("x86_64-unknown-linux-musl");
    cross_bin("mipsel-unknown-linux-musl");
    let dir = TempDir::new("pkg-repro");
    let (a, b) = (dir.join("a"), dir.join("b"));
    build_packages(&a, &["x86_64", "mipsel_24kc"], &tools);
    // A second later, so that every file staged for the packages has another real mtime.
    std::thread::sleep(Duration::from_millis(1100));
    build_packages(&b, &["x86_64", "mipsel_24kc"], &tools);
    for arch in ["x86_64", "mipsel_24kc"] {
        for (pa, pb) in [
            (ipk_path(&a, arch), ipk_path(&b, arch)),
            (apk_path(&a, arch), apk_path(&b, arch)),
        ] {
            assert!(
                fs::read(&pa).unwrap() == fs::read(&pb).unwrap(),
                "{} and {} differ",
                pa.display(),
                pb.display()
            );
        }
    }
}

/// The .ipk byte-wise: its headers as ipkg-build's flags make them, and the same bytes again
/// when its contents are packed with ipkg-build's own commands.
#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn ipk_is_what_ipkg_build_writes() {
    let tools = tools();
    let dir = TempDir::new("pkg-ipk");
    let (ipk, _) = build_x86_64(&dir, &tools);
    let bytes = fs::read(&ipk).unwrap();
    assert_gzip_n(&bytes, "the ipk");
    let outer = parse_tar(&gunzip(&ipk));
    let names: Vec<&str> = outer.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["./debian-binary", "./data.tar.gz", "./control.tar.gz"],
        "outer members and their order"
    );
    for e in &outer {
        assert_ipkg_header(e, "outer");
        assert_eq!((e.kind, e.mode), (b'0', 0o644), "outer {}", e.name);
    }
    assert_eq!(outer[0].data, b"2.0\n", "debian-binary");
    assert_gzip_n(&outer[1].data, "data.tar.gz");
    assert_gzip_n(&outer[2].data, "control.tar.gz");

    // The inner tars, unpacked by hand from the outer one.
    let unpacked = dir.join("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    for e in &outer[1..] {
        fs::write(unpacked.join(&e.name[2..]), &e.data).unwrap();
    }
    let data_tar = gunzip(&unpacked.join("data.tar.gz"));
    let data = parse_tar(&data_tar);
    let listing: Vec<(&str, u8, u64, &str)> = data
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.mode, e.link.as_str()))
        .collect();
    assert_eq!(
        listing,
        [
            ("./", b'5', 0o755, ""),
            ("./usr/", b'5', 0o755, ""),
            ("./usr/bin/", b'5', 0o755, ""),
            ("./usr/bin/ss-local", b'2', 0o777, "ss-smol"),
            ("./usr/bin/ss-redir", b'2', 0o777, "ss-smol"),
            ("./usr/bin/ss-server", b'2', 0o777, "ss-smol"),
            ("./usr/bin/ss-smol", b'0', 0o755, ""),
            ("./usr/bin/ss-tunnel", b'2', 0o777, "ss-smol"),
        ],
        "data.tar.gz: sorted, ./-prefixed, no CONTROL"
    );
    for e in &data {
        assert_ipkg_header(e, "data.tar.gz");
    }
    let control_tar = parse_tar(&gunzip(&unpacked.join("control.tar.gz")));
    let listing: Vec<(&str, u64)> = control_tar
        .iter()
        .map(|e| (e.name.as_str(), e.mode))
        .collect();
    assert_eq!(
        listing,
        [
            ("./", 0o755),
            ("./control", 0o644),
            ("./postinst", 0o755),
            ("./prerm", 0o755)
        ],
        "control.tar.gz"
    );
    for e in &control_tar {
        assert_ipkg_header(e, "control.tar.gz");
    }
    // The control file whole: package-pack.mk's fields in its order, Installed-Size the
    // size of the uncompressed data tar (ipkg-build's `zcat data.tar.gz | wc -c`).
    let control = String::from_utf8(control_tar[1].data.clone()).unwrap();
    let want = format!(
        "Package: {NAME}\n\
         Version: {}\n\
         Conflicts: {}\n\
         SourceName: shadowsocks-smol\n\
         License: MIT OR Apache-2.0\n\
         Section: net\n\
         SourceDateEpoch: {EPOCH}\n\
         Architecture: x86_64\n\
         Installed-Size: {}\n\
         Description:  A small, memory-bounded Shadowsocks client and server for OpenWrt \
         routers: one static binary, ss-smol, that is also ss-local, ss-tunnel, ss-redir and \
         ss-server.\n",
        version(),
        LIBEV_CONFLICTS.join(", "),
        data_tar.len()
    );
    assert_eq!(control, want, "control");
    // postinst/prerm: OpenWrt's generated hand-over to base-files' default_postinst/prerm.
    assert_eq!(
        String::from_utf8_lossy(&control_tar[2].data),
        "#!/bin/sh\n[ \"${IPKG_NO_SCRIPT}\" = \"1\" ] && exit 0\n\
         [ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n\
         . ${IPKG_INSTROOT}/lib/functions.sh\ndefault_postinst $0 $@\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&control_tar[3].data),
        "#!/bin/sh\n[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0\n\
         . ${IPKG_INSTROOT}/lib/functions.sh\ndefault_prerm $0 $@\n"
    );

    // Re-pack with the commands of openwrt/openwrt's scripts/ipkg-build (its TIMESTAMP from
    // `date --date=@SOURCE_DATE_EPOCH`, `-X` with "CONTROL", the Installed-Size rewrite, the
    // outer tar's member order); `--owner=0 --group=0` stand for the fakeroot it runs under.
    let script = r#"set -eu
cd "$1"
mkdir -p pkg/CONTROL ref
tar -xpzf data.tar.gz -C pkg
tar -xpzf control.tar.gz -C pkg/CONTROL
TIMESTAMP=$(date --date="@$SOURCE_DATE_EPOCH")
TAR="tar --owner=0 --group=0"
echo CONTROL > tarX
cd pkg
$TAR -X ../tarX --format=gnu --numeric-owner --sort=name -cpf - --mtime="$TIMESTAMP" . | gzip -n - > ../ref/data.tar.gz
installed_size=$(zcat < ../ref/data.tar.gz | wc -c)
sed -i -e "s/^Installed-Size: .*/Installed-Size: $installed_size/" CONTROL/control
( cd CONTROL && $TAR --format=gnu --numeric-owner --sort=name -cf - --mtime="$TIMESTAMP" . | gzip -n - > ../../ref/control.tar.gz )
cd ../ref
echo "2.0" > debian-binary
$TAR --format=gnu --numeric-owner --sort=name -cf - --mtime="$TIMESTAMP" ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -n - > ../ref.ipk
"#;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .arg("-")
        .arg(&unpacked)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("TZ", "UTC");
    run_ok("ipkg-build's commands", cmd);
    assert!(
        fs::read(unpacked.join("ref.ipk")).unwrap() == bytes,
        "ipkg-build's commands give other bytes from the same contents (kept: {})",
        unpacked.display()
    );
}

#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn opkg_installs_runs_and_removes() {
    let tools = tools();
    let dir = TempDir::new("pkg-opkg");
    let (ipk, _) = build_x86_64(&dir, &tools);
    let binary = cross_bin("x86_64-unknown-linux-musl");
    let r = OpkgRoot::new(dir.join("root"), &tools);
    let before = files_under(&r.root);

    let f = r.install(&ipk);
    assert!(f.status.success(), "opkg install: {}{}", f.stdout, f.stderr);
    assert_installed_programs(&r.root, &binary);

    let listed = r.ok(&["list-installed"]).stdout;
    assert_eq!(listed.trim(), format!("{NAME} - {}", version()));
    // `opkg info` of an installed package: the fields opkg keeps in its status file.
    let info = r.ok(&["info", NAME]).stdout;
    for line in [
        format!("Package: {NAME}"),
        format!("Version: {}", version()),
        format!("Conflicts: {}", LIBEV_CONFLICTS.join(", ")),
        "Status: install user installed".to_string(),
        "Architecture: x86_64".to_string(),
    ] {
        assert!(
            info.lines().any(|l| l == line),
            "opkg info lacks {line:?}:\n{info}"
        );
    }
    assert!(
        !info.contains("Depends:"),
        "a static binary depends on nothing:\n{info}"
    );
    // The whole control file opkg keeps for the package (opkg info shows only status fields).
    let control = fs::read_to_string(r.root.join(format!("usr/lib/opkg/info/{NAME}.control")))
        .expect("opkg's copy of the control file");
    let size: u64 = control
        .lines()
        .find_map(|l| l.strip_prefix("Installed-Size: "))
        .expect("Installed-Size")
        .parse()
        .unwrap();
    let bin_len = fs::metadata(&binary).unwrap().len();
    assert!(
        size > bin_len && size < bin_len + 20 * 1024,
        "Installed-Size {size} for a {bin_len}-byte binary"
    );
    for field in [
        "SourceName: shadowsocks-smol",
        "Section: net",
        "License: MIT OR Apache-2.0",
    ] {
        assert!(
            control.lines().any(|l| l == field),
            "{field:?} in\n{control}"
        );
    }
    let files = r.ok(&["files", NAME]).stdout;
    for prog in PROGRAMS.iter().chain(&["ss-smol"]) {
        let path = r.root.join("usr/bin").join(prog);
        assert!(
            files.lines().any(|l| Path::new(l) == path),
            "opkg files lacks {prog}:\n{files}"
        );
    }

    r.ok(&["remove", NAME]);
    assert_eq!(r.ok(&["list-installed"]).stdout.trim(), "");
    let after = files_under(&r.root);
    let left: Vec<&String> = after.difference(&before).collect();
    // opkg's (now empty) status file is all that may stay.
    assert_eq!(
        left,
        ["usr/lib/opkg/status"],
        "left behind after opkg remove"
    );
    let status = fs::read_to_string(r.root.join("usr/lib/opkg/status")).unwrap();
    assert!(
        !status.contains(NAME),
        "status still has the package:\n{status}"
    );
}

#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn apk_installs_runs_and_removes() {
    let tools = tools();
    let dir = TempDir::new("pkg-apk");
    let (_, apk) = build_x86_64(&dir, &tools);
    let binary = cross_bin("x86_64-unknown-linux-musl");
    let r = ApkRoot::new(dir.join("root"), &tools);
    let before = files_under(&r.root);

    let f = r.add(&apk);
    assert!(f.status.success(), "apk add: {}{}", f.stdout, f.stderr);
    assert!(
        f.stdout
            .contains(&format!("Executing {NAME}-{}.post-install", version())),
        "the post-install script ran:\n{}",
        f.stdout
    );
    assert_installed_programs(&r.root, &binary);

    let listed = r.ok(&["list", "--installed"]).stdout;
    assert!(
        listed.starts_with(&format!(
            "{NAME}-{} x86_64 {{{NAME}}} (MIT OR Apache-2.0) [installed]",
            version()
        )),
        "apk list --installed:\n{listed}"
    );
    let info = r.ok(&["info", "-a", NAME]).stdout;
    assert!(
        info.contains(
            "\nA small, memory-bounded Shadowsocks client and server for OpenWrt routers:"
        ),
        "description in apk info:\n{info}"
    );
    // Conflicts are apk's "!name" dependencies; nothing else is depended on.
    let depends: Vec<&str> = info
        .split(&format!("{NAME}-{} depends on:\n", version()))
        .nth(1)
        .expect("depends section")
        .lines()
        .take_while(|l| !l.is_empty())
        .collect();
    let mut want: Vec<String> = LIBEV_CONFLICTS.iter().map(|c| format!("!{c}")).collect();
    want.sort();
    assert_eq!(depends, want, "apk info depends");
    // The installed size apk recorded: the files' bytes (the binary and OpenWrt's file list).
    let db = fs::read_to_string(r.root.join("lib/apk/db/installed")).unwrap();
    let size: u64 = db
        .lines()
        .find_map(|l| l.strip_prefix("I:"))
        .expect("I: in the installed db")
        .parse()
        .unwrap();
    let bin_len = fs::metadata(&binary).unwrap().len();
    assert!(
        size > bin_len && size < bin_len + 4096,
        "installed size {size} for a {bin_len}-byte binary"
    );
    // OpenWrt's file list inside the package, as package-pack.mk writes it.
    let list = fs::read_to_string(r.root.join(format!("lib/apk/packages/{NAME}.list"))).unwrap();
    assert_eq!(
        list,
        "/usr/bin/ss-local\n/usr/bin/ss-redir\n/usr/bin/ss-server\n/usr/bin/ss-smol\n/usr/bin/ss-tunnel\n"
    );

    let f = r.ok(&["del", NAME]);
    assert!(
        f.stdout.contains("pre-deinstall"),
        "pre-deinstall ran:\n{}",
        f.stdout
    );
    assert_eq!(r.ok(&["info"]).stdout.trim(), "");
    let after = files_under(&r.root);
    // apk's lock file, which its first change after --initdb creates, is all that may be new.
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|f| *f != "lib/apk/db/lock")
        .collect();
    assert!(left.is_empty(), "left behind after apk del: {left:?}");
    let db = fs::read_to_string(r.root.join("lib/apk/db/installed")).unwrap();
    assert!(
        !db.contains(NAME),
        "installed db still has the package:\n{db}"
    );
}

#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn opkg_refuses_next_to_libev_ss_local() {
    let tools = tools();
    let dir = TempDir::new("pkg-opkg-conflict");
    let (ipk, _) = build_x86_64(&dir, &tools);
    let (fake, _) = fake_libev_ss_local(dir.path(), &tools);
    let r = OpkgRoot::new(dir.join("root"), &tools);
    let f = r.install(&fake);
    assert!(
        f.status.success(),
        "fake libev install: {}{}",
        f.stdout,
        f.stderr
    );

    let f = r.install(&ipk);
    assert!(
        !f.status.success(),
        "opkg installed next to libev:\n{}",
        f.stdout
    );
    // The declared conflict refuses it (before any file clash is looked at).
    assert!(
        f.stderr
            .contains(&format!("The following packages conflict with {NAME}"))
            && f.stderr.contains("shadowsocks-libev-ss-local"),
        "opkg's message:\n{}",
        f.stderr
    );
    assert_eq!(
        r.ok(&["list-installed"]).stdout.trim(),
        "shadowsocks-libev-ss-local - 3.3.5-r11"
    );
    assert!(
        !r.root.join("usr/bin/ss-smol").exists(),
        "ss-smol was unpacked"
    );
    assert_eq!(
        fs::read_to_string(r.root.join("usr/bin/ss-local")).unwrap(),
        "#!/bin/sh\necho libev\n",
        "libev's ss-local untouched"
    );
}

#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn apk_refuses_next_to_libev_ss_local() {
    let tools = tools();
    let dir = TempDir::new("pkg-apk-conflict");
    let (_, apk) = build_x86_64(&dir, &tools);
    let (_, fake) = fake_libev_ss_local(dir.path(), &tools);
    let r = ApkRoot::new(dir.join("root"), &tools);
    let f = r.add(&fake);
    assert!(
        f.status.success(),
        "fake libev install: {}{}",
        f.stdout,
        f.stderr
    );

    let f = r.add(&apk);
    assert!(
        !f.status.success(),
        "apk installed next to libev:\n{}",
        f.stdout
    );
    // The solver refuses it for the "!shadowsocks-libev-ss-local" dependency.
    let msg = format!("{}{}", f.stdout, f.stderr);
    assert!(
        msg.contains(&format!(
            "breaks: {NAME}-{}[!shadowsocks-libev-ss-local]",
            version()
        )),
        "apk's message:\n{msg}"
    );
    assert_eq!(r.ok(&["info"]).stdout.trim(), "shadowsocks-libev-ss-local");
    assert!(
        !r.root.join("usr/bin/ss-smol").exists(),
        "ss-smol was unpacked"
    );
    assert_eq!(
        fs::read_to_string(r.root.join("usr/bin/ss-local")).unwrap(),
        "#!/bin/sh\necho libev\n",
        "libev's ss-local untouched"
    );
}

// ---------------------------------------------------------------------------------------------
// The whole set: the binary, its config and init script, the rules

/// What the sub-packages need from OpenWrt's feeds, as stand-ins so that the solvers are
/// satisfied (the nft rules' and the iptables rules' dependencies both).
const FEED_DEPS: [&str; 10] = [
    "nftables",
    "kmod-nft-nat",
    "kmod-nft-socket",
    "kmod-nft-tproxy",
    "ip",
    "iptables",
    "ipset",
    "iptables-mod-tproxy",
    "iptables-mod-socket",
    "kmod-ipt-nat",
];
const CONFIG: &str = "etc/config/shadowsocks-smol";
const INIT: &str = "etc/init.d/shadowsocks-smol";
const ADMIN_LINE: &str = "\n# changed by the admin\n";

/// The files of OpenWrt's base-files (rc.common, functions.sh, procd.sh, jshn.sh) from the
/// vendored init-script kit, so that the packages' maintainer scripts really run
/// default_postinst/default_prerm in the offline root (enabling and disabling the service).
fn stage_base_files(root: &Path) {
    let rootfs = support::openwrt_kit::kit().join("rootfs");
    assert!(
        rootfs.join("lib/functions.sh").is_file(),
        "OpenWrt's base files not found under {} (set OPENWRT_KIT)",
        rootfs.display()
    );
    let mut cmd = Command::new("cp");
    cmd.arg("-a")
        .arg(format!("{}/.", rootfs.display()))
        .arg(root);
    run_ok("stage base files", cmd);
    fs::create_dir_all(root.join("etc/rc.d")).unwrap();
}

/// The three packages a router with fw4 installs (binary, config, nft rules) at `version`.
fn set_of(out: &Path, version: &str, ext: &str) -> Vec<PathBuf> {
    let arch = "x86_64";
    if ext == "ipk" {
        vec![
            out.join(arch).join(format!("{NAME}_{version}_{arch}.ipk")),
            sub_ipk(out, arch, SUBPACKAGES[0], version),
            sub_ipk(out, arch, SUBPACKAGES[1], version),
        ]
    } else {
        vec![
            out.join(arch).join(format!("{NAME}-{version}.apk")),
            sub_apk(out, arch, SUBPACKAGES[0], version),
            sub_apk(out, arch, SUBPACKAGES[1], version),
        ]
    }
}

fn next_version() -> String {
    format!("{}-r2", env!("CARGO_PKG_VERSION"))
}

fn path_args(paths: &[PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}

/// The files the set installs, with their modes, and the service enabled by base-files.
fn assert_set_installed(root: &Path) {
    let want = fs::read(repo().join("openwrt/files/shadowsocks-smol.config")).unwrap();
    assert_eq!(
        fs::read(root.join(CONFIG)).unwrap(),
        want,
        "the sample config"
    );
    for (path, mode) in [
        (CONFIG, 0o600),
        (INIT, 0o755),
        ("etc/uci-defaults/shadowsocks-smol", 0o755),
        ("usr/bin/ss-rules", 0o755),
        ("usr/bin/ss-smol", 0o755),
    ] {
        let meta = fs::symlink_metadata(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(meta.is_file(), "{path} is a file");
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path} mode");
    }
    // default_postinst ran `rc.common /etc/init.d/shadowsocks-smol enable` in the root.
    let links: Vec<(String, PathBuf)> = fs::read_dir(root.join("etc/rc.d"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_link(e.path()).unwrap(),
            )
        })
        .collect();
    assert!(
        links.iter().any(|(n, t)| n.starts_with('S')
            && n.ends_with("shadowsocks-smol")
            && t == Path::new("../init.d/shadowsocks-smol")),
        "the service is enabled: /etc/rc.d has {links:?}"
    );
}

fn rc_d_entries(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("etc/rc.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn opkg_installs_upgrades_and_removes_the_set() {
    let tools = tools();
    cross_bin("x86_64-unknown-linux-musl");
    let dir = TempDir::new("pkg-opkg-set");
    let (out1, out2) = (dir.join("r1"), dir.join("r2"));
    build_packages_with(&out1, &["x86_64"], &["--format", "ipk"], &tools);
    build_packages_with(
        &out2,
        &["x86_64"],
        &["--format", "ipk", "--release", "2"],
        &tools,
    );
    let r = OpkgRoot::new(dir.join("root"), &tools);
    stage_base_files(&r.root);
    for dep in FEED_DEPS {
        let (ipk, _) = fake_package(dir.path(), dep, "1.0-r1", &[], &tools);
        r.ok(&["install", ipk.to_str().unwrap()]);
    }
    let before = files_under(&r.root);

    let set1 = set_of(&out1, &version(), "ipk");
    let mut args = vec!["install"];
    args.extend(path_args(&set1));
    r.ok(&args);
    assert_set_installed(&r.root);
    let info = r.ok(&["info", SUBPACKAGES[0]]).stdout;
    for line in [
        "Depends: shadowsocks-smol",
        "Architecture: all",
        "Status: install user installed",
    ] {
        assert!(info.lines().any(|l| l == line), "{line:?} in\n{info}");
    }
    let info = r.ok(&["info", SUBPACKAGES[1]]).stdout;
    for line in [
        "Depends: shadowsocks-smol-config, nftables, kmod-nft-nat, kmod-nft-socket, kmod-nft-tproxy, ip",
        "Conflicts: shadowsocks-smol-rules-iptables, shadowsocks-libev-ss-rules",
    ] {
        assert!(info.lines().any(|l| l == line), "{line:?} in\n{info}");
    }
    let conffiles = fs::read_to_string(
        r.root
            .join(format!("usr/lib/opkg/info/{}.conffiles", SUBPACKAGES[0])),
    )
    .unwrap();
    assert_eq!(conffiles, "/etc/config/shadowsocks-smol\n");

    // The iptables rules cannot go in beside the nft ones.
    let ipt = sub_ipk(&out1, "x86_64", SUBPACKAGES[2], &version());
    let f = r.install(&ipt);
    assert!(!f.status.success(), "both rules packages installed");
    assert!(
        f.stderr.contains(&format!(
            "The following packages conflict with {}",
            SUBPACKAGES[2]
        )),
        "opkg's message:\n{}",
        f.stderr
    );

    // The admin's change survives an upgrade; the new sample is put beside it.
    let mut changed = fs::read_to_string(r.root.join(CONFIG)).unwrap();
    changed.push_str(ADMIN_LINE);
    fs::write(r.root.join(CONFIG), &changed).unwrap();
    let set2 = set_of(&out2, &next_version(), "ipk");
    let mut args = vec!["install"];
    args.extend(path_args(&set2));
    let f = r.ok(&args);
    let listed = r.ok(&["list-installed"]).stdout;
    for name in [NAME, SUBPACKAGES[0], SUBPACKAGES[1]] {
        let line = format!("{name} - {}", next_version());
        assert!(
            listed.lines().any(|l| l == line),
            "{line:?} after the upgrade:\n{listed}"
        );
    }
    assert_eq!(
        fs::read_to_string(r.root.join(CONFIG)).unwrap(),
        changed,
        "the changed config after the upgrade ({})",
        f.stdout
    );
    let sample = r.root.join(format!("{CONFIG}-opkg"));
    assert_eq!(
        fs::read(&sample).unwrap(),
        fs::read(repo().join("openwrt/files/shadowsocks-smol.config")).unwrap(),
        "the new sample beside it"
    );
    fs::remove_file(&sample).unwrap();

    r.ok(&["remove", SUBPACKAGES[1], SUBPACKAGES[0], NAME]);
    let after = files_under(&r.root);
    // rc.common's procd_lock leaves its lock in /var/lock (tmpfs on a router), as for every
    // procd service it enables or disables.
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|f| *f != "var/lock/procd_shadowsocks-smol.lock")
        .collect();
    assert_eq!(
        left,
        [CONFIG],
        "left behind after opkg remove (the changed conffile only)"
    );
    assert_eq!(fs::read_to_string(r.root.join(CONFIG)).unwrap(), changed);
    assert!(
        rc_d_entries(&r.root).is_empty(),
        "default_prerm disabled the service: {:?}",
        rc_d_entries(&r.root)
    );
}

#[test]
#[ignore = "needs the vendored opkg and apk-tools; bash tests/run-all.sh runs it"]
fn apk_installs_upgrades_and_removes_the_set() {
    let tools = tools();
    cross_bin("x86_64-unknown-linux-musl");
    let dir = TempDir::new("pkg-apk-set");
    let (out1, out2) = (dir.join("r1"), dir.join("r2"));
    build_packages_with(&out1, &["x86_64"], &["--format", "apk"], &tools);
    build_packages_with(
        &out2,
        &["x86_64"],
        &["--format", "apk", "--release", "2"],
        &tools,
    );
    let r = ApkRoot::new(dir.join("root"), &tools);
    stage_base_files(&r.root);
    let fakes: Vec<PathBuf> = FEED_DEPS
        .iter()
        .map(|dep| fake_package(dir.path(), dep, "1.0-r1", &[], &tools).1)
        .collect();
    let mut args = vec!["add", "--allow-untrusted"];
    args.extend(path_args(&fakes));
    r.ok(&args);
    let before = files_under(&r.root);

    let set1 = set_of(&out1, &version(), "apk");
    let mut args = vec!["add", "--allow-untrusted"];
    args.extend(path_args(&set1));
    r.ok(&args);
    assert_set_installed(&r.root);
    let info = r.ok(&["info", "-R", SUBPACKAGES[1]]).stdout;
    for dep in [
        "shadowsocks-smol-config",
        "nftables",
        "kmod-nft-tproxy",
        "!shadowsocks-smol-rules-iptables",
        "!shadowsocks-libev-ss-rules",
    ] {
        assert!(info.lines().any(|l| l == dep), "{dep:?} in\n{info}");
    }
    // OpenWrt's own record of the conffile, which sysupgrade's backup reads.
    let conffiles = fs::read_to_string(
        r.root
            .join(format!("lib/apk/packages/{}.conffiles", SUBPACKAGES[0])),
    )
    .unwrap();
    assert_eq!(conffiles, "/etc/config/shadowsocks-smol\n");

    let ipt = sub_apk(&out1, "x86_64", SUBPACKAGES[2], &version());
    let f = r.add(&ipt);
    assert!(!f.status.success(), "both rules packages installed");

    let mut changed = fs::read_to_string(r.root.join(CONFIG)).unwrap();
    changed.push_str(ADMIN_LINE);
    fs::write(r.root.join(CONFIG), &changed).unwrap();
    let set2 = set_of(&out2, &next_version(), "apk");
    let mut args = vec!["add", "--allow-untrusted"];
    args.extend(path_args(&set2));
    let f = r.ok(&args);
    let listed = r.ok(&["list", "--installed"]).stdout;
    for name in [NAME, SUBPACKAGES[0], SUBPACKAGES[1]] {
        let want = format!("{name}-{} ", next_version());
        assert!(
            listed.lines().any(|l| l.starts_with(&want)),
            "{want:?} after the upgrade:\n{listed}"
        );
    }
    assert_eq!(
        fs::read_to_string(r.root.join(CONFIG)).unwrap(),
        changed,
        "the changed config after the upgrade ({})",
        f.stdout
    );
    let sample = r.root.join(format!("{CONFIG}.apk-new"));
    assert_eq!(
        fs::read(&sample).unwrap(),
        fs::read(repo().join("openwrt/files/shadowsocks-smol.config")).unwrap(),
        "the new sample beside it"
    );
    fs::remove_file(&sample).unwrap();

    r.ok(&["del", SUBPACKAGES[1], SUBPACKAGES[0], NAME]);
    let after = files_under(&r.root);
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|f| *f != "lib/apk/db/lock")
        .collect();
    assert_eq!(
        left,
        [CONFIG],
        "left behind after apk del (the changed conffile only)"
    );
    assert_eq!(fs::read_to_string(r.root.join(CONFIG)).unwrap(), changed);
    assert!(
        rc_d_entries(&r.root).is_empty(),
        "default_prerm disabled the service: {:?}",
        rc_d_entries(&r.root)
    );
}
