#!/usr/bin/env bash
# OpenWrt packages of ss-smol, without the OpenWrt SDK: for each router arch, an .ipk for opkg
# (OpenWrt 24.10 and older) laid out exactly as OpenWrt's scripts/ipkg-build writes it, and an
# .apk (apk-tools 3, OpenWrt 25.12 and newer) made with `apk mkpkg` as include/package-pack.mk
# calls it, from the static router binaries that cross/build.sh makes.
#
#   bash openwrt/build-packages.sh                     # every arch → target/packages/<arch>/
#   bash openwrt/build-packages.sh --arch mipsel_24kc --out /tmp/pkgs
#   bash openwrt/build-packages.sh --bin-dir target/cross-debug-panics --format ipk
#
# Options:
#   --bin-dir DIR   the binaries, DIR/<rust target>/ss-smol (default target/cross)
#   --out DIR       output, one directory per arch (default target/packages)
#   --arch ARCH     only this OpenWrt arch (repeatable): mipsel_24kc, mips_24kc,
#                   aarch64_cortex-a53, x86_64
#   --release N     the package release (default 1): version <Cargo.toml version>-rN
#   --format F      ipk, apk or both (default both)
#
# Output: <out>/<arch>/<name>_<version>_<arch>.ipk and <out>/<arch>/<name>-<version>.apk (the
# apk's name has no arch, so each arch has its own directory, like OpenWrt's bin/packages/<arch>/).
# The paths of the packages made are printed on stdout, one a line; progress goes to stderr.
#
# The packages are reproducible: every mtime is SOURCE_DATE_EPOCH (default: the time of the
# repository's last commit, 0 outside git), every owner root:root.
#
# Needs GNU tar (--sort), gzip and coreutils; for the .apk, the vendored apk-tools 3 from
# ../shared/vendor/pkgtools (next to the repository; PKGTOOLS=DIR to use another copy, APK=FILE
# to use an apk binary directly), built with the kit's build.sh when it is not built yet, and
# fakeroot when not run as root (apk mkpkg records the files' owners by name).
set -euo pipefail
umask 022
export LC_ALL=C

REPO=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
log() { printf 'build-packages: %s\n' "$*" >&2; }
die() {
    printf 'build-packages: %s\n' "$*" >&2
    exit 1
}

# OpenWrt arch → the Rust target whose binary it gets, and what that binary's ELF header must say
# (EI_DATA: 1 little-, 2 big-endian; e_machine) so that no binary lands in the wrong arch's package.
declare -A TARGET=(
    [mipsel_24kc]=mipsel-unknown-linux-musl
    [mips_24kc]=mips-unknown-linux-musl
    [aarch64_cortex-a53]=aarch64-unknown-linux-musl
    [x86_64]=x86_64-unknown-linux-musl
)
declare -A ELF=(
    [mipsel_24kc]="1 8"
    [mips_24kc]="2 8"
    [aarch64_cortex-a53]="1 183"
    [x86_64]="1 62"
)
ALL_ARCHES=(mipsel_24kc mips_24kc aarch64_cortex-a53 x86_64)

bin_dir=$REPO/target/cross
out_dir=$REPO/target/packages
release=1
format=both
arches=()
while (($#)); do
    case $1 in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory} && shift ;;
    --out) out_dir=${2:?--out needs a directory} && shift ;;
    --arch) arches+=("${2:?--arch needs an arch}") && shift ;;
    --release) release=${2:?--release needs a number} && shift ;;
    --format) format=${2:?--format needs ipk, apk or both} && shift ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
    shift
done
((${#arches[@]})) || arches=("${ALL_ARCHES[@]}")
for a in "${arches[@]}"; do
    [[ -n ${TARGET[$a]:-} ]] || die "unknown arch '$a' (known: ${ALL_ARCHES[*]})"
done
[[ $format == ipk || $format == apk || $format == both ]] || die "--format: ipk, apk or both"
[[ $release =~ ^[0-9]+$ ]] || die "--release: a number"

# --- Versions and time ------------------------------------------------------------------------
# The version of [package] in Cargo.toml; "-rN" as OpenWrt has written its versions since
# openwrt/openwrt#14918 (2024), for ipk as well: apk accepts only that form ("1.0-1" is invalid),
# and one version for both formats keeps opkg's and apk's ordering the same.
cargo_version=$(awk '/^\[/ { in_pkg = ($0 == "[package]") }
    in_pkg && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; exit }' "$REPO/Cargo.toml")
[[ -n $cargo_version ]] || die "no version in $REPO/Cargo.toml"
VERSION=$cargo_version-r$release

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH: not a number"
EPOCH=$SOURCE_DATE_EPOCH

# Fields every package of this source shares (OpenWrt's PKG_* variables). Cargo.toml records no
# maintainer and no URL; OpenWrt leaves out Maintainer and URL when they are empty.
SOURCE_NAME=shadowsocks-smol
LICENSE=$(awk '/^\[/ { in_pkg = ($0 == "[package]") }
    in_pkg && /^license *=/ { gsub(/^license *= *"|".*$/, ""); print; exit }' "$REPO/Cargo.toml")
MAINTAINER=
URL=

# --- Package descriptions ---------------------------------------------------------------------
# One function per package, pkg_<name with _ for ->, in the role of an OpenWrt Makefile's
# Package/<name> blocks: called with the package root (OpenWrt's IDIR) and the arch's ss-smol,
# it sets these fields and installs the package's files (empty fields are left out, as OpenWrt
# leaves them out):
#   PKGARCH      "arch" (the OpenWrt arch being built) or "all" (arch-independent: the ipk says
#                Architecture: all, the apk arch:noarch)
#   SECTION      e.g. net
#   DESCRIPTION  one line
#   DEPENDS      opkg syntax, ", "-separated: "a, b (>= 1.2)"; the apk gets "a b>=1.2", as
#                package-pack.mk rewrites it
#   CONFLICTS    ", "-separated package names
#   CONFFILES    absolute paths, one a line (directories stand for the files under them)
#   POSTINST     shell code that OpenWrt's default_postinst runs after the install (the
#                Makefile's Package/<name>/postinst, stored as postinst-pkg)
#   PRERM        the same before removal (Package/<name>/prerm, prerm-pkg)

# The binary and the programs it is: ss-local, ss-tunnel, ss-redir and ss-server are symlinks to
# it (argv[0] picks the mode). It replaces shadowsocks-libev's packages of the same programs,
# which install the same paths, so it conflicts with them.
pkg_shadowsocks_smol() {
    local root=$1 bin=$2 m
    PKGARCH=arch
    SECTION=net
    DESCRIPTION="A small, memory-bounded Shadowsocks client and server for OpenWrt routers: one static binary, ss-smol, that is also ss-local, ss-tunnel, ss-redir and ss-server."
    CONFLICTS="shadowsocks-libev-ss-local, shadowsocks-libev-ss-redir, shadowsocks-libev-ss-tunnel, shadowsocks-libev-ss-server"
    install -d -m 0755 "$root/usr/bin"
    install -m 0755 "$bin" "$root/usr/bin/ss-smol"
    for m in local tunnel redir server; do
        ln -s ss-smol "$root/usr/bin/ss-$m"
    done
}

FILES=$REPO/openwrt/files

# The UCI config (a conffile, 0600 as OpenWrt's INSTALL_CONF installs configs: it holds keys), the
# procd init script and the one-time migration of /etc/config/shadowsocks-libev. base-files'
# default_postinst runs the uci-defaults script, enables and starts the service; default_prerm
# stops and disables it.
pkg_shadowsocks_smol_config() {
    local root=$1
    PKGARCH=all
    SECTION=net
    DESCRIPTION="UCI configuration (/etc/config/shadowsocks-smol, the former shadowsocks-libev schema) and procd init script for shadowsocks-smol; an existing /etc/config/shadowsocks-libev is migrated once."
    DEPENDS="shadowsocks-smol"
    CONFFILES=/etc/config/shadowsocks-smol
    install -d -m 0755 "$root/etc/config" "$root/etc/init.d" "$root/etc/uci-defaults"
    install -m 0600 "$FILES/shadowsocks-smol.config" "$root/etc/config/shadowsocks-smol"
    install -m 0755 "$FILES/shadowsocks-smol.init" "$root/etc/init.d/shadowsocks-smol"
    install -m 0755 "$FILES/shadowsocks-smol.uci-defaults" "$root/etc/uci-defaults/shadowsocks-smol"
}

# The firewall rules for ss-redir: one script, ss-rules, in two packages that differ only in what
# they pull in (nftables for fw4 systems, iptables and ipset for fw3 ones) and so conflict with
# each other. The rules are kernel state only, loaded by the init script; removing the package
# takes them out first.
# shellcheck disable=SC2016 # the ${IPKG_INSTROOT} is for the prerm script, not expanded here
rules_package() {
    local root=$1
    PKGARCH=all
    SECTION=net
    PRERM='[ -n "${IPKG_INSTROOT}" ] || /usr/bin/ss-rules stop'
    install -d -m 0755 "$root/usr/bin"
    install -m 0755 "$FILES/ss-rules" "$root/usr/bin/ss-rules"
}

pkg_shadowsocks_smol_rules() {
    rules_package "$1"
    DESCRIPTION="Transparent-proxy firewall rules for ss-redir on fw4/nftables systems (OpenWrt 22.03 and newer): TCP redirect or TPROXY, UDP TPROXY, the ss_rules_* nft sets."
    DEPENDS="shadowsocks-smol-config, nftables, kmod-nft-nat, kmod-nft-socket, kmod-nft-tproxy, ip"
    CONFLICTS="shadowsocks-smol-rules-iptables, shadowsocks-libev-ss-rules"
}

pkg_shadowsocks_smol_rules_iptables() {
    rules_package "$1"
    DESCRIPTION="Transparent-proxy firewall rules for ss-redir on fw3/iptables systems (OpenWrt 21.02 and older): TCP redirect or TPROXY, UDP TPROXY, the ss_rules_* ipsets."
    DEPENDS="shadowsocks-smol-config, iptables, ipset, iptables-mod-tproxy, iptables-mod-socket, kmod-ipt-nat, ip"
    CONFLICTS="shadowsocks-smol-rules, shadowsocks-libev-ss-rules"
}

PACKAGES=(shadowsocks-smol shadowsocks-smol-config shadowsocks-smol-rules shadowsocks-smol-rules-iptables)

# Runs the description of package $1 into the package root $2, fields reset first.
describe() {
    local name=$1 root=$2 bin=$3
    PKGARCH='' SECTION='' DESCRIPTION='' DEPENDS='' CONFLICTS='' CONFFILES='' POSTINST='' PRERM=''
    install -d -m 0755 "$root"
    "pkg_${name//-/_}" "$root" "$bin"
    [[ $PKGARCH == arch || $PKGARCH == all ]] || die "$name: PKGARCH must be arch or all"
    [[ -n $DESCRIPTION ]] || die "$name: no DESCRIPTION"
}

# --- ipk (scripts/ipkg-build) -----------------------------------------------------------------
# ipkg-build's tar flags; the owner is forced to 0:0 where OpenWrt runs it under fakeroot.
TAR=(tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name "--mtime=@$EPOCH")

# The control file as package-pack.mk writes it: its fields in its order, Installed-Size 0 until
# the data tar exists, then "Description: " and the text with its leading blanks made one space.
write_control() {
    local name=$1 arch=$2
    printf 'Package: %s\nVersion: %s\n' "$name" "$VERSION"
    [[ -z $DEPENDS ]] || printf 'Depends: %s\n' "$DEPENDS"
    [[ -z $CONFLICTS ]] || printf 'Conflicts: %s\n' "$CONFLICTS"
    printf 'SourceName: %s\n' "$SOURCE_NAME"
    [[ -z $LICENSE ]] || printf 'License: %s\n' "$LICENSE"
    [[ -z $SECTION ]] || printf 'Section: %s\n' "$SECTION"
    printf 'SourceDateEpoch: %s\n' "$EPOCH"
    [[ -z $URL ]] || printf 'URL: %s\n' "$URL"
    [[ -z $MAINTAINER ]] || printf 'Maintainer: %s\n' "$MAINTAINER"
    printf 'Architecture: %s\nInstalled-Size: 0\n' "$arch"
    printf 'Description: '
    # shellcheck disable=SC2001 # sed, as package-pack.mk: line by line for a multi-line text
    echo "$DESCRIPTION" | sed -e 's,^[[:space:]]*, ,g'
}

# The maintainer scripts OpenWrt generates for every ipk: they hand over to base-files'
# default_postinst/default_prerm (which run postinst-pkg/prerm-pkg, enable or disable the
# package's init scripts, …) and do nothing where /lib/functions.sh is missing.
# shellcheck disable=SC2016 # the ${IPKG_INSTROOT} and $0 are for the script, not expanded here
ipk_scripts() {
    local control=$1
    {
        echo '#!/bin/sh'
        echo '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0'
        echo '[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0'
        echo '. ${IPKG_INSTROOT}/lib/functions.sh'
        echo 'default_postinst $0 $@'
    } >"$control/postinst"
    {
        echo '#!/bin/sh'
        echo '[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0'
        echo '. ${IPKG_INSTROOT}/lib/functions.sh'
        echo 'default_prerm $0 $@'
    } >"$control/prerm"
    chmod 0755 "$control/postinst" "$control/prerm"
    if [[ -n $POSTINST ]]; then
        printf '%s\n' "$POSTINST" >"$control/postinst-pkg"
        chmod 0755 "$control/postinst-pkg"
    fi
    if [[ -n $PRERM ]]; then
        printf '%s\n' "$PRERM" >"$control/prerm-pkg"
        chmod 0755 "$control/prerm-pkg"
    fi
}

# conffiles as ipkg-build resolves it: each path's regular files, sorted; no file, no conffiles.
ipk_conffiles() {
    local root=$1 control=$2 path
    [[ -n $CONFFILES ]] || return 0
    while IFS= read -r path; do
        [[ -n $path ]] || continue
        [[ -e $root$path ]] || continue
        find "$root$path" -type f -printf "${path%/}/%P\n" | sed 's,/$,,'
    done <<<"$CONFFILES" | sort -u >"$control/conffiles"
    if [[ -s $control/conffiles ]]; then
        chmod 0644 "$control/conffiles"
    else
        rm -f "$control/conffiles"
    fi
}

build_ipk() {
    local name=$1 arch=$2 bin=$3 dest=$4
    local work root control pkgarch file
    work=$(mktemp -d "$TMP/ipk.XXXXXX")
    root=$work/pkg
    control=$root/CONTROL
    describe "$name" "$root" "$bin"
    pkgarch=$arch
    [[ $PKGARCH == arch ]] || pkgarch=all
    install -d -m 0755 "$control" "$work/ipk"
    write_control "$name" "$pkgarch" >"$control/control"
    chmod 0644 "$control/control"
    ipk_conffiles "$root" "$control"
    ipk_scripts "$control"

    (cd "$root" && "${TAR[@]}" --exclude=./CONTROL -cpf - .) | gzip -n >"$work/ipk/data.tar.gz"
    sed -i -e "s/^Installed-Size: .*/Installed-Size: $(gzip -dc <"$work/ipk/data.tar.gz" | wc -c)/" \
        "$control/control"
    (cd "$control" && "${TAR[@]}" -cf - .) | gzip -n >"$work/ipk/control.tar.gz"
    echo 2.0 >"$work/ipk/debian-binary"
    # The outer container is a gzip'd tar (not an ar archive as a .deb is), its members in this
    # order, which the command line gives (--sort=name orders only what tar finds in directories).
    file=$dest/${name}_${VERSION}_${pkgarch}.ipk
    (cd "$work/ipk" && "${TAR[@]}" -cf - ./debian-binary ./data.tar.gz ./control.tar.gz) |
        gzip -n >"$file.tmp"
    mv "$file.tmp" "$file"
    rm -rf "$work"
    echo "$file"
}

# --- apk (include/package-pack.mk with CONFIG_USE_APK) ----------------------------------------
# Where the vendored kit's apk is: its out/ when the kit is writable, else the folder under TMPDIR
# that its build.sh uses in that case; whichever already has a build wins.
find_apk() {
    if [[ -n ${APK:-} ]]; then
        [[ -x $APK ]] || die "APK=$APK: not an executable"
        return 0
    fi
    local kit=${PKGTOOLS:-$REPO/../shared/vendor/pkgtools} prefix
    [[ -f $kit/build.sh ]] || die "no pkgtools kit at $kit (set PKGTOOLS=DIR or APK=FILE)"
    kit=$(cd "$kit" && pwd)
    for prefix in "$kit/out" "${TMPDIR:-/tmp}/pkgtools-out"; do
        if [[ -x $prefix/bin/apk ]]; then
            APK=$prefix/bin/apk
            return 0
        fi
    done
    prefix=$kit/out
    [[ -w $kit ]] || prefix=${TMPDIR:-/tmp}/pkgtools-out
    log "building the vendored opkg and apk-tools: $kit/build.sh $prefix"
    bash "$kit/build.sh" "$prefix" >&2 || die "$kit/build.sh failed"
    APK=$prefix/bin/apk
}

# The scripts package-pack.mk generates: post-install, post-upgrade and pre-deinstall always
# (base-files' default_postinst/default_prerm, then the package's own code), pre-upgrade and
# pre-install from a preinst, which no package here has.
# shellcheck disable=SC2016 # the ${IPKG_INSTROOT} are for the script, not expanded here
apk_scripts() {
    local name=$1 dir=$2
    {
        echo '#!/bin/sh'
        echo '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0'
        echo '[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0'
        echo '. ${IPKG_INSTROOT}/lib/functions.sh'
        echo 'export root="${IPKG_INSTROOT}"'
        echo "export pkgname=\"$name\""
        echo 'add_group_and_user'
        echo 'default_postinst'
        [[ -z $POSTINST ]] || printf '%s\n' "$POSTINST" | sed '/^\s*#!/d'
    } >"$dir/post-install"
    {
        echo '#!/bin/sh'
        echo 'export PKG_UPGRADE=1'
        sed '/^\s*#!/d' "$dir/post-install"
    } >"$dir/post-upgrade"
    {
        echo '#!/bin/sh'
        echo '[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0'
        echo '. ${IPKG_INSTROOT}/lib/functions.sh'
        echo 'export root="${IPKG_INSTROOT}"'
        echo "export pkgname=\"$name\""
        echo 'default_prerm'
        [[ -z $PRERM ]] || printf '%s\n' "$PRERM" | sed '/^\s*#!/d'
    } >"$dir/pre-deinstall"
    chmod 0755 "$dir"/*
}

build_apk() {
    local name=$1 arch=$2 bin=$3 dest=$4
    local work root scripts meta apkarch depends conflict path file
    work=$(mktemp -d "$TMP/apk.XXXXXX")
    root=$work/pkg
    scripts=$work/scripts
    meta=$root/lib/apk/packages
    describe "$name" "$root" "$bin"
    apkarch=$arch
    [[ $PKGARCH == arch ]] || apkarch=noarch
    install -d -m 0755 "$scripts" "$meta"
    apk_scripts "$name" "$scripts"

    # OpenWrt's metadata inside the package's files: every file and symlink (listed before the
    # conffiles lists are added), the conffiles and their sha256 (how opkg's status kept them).
    (cd "$root" && find . -type f,l -printf '/%P\n' | sort) >"$work/list"
    mv "$work/list" "$meta/$name.list"
    if [[ -n $CONFFILES ]]; then
        printf '%s\n' "$CONFFILES" | sed '/^$/d' >"$meta/$name.conffiles"
        while IFS= read -r path; do
            [[ -f $root$path ]] || continue
            echo "$path $(sha256sum <"$root$path" | cut -d' ' -f1)"
        done <"$meta/$name.conffiles" >"$meta/$name.conffiles_static"
        [[ -s $meta/$name.conffiles_static ]] || rm -f "$meta/$name.conffiles_static"
    fi

    # Depends as package-pack.mk rewrites it: no parentheses or spaces, commas become spaces.
    depends=$(printf '%s' "$DEPENDS" | tr -d '() ' | tr ',' ' ')
    # package-pack.mk passes no conflicts to apk; apk's form of one is a "!name" dependency, so
    # the conflicts with libev's packages hold under apk as well (their shared paths would make
    # apk refuse too, but only for packages that are still installed with those files).
    for conflict in ${CONFLICTS//,/ }; do
        depends+="${depends:+ }!$conflict"
    done

    file=$dest/$name-$VERSION.apk
    # SOURCE_DATE_EPOCH makes apk mkpkg record that time for every file (it records real mtimes
    # otherwise); fakeroot makes the owners root where the files are the caller's.
    local -a as_root=()
    if (($(id -u) != 0)); then
        command -v fakeroot >/dev/null || die "apk mkpkg needs fakeroot when not run as root"
        as_root=(fakeroot)
    fi
    SOURCE_DATE_EPOCH=$EPOCH "${as_root[@]}" "$APK" mkpkg \
        --info "name:$name" \
        --info "version:$VERSION" \
        --info "description:$DESCRIPTION" \
        --info "arch:$apkarch" \
        --info "license:$LICENSE" \
        --info "origin:$SOURCE_NAME" \
        --info "url:$URL" \
        --info "maintainer:$MAINTAINER" \
        --script "post-install:$scripts/post-install" \
        --script "post-upgrade:$scripts/post-upgrade" \
        --script "pre-deinstall:$scripts/pre-deinstall" \
        --info "depends:$depends" \
        --files "$root" \
        --output "$file.tmp" >&2 || die "apk mkpkg failed for $name ($arch)"
    mv "$file.tmp" "$file"
    rm -rf "$work"
    echo "$file"
}

# --- Main -------------------------------------------------------------------------------------
# The binary's ELF header: class 64/32 aside, its byte order and machine must be the arch's.
check_elf() {
    local file=$1 arch=$2 magic data machine want_data want_machine
    read -r want_data want_machine <<<"${ELF[$arch]}"
    magic=$(od -An -c -N 4 "$file" | tr -d ' ')
    [[ $magic == '177ELF' ]] || die "$file: not an ELF file"
    data=$(od -An -t u1 -j 5 -N 1 "$file" | tr -d ' ')
    if ((data == 1)); then
        machine=$(od -An -t u1 -j 18 -N 2 "$file" | awk '{ print $1 + 256 * $2 }')
    else
        machine=$(od -An -t u1 -j 18 -N 2 "$file" | awk '{ print 256 * $1 + $2 }')
    fi
    ((data == want_data && machine == want_machine)) ||
        die "$file: ELF byte order $data machine $machine, not $arch's ($want_data $want_machine)"
}

# (captured, not piped to grep -q: an early grep exit would kill tar with SIGPIPE under pipefail)
[[ $(tar --help 2>&1) == *--sort* ]] || die "needs GNU tar with --sort (1.28 or newer)"
for tool in gzip sha256sum od find; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
[[ $format == ipk ]] || find_apk

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/build-packages.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

for arch in "${arches[@]}"; do
    bin=$bin_dir/${TARGET[$arch]}/ss-smol
    [[ -f $bin ]] || die "missing $bin: build it with 'bash cross/build.sh ${TARGET[$arch]}'"
    check_elf "$bin" "$arch"
    dest=$out_dir/$arch
    mkdir -p "$dest"
    for name in "${PACKAGES[@]}"; do
        log "$name $VERSION for $arch"
        [[ $format == apk ]] || build_ipk "$name" "$arch" "$bin" "$dest"
        [[ $format == ipk ]] || build_apk "$name" "$arch" "$bin" "$dest"
    done
done
