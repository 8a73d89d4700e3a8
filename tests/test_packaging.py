"""What a user gets from the distributions: the sdist holds the project and nothing else, the
wheel holds the package, its license and the Kamailio examples, and the shell completion and
man page generate from the parser (issue 8 items 6, 8 and 13).

The distributions are built with the standard front end (``python -m build``) without
isolation, from the hatchling the ``test`` extra installs, so no download happens here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SUBCOMMANDS = (
    "sign", "check", "fetch", "decode", "keygen", "kamailio-example", "sx", "demo", "serve",
)  # fmt: skip
EXAMPLES = ("kamailio.cfg", "redirect.py", "sti_as.py", "sti_vs.py")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [sdist] = out.glob("secsipid-*.tar.gz")
    [wheel] = out.glob("secsipid-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_sdist_holds_the_project_only(dists: dict[str, Path]) -> None:
    """Only the package, docs, tests, examples, license and README (plus the build's own
    pyproject.toml, PKG-INFO and .gitignore): no wheels, venvs, caches or stray files."""
    with tarfile.open(dists["sdist"]) as tar:
        members = tar.getmembers()
    names = [m.name.split("/", 1)[1] for m in members if "/" in m.name]
    top = {n.split("/", 1)[0] for n in names}
    assert top == {
        "src", "docs", "tests", "examples", "LICENSE", "README.md",
        "pyproject.toml", "PKG-INFO", ".gitignore",
    }  # fmt: skip
    assert {n.split("/", 2)[1] for n in names if n.startswith("src/")} == {"secsipid"}
    assert not [n for n in names if n.endswith((".whl", ".pyc")) or "__pycache__" in n]
    assert not [n for n in names if ".hypothesis" in n or ".venv" in n]
    assert {f"examples/kamailio/{e}" for e in EXAMPLES} <= set(names)
    assert sum(m.size for m in members) < 2_000_000


def test_wheel_holds_license_and_kamailio_examples(dists: dict[str, Path], tmp_path: Path) -> None:
    """The wheel carries LICENSE and the Kamailio examples, and ``secsipid kamailio-example``
    run from the unpacked wheel (not this work tree) prints them."""
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = whl.namelist()
        whl.extractall(tmp_path / "site")
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {f"secsipid/kamailio_examples/{e}" for e in EXAMPLES} <= set(names)
    assert not [n for n in names if not n.startswith(("secsipid/", "secsipid-"))]
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    code = "import secsipid.cli as c; print(c.__file__); print(c.kamailio_examples_dir())"
    where = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert where[0].startswith(str(tmp_path / "site"))
    assert where[1] == str(tmp_path / "site" / "secsipid" / "kamailio_examples")
    for name in ("sti_vs", "kamailio.cfg"):
        shown = subprocess.run(
            [sys.executable, "-m", "secsipid", "kamailio-example", name],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        file = name if "." in name else f"{name}.py"
        assert shown == (REPO / "examples" / "kamailio" / file).read_text()


def test_bash_completion_generates_and_completes(tmp_path: Path) -> None:
    """The documented command (docs/cli.md) generates a bash completion that knows every
    subcommand and the options of one."""
    script = tmp_path / "secsipid.bash"
    subprocess.run(
        [BIN / "shtab", "--shell=bash", "secsipid.cli.build_parser", "-o", script],
        check=True,
        capture_output=True,
    )
    probe = (
        f"source {script}\n"
        'COMP_WORDS=(secsipid ""); COMP_CWORD=1; _shtab_secsipid; echo "${COMPREPLY[*]}"\n'
        "COMP_WORDS=(secsipid check --allow); COMP_CWORD=2; _shtab_secsipid; "
        'echo "${COMPREPLY[*]}"\n'
    )
    bash = shutil.which("bash")
    assert bash is not None
    lines = subprocess.run(
        [bash, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert lines[0].split() == list(SUBCOMMANDS)
    assert lines[1].split() == ["--allow-http", "--allow-private"]


def test_man_page_generates_and_names_every_subcommand(tmp_path: Path) -> None:
    """The documented argparse-manpage command gives a man page that groff renders without
    warnings and that describes every subcommand."""
    page = tmp_path / "secsipid.1"
    subprocess.run(
        [
            BIN / "argparse-manpage", "--module", "secsipid.cli", "--function", "build_parser",
            "--prog", "secsipid", "--project-name", "secsipid",
            "--description", "sign and verify STIR/SHAKEN PASSporTs and SIP Identity headers",
            "--manual-title", "secsipid manual", "--output", page,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff not installed (apt-get install groff-base)")
    rendered = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", str(page)], capture_output=True, text=True, check=True
    )
    assert rendered.stderr == ""
    text = re.sub(".\x08", "", rendered.stdout)  # groff's overstrike bold: "c\bc"
    for command in SUBCOMMANDS:
        assert f"secsipid {command}" in text
    assert "--allow-http" in text and "--force" in text


def test_demo_script_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    """README's first command, in a fresh copy of the project: scripts/demo.sh sets up its
    own .venv with secsipid and its runtime dependencies (it installed the dev extras: mypy,
    ruff, pytest; issue 8 item 9) and the demo passes."""
    copy = tmp_path / "clone"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".hypothesis", "__pycache__", "*.egg-info", "build", "dist",
            ".mypy_cache", ".ruff_cache", ".pytest_cache",
        ),
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        ["bash", "scripts/demo.sh", "--quiet"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "demo: OK" in done.stdout
    listed = subprocess.run(
        [copy / ".venv" / "bin" / "python", "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert {"secsipid", "cryptography", "httpcore", "anyio"} <= installed
    assert not installed & {"pytest", "hypothesis", "mypy", "ruff", "shtab", "build"}
