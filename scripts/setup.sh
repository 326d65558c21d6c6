#!/usr/bin/env bash
# Installs what building and testing fieldcrypt needs on a fresh Debian machine. Idempotent:
# installs only what is missing. Used by `make demo`, `make test` and `make bench`.
set -euo pipefail

# valgrind: the C ABI test under memcheck; mono: the C# binding (mcs builds C# 7.2, mono runs it).
apt_packages=(build-essential pkg-config zlib1g-dev libssl-dev python3 python3-venv curl maven openjdk-17-jdk-headless cmake
  valgrind mono-mcs mono-runtime)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: Rust is not installed (install rustup, then re-run)" >&2
    exit 1
  fi
fi
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
