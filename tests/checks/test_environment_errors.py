"""A malformed environment value is one line on stderr, from manage.py and from daphne alike."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=BASE_DIR, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "manage.py", "check"],
        [sys.executable, "-m", "daphne", "-p", "0", "agentchat.asgi:application"],
    ],
    ids=["manage.py", "daphne"],
)
def test_a_non_numeric_value_is_reported_in_one_line(command):
    result = run(command, {"AGENTCHAT_SEQ_TOLERANCE": "abc"})

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Configuration error: AGENTCHAT_SEQ_TOLERANCE must be an integer, not 'abc'."
    ]


def test_an_out_of_range_value_fails_manage_py_check_with_its_id():
    result = run([sys.executable, "manage.py", "check"], {"AGENTCHAT_SEQ_TOLERANCE": "-1"})

    assert result.returncode != 0
    assert "agentchat.E002" in result.stderr
