#!/usr/bin/env bash
# `make dist`: the release binaries, the CTranslate2 library they link (and its libgomp) copied
# beside them, the filter module (wasm, and the native .so), the default Whisper model and the shipped configs, as one
# tarball a user unpacks and runs on another Linux x86-64 machine. The binaries find ct2lib/
# through their $ORIGIN rpath (.cargo/config.toml), so no LD_LIBRARY_PATH is needed; the check
# at the end proves it on the unpacked tarball, with an empty environment.
#
# Usage: scripts/dist.sh VERSION   (from the repo root, after the release build)
set -euo pipefail

VERSION="$1"
NAME="twiml-guard-$VERSION-linux-x86_64"
OUT=target/dist
STAGE="$OUT/$NAME"
BINS=(host-service twiml-guard twilio-sim)

rm -rf "$STAGE" "$OUT/$NAME.tar.gz"
mkdir -p "$STAGE/bin" "$STAGE/ct2lib" "$STAGE/share/filter" "$STAGE/models"
for b in "${BINS[@]}"; do cp target/release/"$b" "$STAGE/bin/"; done
# The shared libraries themselves (cp -L: the files, not the links into the virtualenv); the
# empty archives that only satisfy the linker stay behind.
for lib in target/ct2lib/*.so.*; do cp -L "$lib" "$STAGE/ct2lib/"; done
cp target/wasm32-wasip1/release/twiml_guard_filter.wasm "$STAGE/share/filter/"
# The native shim: Envoy 1.40 only, x86-64 only (docs/filter.md, "Two shims").
cp target/release/libtwiml_guard_native.so "$STAGE/share/filter/"
cp envoy.yaml host-service.toml "$STAGE/share/"
cp -r deploy "$STAGE/share/"
cp -rL models/whisper-tiny.en "$STAGE/models/"
cp README.md "$STAGE/"
tar -C "$OUT" -czf "$OUT/$NAME.tar.gz" "$NAME"
rm -rf "$STAGE"

# The check: unpack elsewhere, run every binary with no environment at all, and make sure the
# dynamic loader resolves nothing from this checkout or a virtualenv.
REPO="$(pwd -P)"
CHECK="$(mktemp -d)"
trap 'rm -rf "$CHECK"' EXIT
tar -C "$CHECK" -xzf "$OUT/$NAME.tar.gz"
for b in "${BINS[@]}"; do
  bin="$CHECK/$NAME/bin/$b"
  (cd / && env -i "$bin" --help >/dev/null) || { echo "dist: $b --help failed in an empty environment" >&2; exit 1; }
  deps="$(cd / && env -i ldd "$bin")"
  if grep -q "not found" <<<"$deps"; then echo "dist: $b: unresolved libraries:" >&2; echo "$deps" >&2; exit 1; fi
  if grep -E "$REPO|/\.venv/|site-packages" <<<"$deps"; then echo "dist: $b resolves libraries outside the tarball" >&2; exit 1; fi
done
# The native module needs nothing beyond libc (Envoy resolves its callbacks when it loads it).
native_deps="$(cd / && env -i ldd "$CHECK/$NAME/share/filter/libtwiml_guard_native.so")"
if grep -q "not found" <<<"$native_deps" || grep -E "$REPO|/\.venv/|site-packages" <<<"$native_deps"; then
  echo "dist: libtwiml_guard_native.so resolves libraries outside the system:" >&2; echo "$native_deps" >&2; exit 1
fi
for lib in libctranslate2 libgomp; do
  (cd / && env -i ldd "$CHECK/$NAME/bin/host-service") | grep "$lib" | grep -qF "$CHECK/$NAME/bin/../ct2lib/" \
    || { echo "dist: host-service does not load $lib from the tarball's ct2lib/" >&2; exit 1; }
done
echo "dist: $OUT/$NAME.tar.gz ($(du -h "$OUT/$NAME.tar.gz" | cut -f1)); unpacked and checked: bin/* run with an empty environment, libraries from ct2lib/"
