"""The package as a user meets it: entry points, a cheap import, nothing written outside DATA."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_import_loads_no_model_and_no_heavy_dependency():
    code = (
        "import sys, vultus; "
        "heavy = [m for m in ('numpy', 'dlib', 'faiss', 'sqlalchemy', 'PIL') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_console_script_and_module_entry_points():
    script = shutil.which("vultus", path=str(Path(sys.executable).parent))
    assert script, "the vultus console script is not installed beside the interpreter"
    for command in ([script, "--help"], [sys.executable, "-m", "vultus", "--help"]):
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        assert "vultus source add" in out.stdout


def test_nothing_is_written_outside_the_data_directory(tmp_path: Path, faces_root: Path):
    cwd, tmp, home, data = (tmp_path / name for name in ("cwd", "tmp", "home", "data"))
    for folder in (cwd, tmp, home):
        folder.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "HOME": str(home), "VULTUS_DATA": str(data)}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "vultus", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    run("source", "add", "s", "--basis", "consent", "--purpose", "p", "--retention", "1d")
    run("ingest", str(faces_root / "facerec_biden"), "--source", "s", "--workers", "2", "--no-progress")
    run("search", str(faces_root / "facerec_biden" / "1.jpg"), "--purpose", "p", "--case", "c")
    run("stats")
    for folder in (cwd, tmp):
        assert list(folder.rglob("*")) == [], f"Vultus wrote into {folder.name}"
    # Only the ONNX conversion of dlib's public weights is cached outside: no personal data.
    cached = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    # (the default detector's weights are inside its library; HOG's cached copy comes only with HOG)
    assert sorted(Path(p).suffix for p in cached) == [".json", ".onnx"], cached
    assert all(p.startswith(".cache/vultus/dlib-") for p in cached), cached
    assert (data / "vultus.db").is_file()


def test_the_python_api_ingests_from_a_program_read_from_standard_input(tmp_path: Path, faces_root: Path):
    # Spawned workers cannot import a program that has no file; ingest must still work.
    program = (
        "import vultus\n"
        f"with vultus.open({str(tmp_path / 'd')!r}) as engine:\n"
        "    engine.add_source('s', basis='consent', purpose='p', retention='1d')\n"
        f"    print(engine.ingest([{str(faces_root / 'facerec_biden')!r}], source='s', workers=2).images)\n"
    )
    out = subprocess.run([sys.executable, "-"], input=program, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
