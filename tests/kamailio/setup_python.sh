#!/usr/bin/env bash
# Make secsipid and its dependencies importable by the Python that Kamailio embeds.
#
# Kamailio's app_python3 runs Debian's system interpreter (/usr/bin/python3, 3.11 on bookworm),
# not the project's virtualenv, and Debian's python3-cryptography is too old for secsipid.  So
# install secsipid with its dependencies into a directory of its own, with that interpreter,
# (with the redis extra: mod_init(redis=...)), and point Kamailio's PYTHONPATH at it:
#
#   tests/kamailio/setup_python.sh [TARGET]      (default: ~/.cache/secsipid/kamailio-py)
#   PYTHONPATH=TARGET kamailio -f examples/kamailio/kamailio.cfg ...
#
# The tests put the work tree's src/ in front of TARGET, so they run the code being tested.
# Idempotent: does nothing when TARGET already satisfies the requirements.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${1:-${SECSIPID_KAMAILIO_PYTHONPATH:-${XDG_CACHE_HOME:-$HOME/.cache}/secsipid/kamailio-py}}"
python="${KAMAILIO_PYTHON:-/usr/bin/python3}"

if [ ! -x "$python" ]; then
    echo "setup_python.sh: $python not found (apt-get install python3)" >&2
    exit 1
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "setup_python.sh: pip for $python is missing (apt-get install python3-pip)" >&2
    exit 1
fi
stamp="$target/.secsipid-stamp"
want="$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && PYTHONPATH="$target" "$python" -c "import secsipid, cryptography, redis" 2>/dev/null; then
    exit 0
fi
mkdir -p "$target"
# --target installs outside the system site-packages, so Debian's externally-managed marker
# does not apply; --upgrade replaces an older secsipid in TARGET.
"$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --upgrade --target "$target" "$repo[redis]"
PYTHONPATH="$target" "$python" -c "import secsipid, cryptography; print('secsipid', secsipid.__version__, 'cryptography', cryptography.__version__, 'for', __import__('sys').version.split()[0])"
echo "$want" > "$stamp"
