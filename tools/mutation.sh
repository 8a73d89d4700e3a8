#!/usr/bin/env bash
# Mutation testing of the security-relevant modules with mutmut (docs/testing.md).
#
#   tools/mutation.sh                  every module of [tool.mutmut] only_mutate (pyproject.toml)
#   tools/mutation.sh _trust _codec    only these modules
#   JOBS=1 tools/mutation.sh ...       mutants tested in parallel (default: 2)
#
# Each run starts afresh (mutmut's cache would keep verdicts made with older tests).  mutmut
# copies the project to mutants/, makes every mutant, runs the fast tests once to learn which
# tests reach which function, then runs, for each mutant, only those tests.  At the end
# tools/mutation_report.py prints the figures per module and writes every surviving mutant
# that tools/mutation-equivalent.txt does not explain to mutants/survivors.txt.
#
# Not run in CI: the whole run takes about 40 minutes on 2 cores (docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/mutmut ]; then
    echo "mutation: installing the 'mutation' extra (mutmut) into .venv" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[mutation]"
fi

patterns=()
for module in "$@"; do
    module=${module#secsipid.}
    module=${module%.py}
    patterns+=("secsipid.${module}.*")
done

rm -rf mutants
log=$(mktemp -t secsipid-mutmut.XXXXXX)
start=$(date +%s)
# mutmut redraws a progress line many times a second: keep it out of the terminal.
if ! .venv/bin/mutmut run --max-children "${JOBS:-2}" "${patterns[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "mutation: mutmut failed (full log: $log)" >&2
    exit 1
fi
echo "mutation: $(( $(date +%s) - start )) s (mutmut log: $log)"
.venv/bin/python tools/mutation_report.py "$@"
