#!/usr/bin/env bash
# A headless browser for the admin's browser test (tests/e2e/test_admin_browser.py): Debian's
# chromium and chromium-driver, which selenium (the dev extra) drives.
#
#   deploy/browser.sh        install them if missing; prints the CHROMIUM and CHROMEDRIVER
#                            lines on stdout (everything else goes to stderr), so
#                            `eval "$(deploy/browser.sh)"` sets them.
#
# Idempotent: with both installed it only prints their paths. Runs as root on Debian, without
# a terminal; needs Debian's package mirror, nothing else (no browser download by selenium).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(chromium chromium-driver)
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends)

say() { echo "browser: $*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    if ! apt-get install -s -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        "${APT[@]}" update >&2
    fi
    "${APT[@]}" install "${missing[@]}" >&2
fi

chromium=$(command -v chromium) || { say "error: chromium is not on PATH"; exit 1; }
driver=$(command -v chromedriver) || { say "error: chromedriver is not on PATH"; exit 1; }
say "$("$chromium" --version 2>/dev/null || echo chromium)"
echo "export CHROMIUM=$chromium CHROMEDRIVER=$driver"
