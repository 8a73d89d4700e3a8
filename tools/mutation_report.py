"""Figures of the last mutmut run (tools/mutation.sh), per module, and the surviving mutants.

    python tools/mutation_report.py [MODULE ...] [--out=FILE]

Reads mutmut's result files under mutants/ (mutmut 3.8: see the ``mutation`` extra).  A
surviving mutant that an entry of tools/mutation-equivalent.txt describes is counted as
equivalent (it cannot change behaviour; the entry says why); every other one is written, with
its diff and a ready-to-paste entry, to mutants/survivors.txt (or FILE).  "No tests" mutants
(no test of the selection reaches the function) count as survivors: nothing would notice them
either.

Exit status: 0 when no unexplained mutant survived, 1 otherwise.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tools" / "mutation-equivalent.txt"
OUT = ROOT / "mutants" / "survivors.txt"
MODULES = [
    "_verifier", "_passport", "_identity", "_fetch", "_resolve", "_source", "_trust", "_codec",
    "_tnauthlist",
]  # fmt: skip


@dataclass(frozen=True)
class Equivalent:
    """One entry of tools/mutation-equivalent.txt: the function (a glob), the line the mutant
    removes and the one it adds (exact, stripped; or globs in ``removed_glob``/``added_glob``
    for one rule that covers many lines), and why no test can tell them apart."""

    function: str
    why: str
    removed: str | None = None
    added: str | None = None
    removed_glob: str | None = None
    added_glob: str | None = None

    def matches(self, function: str, removed: str, added: str) -> bool:
        def same(line: str, exact: str | None, glob: str | None) -> bool:
            return line == exact if exact is not None else fnmatch.fnmatchcase(line, glob or "")

        return (
            fnmatch.fnmatchcase(function, self.function)
            and same(removed, self.removed, self.removed_glob)
            and same(added, self.added, self.added_glob)
        )


def load_equivalents() -> list[Equivalent]:
    data = tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    return [Equivalent(**entry) for entry in data.get("equivalent", [])]


def function_of(mutant: str) -> str:
    """The function a mutant is in, from mutmut's name for it:
    ``secsipid._trust.xǁTrustValidatorǁcheck__mutmut_5`` is in
    ``secsipid._trust.TrustValidator.check``."""
    module, _, name = mutant.rpartition(".")
    name = name.rpartition("__mutmut_")[0]
    methods = name.split("ǁ")[1:]  # "xǁClassǁmethod" for a method, "x_function" otherwise
    return f"{module}.{'.'.join(methods) if methods else name.removeprefix('x_')}"


def changed_lines(diff: str) -> tuple[str, str]:
    """The lines a mutant removes and adds (stripped, joined with " / ")."""
    lines = diff.splitlines()[2:]  # after the ---/+++ header
    removed = [ln[1:].strip() for ln in lines if ln.startswith("-")]
    added = [ln[1:].strip() for ln in lines if ln.startswith("+")]
    return " / ".join(removed), " / ".join(added)


def main(argv: list[str]) -> int:
    out = OUT
    for arg in [a for a in argv if a.startswith("--out=")]:  # another file for the survivors
        out = Path(arg.removeprefix("--out="))
        argv.remove(arg)
    wanted = [m.removeprefix("secsipid.").removesuffix(".py") for m in argv] or MODULES
    equivalents = load_equivalents()
    rows: list[tuple[str, Counter[str]]] = []
    unexplained: list[str] = []
    os.chdir(ROOT)  # mutmut reads mutants/ relative to the working directory
    for module in wanted:
        path = Path("src/secsipid") / f"{module}.py"
        data = SourceFileMutationData(path=path)
        data.load()
        counts: Counter[str] = Counter()
        for mutant, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            if status in ("survived", "no tests"):
                diff = get_diff_for_mutant(mutant, path=path)
                function = function_of(mutant)
                removed, added = changed_lines(diff)
                if any(e.matches(function, removed, added) for e in equivalents):
                    status = "equivalent"
                else:
                    unexplained.append(
                        f"# {mutant}: {status}\n{diff}\n\n[[equivalent]]\n"
                        f"function = {json.dumps(function)}\nremoved = {json.dumps(removed)}\n"
                        f'added = {json.dumps(added)}\nwhy = ""\n'
                    )
            counts[status] += 1
        rows.append((module, counts))

    header = ("module", "mutants", "killed", "timeout", "survived", "no tests", "equivalent",
              "survival", "non-equivalent survival")  # fmt: skip
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    total: Counter[str] = Counter()
    for _, counts in rows:
        total.update(counts)
    for module, counts in [*rows, ("all", total)]:
        n = sum(counts.values())
        alive = counts["survived"] + counts["no tests"]

        def rate(k: int, n: int = n) -> str:
            return f"{100 * k / n:.1f} %" if n else "-"

        cells = [module, n, counts["killed"], counts["timeout"], counts["survived"],
                 counts["no tests"], counts["equivalent"], rate(alive + counts["equivalent"]),
                 rate(alive)]  # fmt: skip
        known = ("killed", "timeout", "survived", "no tests", "equivalent")
        other = {k: v for k, v in counts.items() if k not in known}
        if other:
            cells.append(f"(also {other})")
        print(" | ".join(str(c) for c in cells))
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(unexplained))
    print(f"{len(unexplained)} unexplained surviving mutants" + (f": {out}" if unexplained else ""))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
