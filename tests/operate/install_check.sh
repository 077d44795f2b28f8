#!/bin/sh
# Suite install: a release build with -Dtests=false -Dbenchmarks=false builds only what
# ships, and `meson install --strip` into a DESTDIR puts stripped binaries, the man
# pages, the docs the units' Documentation= names, the units and the config file there.
# Usage: install_check.sh SOURCE_DIR
set -eu
src=$1
work=$(mktemp -d /tmp/cairn-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "install_check: $*" >&2; exit 1; }

# Release with -O2 (Debian's level): g++ 12 at -O3 gives a false -Wrestrict in
# std::string's operator+ (seal/record.cpp), which -Werror would turn into a failure.
meson setup "$work/build" "$src" --prefix=/usr --sysconfdir=/etc --buildtype=release \
  -Doptimization=2 -Dtests=false -Dbenchmarks=false -Dman_pages=enabled -Dwerror=true >"$work/setup.log" 2>&1 ||
  { cat "$work/setup.log"; fail "meson setup failed"; }
# Nothing of tests/ or bench/ is even defined.
targets=$(meson introspect --targets "$work/build")
for t in test_ cairn-bench cairn-baselines criterion; do
  case $targets in *"\"name\": \"$t"*) fail "target $t exists in a -Dtests=false build";; esac
done
ninja -C "$work/build" -j2 >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; fail "build failed"; }
DESTDIR="$work/root" meson install -C "$work/build" --strip --no-rebuild >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; fail "meson install failed"; }
root=$work/root

for f in usr/sbin/cairnd usr/bin/cairn etc/cairn/cairnd.conf \
         usr/share/man/man8/cairnd.8 usr/share/man/man1/cairn.1 usr/share/man/man3/libcairn.3 \
         usr/share/man/man7/cairn-protocol.7 \
         usr/share/doc/cairn/README.md usr/share/doc/cairn/PROTOCOL.md usr/share/doc/cairn/LICENSE \
         usr/include/cairn/cairn.h; do
  [ -f "$root/$f" ] || fail "$f not installed"
done
ls "$root"/usr/lib/*/libcairn.so.0* "$root"/usr/lib/libcairn.so.0* 2>/dev/null | grep -q . ||
  fail "libcairn.so.0 not installed"
# Stripped: no symbol table and no DWARF left in what ships.
for b in "$root/usr/sbin/cairnd" "$root/usr/bin/cairn"; do
  if readelf -S "$b" | grep -Eq '\.(symtab|debug_info)'; then fail "$b is not stripped"; fi
done
# The man pages are roff that man(1) renders.
for m in "$root"/usr/share/man/man*/*; do
  MANWIDTH=80 man -l "$m" >/dev/null 2>&1 || fail "man cannot render $m"
done
# Units: the service reads the installed config and points at installed docs.
unit=$(find "$root" -name cairnd.service | head -1)
[ -n "$unit" ] || fail "cairnd.service not installed"
grep -q '^ExecStart=/usr/sbin/cairnd --config /etc/cairn/cairnd.conf$' "$unit" || fail "ExecStart: $(grep ExecStart= "$unit")"
grep -q '^ExecReload=' "$unit" || fail "no ExecReload"
for doc in $(sed -n 's/^Documentation=//p' "$unit"); do
  case $doc in
    file://*) [ -f "$root${doc#file://}" ] || fail "Documentation=$doc is not installed";;
    man:*) page=${doc#man:}; name=${page%%(*}; sec=${page#*(}; sec=${sec%)}
           [ -f "$root/usr/share/man/man$sec/$name.$sec" ] || fail "Documentation=$doc is not installed";;
  esac
done
find "$root" -name cairn-metrics.timer | grep -q . || fail "cairn-metrics.timer not installed"
# The installed daemon accepts the installed config.
"$root/usr/sbin/cairnd" --check-config --config "$root/etc/cairn/cairnd.conf" >/dev/null ||
  fail "the installed cairnd.conf does not pass --check-config"
echo "install_check: ok ($(du -sk "$root" | cut -f1) KiB installed)"
