"""The command examples at the top of docs/training.md run as written (on a cut-down budget):
every `stratum run` line without a placeholder directory, and every `stratum bench` line planned
with --dry-run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import run_cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"
PLACEHOLDERS = ("DIR", "photos")
BUDGET = ["--epochs", "2", "--steps-per-epoch", "2", "--threads", "1", "--width", "0.125", "--quiet"]


def example_commands() -> list[list[str]]:
    text = DOC.read_text()
    block = re.search(r"^```sh\n(.*?)^```", text, flags=re.S | re.M).group(1)
    commands = []
    for line in block.splitlines():
        for part in line.split("#", 1)[0].split(";"):
            argv = shlex.split(part)
            if argv and argv[0] == "stratum" and not any(p in argv for p in PLACEHOLDERS):
                commands.append(argv[1:])
    return commands


def test_the_examples_are_found():
    commands = example_commands()
    assert sum(c[0] == "run" for c in commands) >= 4 and sum(c[0] == "bench" for c in commands) >= 2


@pytest.mark.parametrize("argv", example_commands(), ids=lambda a: " ".join(a)[:60])
def test_each_example_runs(argv):
    extra = BUDGET if argv[0] == "run" else ["--dry-run"]
    result = run_cli(*argv, *extra)
    assert result.exit_code == 0, result
