#!/usr/bin/env bash
# Set up a development environment on a fresh Debian machine: system packages (as root, only
# what is missing) and a virtualenv in .venv with secsipid installed editable.
#   scripts/setup.sh            Python environment for development (the dev extras)
#   scripts/setup.sh --test     also the system packages the test suite uses
#   scripts/setup.sh --demo     secsipid and its runtime dependencies only (scripts/demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
extras="[dev]"
case "${1:-}" in
    --test) want_test=1 ;;
    --demo) extras="" ;;
    "") ;;
    *) echo "usage: scripts/setup.sh [--test | --demo]" >&2; exit 2 ;;
esac

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: please install: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
        return 1
    fi
    echo "setup: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

if [ "$want_test" = 1 ]; then
    # secsipidx/libsecsipid1: interop and baselines; openssl: keys and `openssl speed`;
    # kamailio + modules and sipp (sip-tester): the Kamailio integration tests; python3-pip:
    # to install secsipid for the system Python that Kamailio embeds; groff-base: to render the
    # generated man page; redis-server: the shared certificate cache tests (the tests start
    # their own, never a system service).
    apt_install openssl secsipidx libsecsipid1 kamailio kamailio-python3-modules \
        kamailio-secsipid-modules sip-tester python3-pip groff-base redis-server
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"
