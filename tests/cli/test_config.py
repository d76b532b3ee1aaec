"""Settings: defaults, environment variables, and clear errors for unusable values."""

from __future__ import annotations

from pathlib import Path

import pytest

from vultus.config import Settings
from vultus.errors import SettingsError


def test_defaults_suit_a_newcomer():
    settings = Settings.from_env({})
    assert settings.data_dir == Path("vultus-data")
    assert settings.detector == "yunet" and settings.embedder is None  # the gallery's own, dlib for a new one
    assert settings.worker_count >= 1 and settings.top == 10 and settings.threshold is None
    # Revision 5's fallback: a search that names no category covers what the upgrade gave that category.
    from vultus.categories import FALLBACK

    assert settings.default_category == FALLBACK.value == "archive"
    assert Settings.from_env({"VULTUS_DEFAULT_CATEGORY": "Missing_Persons"}).default_category == "missing-persons"


def test_environment_sets_fields_and_arguments_win():
    env = {"VULTUS_DATA": "/srv/v", "VULTUS_WORKERS": "3", "VULTUS_THRESHOLD": "0.8", "VULTUS_DETECT_SIZE": "1200"}
    settings = Settings.from_env(env)
    assert settings.data_dir == Path("/srv/v") and settings.workers == 3
    assert settings.threshold == 0.8 and settings.detect_size == 1200
    assert Settings.from_env(env, workers=1, data_dir=Path("x")).workers == 1
    assert Settings.from_env(env, data_dir=Path("x")).data_dir == Path("x")


@pytest.mark.parametrize(
    "env,message",
    [
        ({"VULTUS_WORKERS": "many"}, "VULTUS_WORKERS='many' is not a valid int"),
        ({"VULTUS_WORKERS": "-1"}, "workers must be 0"),
        ({"VULTUS_THRESHOLD": "1.5"}, "between 0 and 1"),
        ({"VULTUS_DETECT_SIZE": "50"}, "between 160 and 8000"),
        ({"VULTUS_MAX_PIXELS": "0"}, "positive"),
        ({"VULTUS_DEFAULT_CATEGORY": "surveillance"},
         "VULTUS_DEFAULT_CATEGORY is 'surveillance', not a search category; use one of: journalism, archive"),
    ],
)
def test_bad_values_are_refused_with_what_to_do(env: dict, message: str):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_settings_read_elsewhere_before_are_fields_with_their_variables(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path):
    from vultus.config import environment_value, model_cache_dir

    env = {"VULTUS_ORT_THREADS": "2", "VULTUS_DLIB_BACKEND": "DLIB", "VULTUS_CACHE_DIR": "/tmp/models"}
    settings = Settings.from_env(env)
    assert settings.ort_threads == 2 and settings.dlib_backend == "dlib" and settings.cache_dir == Path("/tmp/models")
    with pytest.raises(SettingsError, match="VULTUS_DLIB_BACKEND is 'tensorflow'"):
        Settings.from_env({"VULTUS_DLIB_BACKEND": "tensorflow"})
    with pytest.raises(SettingsError, match="ort_threads must be 0"):
        Settings.from_env({"VULTUS_ORT_THREADS": "-2"})
    # Code without a settings object at hand reads one setting from this process's environment.
    monkeypatch.setenv("VULTUS_ORT_THREADS", "3")
    monkeypatch.setenv("VULTUS_CACHE_DIR", str(tmp_path / "c"))
    assert environment_value("ort_threads") == 3 and model_cache_dir() == tmp_path / "c"
    monkeypatch.setenv("VULTUS_ORT_THREADS", "three")
    with pytest.raises(SettingsError, match="VULTUS_ORT_THREADS='three' is not a valid int"):
        environment_value("ort_threads")


def test_constructor_copies_and_keywords_give_the_project_errors():
    with pytest.raises(SettingsError, match="workers='x' is not a valid int"):
        Settings.from_env({}, workers="x")
    with pytest.raises(SettingsError, match="top must be at least 1"):
        Settings(top=0)
    settings = Settings.from_env({"VULTUS_TOP": "5"})
    assert settings.with_(data_dir="elsewhere").data_dir == Path("elsewhere") and settings.top == 5
    with pytest.raises(SettingsError, match="body_timeout"):
        settings.with_(body_timeout=0)
    with pytest.raises(TypeError, match="no_such_setting"):
        Settings.from_env({}, no_such_setting=1)


SRC = Path(__file__).resolve().parents[2] / "src" / "vultus"
README = Path(__file__).resolve().parents[2] / "README.md"


def _environment_reads(tree) -> list[int]:
    """Line numbers where ``tree`` reads the environment (see the test below for the rule)."""
    import ast

    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "getenvb"):
            parent = parents.get(node)
            grand = parents.get(parent)
            if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, (ast.Store, ast.Del)):
                continue  # os.environ[NAME] = value, or del: a write
            if (isinstance(parent, ast.Attribute) and parent.attr == "setdefault" and isinstance(grand, ast.Call)
                    and isinstance(parents.get(grand), ast.Expr)):
                continue  # os.environ.setdefault(NAME, value) as a statement: a default for this process and its children
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for alias in node.names if alias.name in ("environ", "environb", "getenv", "getenvb")]
        elif isinstance(node, ast.keyword) and node.arg in ("envvar", "auto_envvar_prefix"):
            lines.append(node.value.lineno)  # click reading a variable for an option
    return sorted(lines)


def test_only_the_settings_module_reads_the_environment():
    """vultus.config is the one module that reads environment variables.

    Anything else that reads ``os.environ`` (by subscript, ``get``, ``in``, iteration or by
    passing it on), calls ``os.getenv``, imports ``environ`` or ``getenv`` from ``os``, or
    lets click read a variable (``envvar=``) is a second reader whose name, default and
    checks could drift from :class:`Settings`. Writes are allowed: assigning or deleting
    ``os.environ[NAME]``, and ``os.environ.setdefault(NAME, value)`` as a statement whose
    result is not used, which is how Vultus passes a value to onnxruntime and to worker
    processes (the reading is then done through vultus.config).
    """
    import ast

    assert _environment_reads(ast.parse("import os\nx = os.environ.get('A')\nos.environ.setdefault('B', '1')\n"
                                        "y = os.getenv('C')\nos.environ['D'] = '1'\n")) == [2, 4]
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "config.py":
            continue
        offenders += [f"{path.relative_to(SRC)}:{line}" for line in _environment_reads(ast.parse(path.read_text()))]
    assert not offenders, f"read the environment outside vultus.config: {offenders}"


def test_every_settings_variable_is_in_the_readme_and_in_help():
    from click.testing import CliRunner

    from vultus.cli import cli
    from vultus.config import environment_variables

    readme = README.read_text()
    help_text = CliRunner().invoke(cli, ["--help"]).output
    variables = [variable for variable, _name, _default in environment_variables()]
    assert len(variables) == len(Settings.model_fields) and "VULTUS_DATA" in variables
    assert [v for v in variables if f"`{v}`" not in readme] == []
    assert [v for v in variables if v not in help_text] == []
    # The listing gives each default as Settings declares it.
    assert "VULTUS_MAX_PIXELS" in help_text and "default: 120000000" in help_text


def test_nested_settings_come_from_double_underscore_variables_and_bad_ones_are_named():
    settings = Settings.from_env({"VULTUS_STORE__URL": "sqlite:////srv/v.db"})
    assert settings.store.url == "sqlite:////srv/v.db"
    # A change of one nested field keeps the others; None changes nothing.
    assert settings.with_(store={"url": None}).store.url == "sqlite:////srv/v.db"
    assert settings.with_(store={"url": "sqlite:////x.db"}).store.url == "sqlite:////x.db"
    with pytest.raises(SettingsError, match="VULTUS_STORE__PATH is not a setting"):
        Settings.from_env({"VULTUS_STORE__PATH": "/x"})
    with pytest.raises(SettingsError, match="VULTUS_STORE__URL"):
        Settings.from_env({"VULTUS_STORE": "sqlite:////x.db"})


def test_the_store_url_puts_the_database_outside_the_data_directory(tmp_path: Path):
    from click.testing import CliRunner

    import vultus
    from vultus.cli import cli

    elsewhere = tmp_path / "db"
    elsewhere.mkdir()
    url = f"sqlite:///{elsewhere / 'gallery.db'}"
    with vultus.open(tmp_path / "data", store={"url": url}) as engine:
        engine.add_source("s", basis="consent", purpose="test", retention="30d")
    assert (elsewhere / "gallery.db").is_file() and not (tmp_path / "data" / "vultus.db").exists()
    out = CliRunner().invoke(cli, ["--data", str(tmp_path / "data"), "--store-url", url, "source", "list"])
    assert out.exit_code == 0 and "consent" in out.output
    # Another scheme, or a folder that is not there: a clear error, nothing made.
    for bad, message in (("mysql://db/v", "No metadata store handles"), (f"sqlite:///{tmp_path}/none/v.db", "does not exist")):
        out = CliRunner().invoke(cli, ["--data", str(tmp_path / "other"), "--store-url", bad, "source", "list"])
        assert out.exit_code != 0 and message in out.output and "Traceback" not in out.output
    assert not (tmp_path / "none").exists()
