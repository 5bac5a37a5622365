"""A new user's first steps: scripts/serve on a taken port, and the first-run hint of bootstrap_admin."""

import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

BASE_DIR = Path(__file__).resolve().parents[1]


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BASE_DIR / "scripts" / "serve"), *args], cwd=BASE_DIR, capture_output=True, text=True, timeout=120
    )


def test_serve_on_a_taken_port_exits_non_zero_with_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = serve(str(port))

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert f"scripts/serve {port + 1}" in line


def test_serve_refuses_a_port_that_is_not_a_number():
    result = serve("http")

    assert result.returncode == 2
    assert result.stderr.strip() == "scripts/serve: the port must be a number from 1 to 65535, not 'http'."


@pytest.mark.django_db
def test_bootstrap_admin_hints_at_the_projects_python(monkeypatch):
    """The system Python has no Django: the hint names the one that works."""
    monkeypatch.setattr(sys, "executable", str(BASE_DIR / ".venv" / "bin" / "python"))
    out = StringIO()

    call_command("bootstrap_admin", stdout=out)
    call_command("bootstrap_admin", stdout=out)

    first, hint, again = out.getvalue().splitlines()
    assert hint == "This password is shown once; change it with `.venv/bin/python manage.py changepassword admin`."
    assert "`.venv/bin/python manage.py changepassword USERNAME`" in again
