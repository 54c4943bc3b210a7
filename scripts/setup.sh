#!/usr/bin/env bash
# One-time setup on a fresh Debian/Ubuntu machine: the system packages llama.cpp's
# build needs (cmake, a C/C++ compiler, libclang for bindgen), then the test data.
# Safe to rerun: it installs only what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
# bindgen needs libclang itself (libclang.so*), not libclang-cpp, which some images ship alone
have_libclang=no
for pattern in '/usr/lib/llvm-*/lib/libclang.so*' '/usr/lib/*/libclang.so*' '/usr/lib/*/libclang-[0-9]*.so*'; do
  if compgen -G "$pattern" >/dev/null; then have_libclang=yes; fi
done
[ "$have_libclang" = yes ] || missing+=(libclang-dev)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust from rustup.rs" >&2; exit 1; }

"$ROOT/scripts/fetch-test-data.sh"
