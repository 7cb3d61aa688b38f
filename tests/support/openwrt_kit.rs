//! OpenWrt's own shell libraries and tools from the vendored init-script kit
//! (`../shared/vendor/openwrt`, or `OPENWRT_KIT`), for the tests that run the package's scripts:
//! where the kit is, its tools built once per machine, a root staged with them, and the
//! recording stand-ins for what the kit does not provide (procd's `ubus`, `logger`).

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;

/// The package's files (`openwrt/files`).
pub fn openwrt_files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt/files")
}

pub fn kit() -> PathBuf {
    std::env::var_os("OPENWRT_KIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vendor/openwrt"))
}

extern "C" {
    fn geteuid() -> u32;
}

pub fn require_root() {
    // SAFETY: plain syscall without arguments.
    let euid = unsafe { geteuid() };
    assert_eq!(
        euid, 0,
        "needs root (the kit's run-in-root.sh makes a mount namespace; the binary checks a \
         network namespace): run `sudo bash tests/run-all.sh`"
    );
}

/// The kit's tools, built once per machine into `$TMPDIR/owrt-kit-out` (build.sh is idempotent;
/// `flock` keeps parallel test processes from building at the same time).
pub fn kit_out() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        require_tools(&["busybox", "flock", "unshare", "bash"]);
        let kit = kit();
        assert!(
            kit.join("build.sh").is_file(),
            "the OpenWrt init-script kit is not at {} (set OPENWRT_KIT)",
            kit.display()
        );
        let out = std::env::temp_dir().join("owrt-kit-out");
        fs::create_dir_all(&out).unwrap();
        let mut cmd = Command::new("flock");
        cmd.arg(out.with_extension("lock"))
            .arg("sh")
            .arg(kit.join("build.sh"))
            .arg(&out);
        let f = run_to_end("kit build.sh", cmd, Duration::from_secs(600));
        assert!(
            f.status.success(),
            "kit build.sh failed: {}\n{}",
            f.stdout,
            f.stderr
        );
        out
    })
}

/// The kit's `stage.sh ROOT OUT`: OpenWrt's base files and the built tools, /bin/sh busybox.
pub fn stage_root(root: &Path) {
    let out = kit_out();
    let mut cmd = Command::new("sh");
    cmd.arg(kit().join("stage.sh")).arg(root).arg(out);
    let f = run_to_end("stage.sh", cmd, Duration::from_secs(60));
    assert!(f.status.success(), "stage.sh: {}", f.stderr);
}

pub fn write_exec(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// demo/ubus's recorder (VERB\tOBJECT\tMETHOD\tJSON a line); there is no procd, so
/// `call service list` answers /var/run/ubus-list.json when a test wrote one, else `{ }`.
pub const UBUS: &str = r#"#!/bin/sh
log=${UBUS_LOG:-/var/run/ubus.log}
printf '%s\t%s\t%s\t%s\n' "${1:-}" "${2:-}" "${3:-}" "${4:-}" >>"$log"
case "${1:-} ${2:-} ${3:-}" in
	"call service list") cat /var/run/ubus-list.json 2>/dev/null || echo '{ }' ;;
esac
exit 0
"#;

/// `logger -t TAG MESSAGE`: the message to /var/run/logger.log.
pub const LOGGER: &str = r#"#!/bin/sh
[ "$1" != -t ] || shift 2
echo "$*" >>/var/run/logger.log
"#;
