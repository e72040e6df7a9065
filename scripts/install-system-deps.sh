#!/usr/bin/env bash
# Install the Debian packages the end-to-end tests need: Chromium (the dashboard is opened in
# headless Chromium through Playwright; Playwright never downloads its own browser) and the
# PostgreSQL server binaries (tests start a throwaway cluster for distributed-storage tests),
# and g++ (hls4ml compiles its bit-accurate C simulation of exported models with it).
#
# Idempotent: packages already installed are skipped, and nothing runs apt when all are there.
# Run as root (CI) or with sudo. Fails loudly (non-zero exit, message on stderr) otherwise.
set -euo pipefail

PACKAGES=(chromium postgresql g++)

missing=()
for package in "${PACKAGES[@]}"; do
    if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        echo "install-system-deps: $package already installed"
    else
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: nothing to install"
else
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            exec sudo --preserve-env=DEBIAN_FRONTEND "$0" "$@"
        fi
        echo "install-system-deps: must run as root to install: ${missing[*]}" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-system-deps: apt-get not found; install ${missing[*]} with your package manager" >&2
        exit 1
    fi
    echo "install-system-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Check what the tests actually use, so a broken install fails here and not mid-suite.
if [ ! -x /usr/bin/chromium ]; then
    echo "install-system-deps: /usr/bin/chromium is missing after installation" >&2
    exit 1
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "install-system-deps: /usr/lib/postgresql/<version>/bin/initdb is missing after installation" >&2
    exit 1
fi
if ! command -v g++ >/dev/null 2>&1; then
    echo "install-system-deps: g++ is missing after installation" >&2
    exit 1
fi
echo "install-system-deps: ok ($(/usr/bin/chromium --version 2>/dev/null | head -n1); $(ls -d /usr/lib/postgresql/*/ | xargs -n1 basename | tr '\n' ' '))"
