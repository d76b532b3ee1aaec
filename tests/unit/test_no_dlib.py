"""The unit tests need neither dlib nor the shared photos: proved by running them without.

They run in a fresh interpreter in which importing dlib (or its weights package) fails and
is recorded, and whose VULTUS_TEST_DATA points at an empty folder, so a test reaching for
a real photo fails too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import vultus

HERE = Path(__file__).resolve().parent

# Installed before pytest starts: every later `import dlib` raises, and leaves its name in a file.
_BOOTSTRAP = """
import importlib.abc, os, sys

BLOCKED = {"dlib", "_dlib_pybind11", "face_recognition_models"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(os.environ["BLOCKED_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is blocked in this run")
        return None

sys.meta_path.insert(0, Block())
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_the_unit_tests_pass_with_dlib_blocked_and_no_shared_photos(tmp_path: Path):
    log = tmp_path / "blocked.log"
    others = sorted(str(p) for p in HERE.glob("test_*.py") if p.name != Path(__file__).name)
    assert others, "there are unit tests to run"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(vultus.__file__).resolve().parents[1]),
        "VULTUS_TEST_DATA": str(tmp_path / "no-photos-here"),
        "BLOCKED_LOG": str(log),
    }
    run = subprocess.run(
        [sys.executable, "-c", _BOOTSTRAP, "-q", "-p", "no:cacheprovider", *others],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed.group(1)) >= len(others)
    assert not log.exists(), f"something tried to import {log.read_text().split()}"


def test_the_guard_would_catch_a_test_that_needs_dlib(tmp_path: Path):
    """The same run fails for a test that imports dlib: the proof above can fail."""
    needy = tmp_path / "test_needs_dlib.py"
    needy.write_text("def test_it():\n    import dlib  # noqa: F401\n")
    log = tmp_path / "blocked.log"
    env = {**os.environ, "PYTHONPATH": str(Path(vultus.__file__).resolve().parents[1]), "BLOCKED_LOG": str(log)}
    run = subprocess.run(
        [sys.executable, "-c", _BOOTSTRAP, "-q", "-p", "no:cacheprovider", str(needy)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode != 0 and log.read_text().split() == ["dlib"]
