"""Typed settings for one Vultus deployment, read from arguments and ``VULTUS_*`` variables.

This module is the only one in Vultus that reads the environment: the engine, the CLI
and the server build a :class:`Settings`, and code that runs where no settings object
is passed (model sessions, worker processes) asks :func:`environment_value`.
"""

from __future__ import annotations

import os
import types
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Mapping, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsError as SourceError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from .categories import SearchCategory, vocabulary
from .errors import SettingsError

__all__ = ["Settings", "StoreSettings", "IndexSettings", "DEFAULT_DATA_DIR", "env_name", "environment_variables", "environment_value",
           "model_cache_dir"]

DEFAULT_DATA_DIR = Path("vultus-data")
ENV_PREFIX = "VULTUS_"
DLIB_BACKENDS = ("onnx", "dlib")

#: The variables :meth:`Settings.from_env` reads instead of ``os.environ``, while it runs.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("vultus_settings_environ", default=None)


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping when there is one."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRON.get()
        if given is None:
            return super()._load_env_vars()
        # As the base class treats os.environ (names matched case-insensitively, empty
        # values ignored), so that a given mapping reads exactly as the process's would.
        return {(key if self.case_sensitive else key.lower()): value
                for key, value in given.items() if not (self.env_ignore_empty and value == "")}


class StoreSettings(BaseModel):
    """Where the metadata store lives (``VULTUS_STORE__URL``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The store's URL, e.g. ``sqlite:////srv/vultus/vultus.db``; None means SQLite in the
    #: data directory (``DATA/vultus.db``). The scheme picks the backend (:mod:`vultus.store.base`).
    url: str | None = None


class IndexSettings(BaseModel):
    """Where the vector index lives (``VULTUS_INDEX__URL``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The index's URL, e.g. ``faiss:///srv/vultus/index``; None means FAISS files in the
    #: data directory (``DATA/index/faces.faiss``). The scheme picks the backend (:mod:`vultus.index.base`).
    url: str | None = None


class Settings(BaseSettings):
    """Everything that can be tuned, with the defaults a newcomer should get.

    Each field can be set from the environment as ``VULTUS_<FIELD NAME IN CAPITALS>``
    (the data directory as ``VULTUS_DATA``, as on the command line); explicit keyword
    arguments (to the constructor or :meth:`from_env`) win over the environment. An
    empty variable counts as unset. Unusable values raise :class:`SettingsError`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
    )

    #: Folder holding the database, the blob copies and the vector index.
    data_dir: Path = Field(DEFAULT_DATA_DIR, validation_alias="VULTUS_DATA")
    #: Key file with the encryption and signing keys; None means ``DATA/keys.json``.
    key_file: Path | None = None
    #: Registered detector name (``yunet``, ``hog`` or ``cnn``), or the path of an SCRFD-style ONNX file.
    detector: str = "yunet"
    #: Registered embedder name, or the path of an ArcFace-style ONNX file; None means the
    #: one the gallery was built with (``dlib-resnet-v1`` for a new gallery).
    embedder: str | None = None
    #: Ingest worker processes; 0 means one per CPU core.
    workers: int = 0
    #: Where ingest analyses photos: ``pool`` (worker processes on this machine) or ``ray``
    #: (tasks on a Ray cluster; see vultus.executors).
    ingest_executor: Literal["pool", "ray"] = "pool"
    #: The Ray cluster's address (``HOST:PORT`` of its head) for ``ingest_executor=ray``; None
    #: starts a local Ray instance for the ingest.
    ray_address: str | None = None
    #: Images with more pixels than this are refused (decompression-bomb guard).
    max_pixels: int = 120_000_000
    #: Memory, in MiB, that decoding one photo may take (estimated from its header before
    #: any pixel is decoded: the decoded image at its mode's size plus the 8-bit RGB result);
    #: photos that would take more are refused. The default admits an 8-bit photo of
    #: ``max_pixels``; a float or 16-bit image of that size needs more.
    max_decode_mb: int = 1024
    #: Long side, in pixels, that every photo is scaled to (down or up) before detection;
    #: None (the default) sizes detection by the smallest face to find, ``min_face_size``
    #: (:mod:`vultus.faces.scale`).
    detect_size: int | None = None
    #: Candidates returned by a search unless ``--top`` says otherwise.
    top: int = 10
    #: Minimum similarity for a search candidate; None means the embedder's own default.
    threshold: float | None = None
    #: Similarity at which access, erasure, objection and restriction match a person's face;
    #: None means the embedder's own, deliberately more inclusive than search (dlib: 0.675,
    #: which is distance 0.65, where search uses 0.70, distance 0.6).
    rights_threshold: float | None = None
    #: Faces whose box is narrower or shorter than this (original pixels) are not indexed;
    #: detection is sized to find faces this small in any photo.
    min_face_size: int = 32
    #: Faces the detector scores below this are not indexed. Scores are each detector's own:
    #: YuNet's run from 0.5 to 1, HOG's from 0 to ~3; set it for the detector in use.
    min_detector_score: float = 0.0
    #: Galleries with more faces than this are searched through an IVF index (approximate,
    #: recall@10 >= 0.99 against exact search); smaller ones exactly. 0 means always exact.
    ivf_threshold: int = 100_000
    #: Who is acting, recorded in the audit log; None means the operating-system user.
    actor: str | None = None
    #: Folder under which the server may ingest server-side paths; None turns that off.
    ingest_root: Path | None = None
    #: Whether every search must state a purpose and a case reference. Only a personal
    #: deployment should turn this off; `vultus stats` then says so.
    purpose_required: bool = True
    #: The search category of a search that names none (``--category``): only the sources
    #: whose purposes allow it are searched. ``archive`` is the category that revision 5 gives
    #: every source whose purpose text names no other use (vultus.categories.FALLBACK), so
    #: searches that name no category keep finding those sources.
    default_category: str = "archive"
    #: Seconds the server waits for more of a request body before answering 408 (a body
    #: must also keep up 16 KiB/s after that allowance); see vultus.server.limits.
    body_timeout: float = 30.0
    #: Most photos in one ingest upload; the body limit of an upload is this many photos.
    max_batch_photos: int = 50
    #: Reverse proxies whose X-Forwarded-For the server believes, comma-separated addresses
    #: or CIDR ranges; None means the client is always the socket's peer.
    trusted_proxies: str | None = None
    #: onnxruntime threads per model session; 0 means onnxruntime's own choice (all cores).
    #: Ingest workers set it to their share of the cores for themselves unless it is set.
    ort_threads: int = 0
    #: Runtime for dlib's networks: ``onnx`` (converted graphs) or ``dlib`` (dlib itself, the reference).
    dlib_backend: str = "onnx"
    #: Folder for the models converted from dlib's public weights; None means
    #: ``$XDG_CACHE_HOME/vultus``, else ``~/.cache/vultus``.
    cache_dir: Path | None = None
    #: Frames of a video analysed per second of it (sampled by presentation time).
    video_sample_rate: float = 2.0
    #: Videos longer than this many seconds are refused (before any frame is analysed).
    max_video_seconds: float = 4 * 3600.0
    #: Videos whose frames have more pixels than this are refused (4096x2160, DCI 4K, by default).
    max_video_pixels: int = 4096 * 2160
    #: The metadata store (nested: ``VULTUS_STORE__URL``).
    store: StoreSettings = StoreSettings()
    #: The vector index (nested: ``VULTUS_INDEX__URL``).
    index: IndexSettings = IndexSettings()

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _settings_error(exc, given=values) from None
        except SourceError as exc:
            # The environment source could not parse a nested part given whole (VULTUS_STORE=...).
            nested = [env_name(name) for name, info in type(self).model_fields.items() if _is_part(info.annotation)]
            raise SettingsError(f"{', '.join(nested)} name groups of settings, set field by field "
                                f"(e.g. {env_name('store.url')}): {exc}") from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments, then the environment; no .env or secrets files, which Vultus never read.
        return init_settings, _EnvSource(settings_cls)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Build settings from ``VULTUS_*`` variables (of ``environ``, else the process's),
        then apply non-None ``overrides``."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        finally:
            _ENVIRON.reset(token)

    def with_(self, **changes: object) -> "Settings":
        """Return a copy with some (non-None) fields changed and validated."""
        values = self.model_dump()
        for key, value in changes.items():
            if value is None:
                continue
            # A nested part changes field by field: with_(store={"url": ...}) keeps the rest.
            if isinstance(value, Mapping) and isinstance(values.get(key), dict):
                value = {**values[key], **{k: v for k, v in value.items() if v is not None}}
            values[key] = value
        try:
            return type(self).model_validate(values)
        except ValidationError as exc:
            raise _settings_error(exc, given=values) from None

    def validate(self) -> None:  # type: ignore[override] - kept from the dataclass era
        """Raise :class:`SettingsError` for values that cannot work (construction already checks)."""
        self.with_()

    @field_validator("default_category", mode="before")
    @classmethod
    def _category(cls, value: object) -> object:
        # Spelt as a search's --category may be (Missing_Persons); _problem checks the word.
        return SearchCategory.normalise(value) if isinstance(value, str) else value

    @field_validator("dlib_backend", mode="before")
    @classmethod
    def _lower_backend(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        problem = _problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def actor_name(self) -> str:
        """The actor to record: the setting, else the operating-system user."""
        if self.actor:
            return self.actor.strip()
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return f"uid:{os.getuid()}"

    @property
    def key_path(self) -> Path:
        """Where the key file is."""
        return self.key_file if self.key_file is not None else self.data_dir / "keys.json"

    @property
    def worker_count(self) -> int:
        """The number of ingest processes to start (resolves 0 to the core count)."""
        return self.workers or os.cpu_count() or 1


def _problem(s: Settings) -> str | None:
    """What is wrong with ``s`` for a user to fix, or None."""
    if s.workers < 0:
        return f"workers must be 0 (one per core) or more, not {s.workers}."
    if s.max_pixels < 1:
        return "max_pixels must be a positive number of pixels."
    if s.max_decode_mb < 64:
        return f"max_decode_mb must be at least 64 (MiB of memory for one decode), not {s.max_decode_mb}."
    if s.detect_size is not None and not 160 <= s.detect_size <= 8000:
        return f"detect_size must be between 160 and 8000 pixels, not {s.detect_size}."
    if s.ivf_threshold < 0:
        return f"ivf_threshold must be 0 (always exact) or a number of faces, not {s.ivf_threshold}."
    if s.top < 1:
        return f"top must be at least 1, not {s.top}."
    if s.min_face_size < 20:
        return f"min_face_size must be at least 20 pixels (no usable template is smaller), not {s.min_face_size}."
    if s.rights_threshold is not None and not 0.0 < s.rights_threshold <= 1.0:
        return f"rights_threshold is a similarity between 0 and 1, not {s.rights_threshold}."
    if s.actor is not None and not s.actor.strip():
        return "The actor may not be blank: every action is recorded under a name."
    if not 0.1 <= s.body_timeout <= 3600:
        return f"body_timeout is in seconds, from 0.1 to 3600, not {s.body_timeout}."
    if not 1 <= s.max_batch_photos <= 10_000:
        return f"max_batch_photos must be from 1 to 10000, not {s.max_batch_photos}."
    if s.threshold is not None and not 0.0 <= s.threshold <= 1.0:
        return f"threshold is a similarity between 0 and 1, not {s.threshold}."
    if s.ort_threads < 0:
        return f"ort_threads must be 0 (onnxruntime's choice) or a number of threads, not {s.ort_threads}."
    if not 0.1 <= s.video_sample_rate <= 30:
        return f"video_sample_rate is frames a second, from 0.1 to 30, not {s.video_sample_rate}."
    if not s.max_video_seconds > 0:
        return f"max_video_seconds must be a positive number of seconds, not {s.max_video_seconds}."
    if s.max_video_pixels < 64 * 64:
        return f"max_video_pixels must be at least 4096 (a 64x64 frame), not {s.max_video_pixels}."
    if s.default_category not in {c.value for c in SearchCategory}:
        return (f"VULTUS_DEFAULT_CATEGORY is {s.default_category!r}, not a search category; use one of: "
                f"{vocabulary()}.")
    if s.dlib_backend not in DLIB_BACKENDS:
        return f"VULTUS_DLIB_BACKEND is {s.dlib_backend!r}; use onnx (the default) or dlib."
    return None


def _field(name: str):  # noqa: ANN202 - pydantic's FieldInfo
    """The field a dotted name (``store.url``) stands for."""
    model: Any = Settings
    *parents, last = name.split(".")
    for part in parents:
        model = model.model_fields[part].annotation
    return model.model_fields[last]


def _kind(name: str) -> str:
    """The type a field takes, in words for an error message (``int``, ``Path``, ...)."""
    annotation = _field(name).annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return getattr(annotation, "__name__", str(annotation))


def _settings_error(exc: ValidationError, *, given: Mapping[str, object]) -> Exception:
    """The one clear error for pydantic's report: the first problem, named as the user wrote it."""
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"]) if error["loc"] else None
    if error["type"] == "extra_forbidden" and loc is not None and loc.split(".")[0] not in given:
        # Only a nested variable (VULTUS_STORE__...) can get here from the environment.
        return SettingsError(f"{env_name(loc)} is not a setting; unset it (see `vultus --help` for the list).")
    if error["type"] == "extra_forbidden":
        # A misspelt keyword is a programming error, as it was for the dataclass.
        return TypeError(f"Settings got an unexpected keyword argument {loc!r}")
    if error["type"] == "value_error" and not error["loc"]:
        return SettingsError(str(error["ctx"]["error"]))
    name = "data_dir" if loc == env_name("data_dir") else str(loc)
    raw = error.get("input")
    if name.split(".")[0] in given:
        return SettingsError(f"{name}={raw!r} is not a valid {_kind(name)}.")
    return SettingsError(f"{env_name(name)}={raw!r} is not a valid {_kind(name)}; fix or unset the variable.")


def env_name(field_name: str) -> str:
    """The environment variable that sets a field (``data_dir`` is ``VULTUS_DATA``, a nested
    ``store.url`` is ``VULTUS_STORE__URL``)."""
    return ENV_PREFIX + ("DATA" if field_name == "data_dir" else field_name.replace(".", "__").upper())


def _is_part(annotation: object) -> bool:
    """Whether a field is a nested group of settings (StoreSettings, IndexSettings)."""
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def environment_variables() -> list[tuple[str, str, object]]:
    """Every setting's variable, (dotted) field name and default, in the order of the fields."""
    rows: list[tuple[str, str, object]] = []
    for name, info in Settings.model_fields.items():
        if _is_part(info.annotation):
            rows += [(env_name(f"{name}.{sub}"), f"{name}.{sub}", sub_info.default)
                     for sub, sub_info in info.annotation.model_fields.items()]
        else:
            rows.append((env_name(name), name, info.default))
    return rows


def environment_value(name: str) -> Any:
    """One setting as this process's environment gives it (its variable, else its default).

    For code that runs without a settings object at hand, such as a model session in a
    worker process; the value is checked as :class:`Settings` checks it.
    """
    variable = env_name(name)
    raw = os.environ.get(variable)
    value: Any = Settings.from_env({variable: raw} if raw else {})
    for part in name.split("."):
        value = getattr(value, part)
    return value


def model_cache_dir() -> Path:
    """Where converted models are kept: ``VULTUS_CACHE_DIR``, else the user cache directory."""
    explicit = environment_value("cache_dir")
    if explicit is not None:
        return explicit
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vultus"
