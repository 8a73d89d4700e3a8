"""The public surface: what `secsipid` exports, and docs that must match the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import secsipid

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it exists."""
    assert list(secsipid.__all__) == sorted(secsipid.__all__)
    for name in secsipid.__all__:
        assert hasattr(secsipid, name), name


def test_seed_function_signatures() -> None:
    """The seed's two functions keep the Kamailio module's parameter order."""
    import inspect

    add = list(inspect.signature(secsipid.add_identity).parameters)
    assert add[:6] == ["orig_tn", "dest_tn", "attest", "origid", "x5u", "key_path"]
    check = inspect.signature(secsipid.check_identity).parameters
    assert list(check)[:2] == ["identity", "key_path"]
    assert check["key_path"].default == ""
    assert check["expire"].default == 300 and check["timeout"].default == 5


def test_reasons_doc_is_current() -> None:
    """docs/reasons.md is exactly what tools/gen_reasons_doc.py renders from secsipid.Reason."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_reasons_doc.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (ROOT / "docs" / "reasons.md").read_text() == out, (
        "run: python tools/gen_reasons_doc.py > docs/reasons.md"
    )


def test_readme_starts_with_the_two_commands() -> None:
    """The README opens with the demo and the test command, and both scripts exist."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert block is not None and text.index("```sh") < 40
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands[:2] == ["scripts/demo.sh", "scripts/test.sh"]
    for cmd in commands[:2]:
        assert (ROOT / cmd).stat().st_mode & 0o111, f"{cmd} is not executable"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


def test_py_typed_marker_ships() -> None:
    """The package is marked typed (PEP 561)."""
    assert (Path(secsipid.__file__).parent / "py.typed").exists()
