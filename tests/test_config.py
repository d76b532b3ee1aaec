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
    ],
)
def test_bad_values_are_refused_with_what_to_do(env: dict, message: str):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
