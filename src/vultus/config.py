"""Typed settings for one Vultus deployment, read from arguments and ``VULTUS_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import SettingsError

__all__ = ["Settings", "DEFAULT_DATA_DIR"]

DEFAULT_DATA_DIR = Path("vultus-data")
ENV_PREFIX = "VULTUS_"


@dataclass(frozen=True)
class Settings:
    """Everything that can be tuned, with the defaults a newcomer should get.

    Each field can be set from the environment as ``VULTUS_<FIELD NAME IN CAPITALS>``
    (the data directory as ``VULTUS_DATA``, as on the command line); explicit keyword
    arguments to :meth:`from_env` win over the environment.
    """

    #: Folder holding the database, the blob copies and the vector index.
    data_dir: Path = DEFAULT_DATA_DIR
    #: Key file with the encryption and signing keys; None means ``DATA/keys.json``.
    key_file: Path | None = None
    #: Registered detector name (``yunet``, ``hog`` or ``cnn``), or the path of an SCRFD-style ONNX file.
    detector: str = "yunet"
    #: Registered embedder name, or the path of an ArcFace-style ONNX file; None means the
    #: one the gallery was built with (``dlib-resnet-v1`` for a new gallery).
    embedder: str | None = None
    #: Ingest worker processes; 0 means one per CPU core.
    workers: int = 0
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
    threshold: float | None = field(default=None)
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
    #: Seconds the server waits for more of a request body before answering 408 (a body
    #: must also keep up 16 KiB/s after that allowance); see vultus.server.limits.
    body_timeout: float = 30.0
    #: Most photos in one ingest upload; the body limit of an upload is this many photos.
    max_batch_photos: int = 50
    #: Reverse proxies whose X-Forwarded-For the server believes, comma-separated addresses
    #: or CIDR ranges; None means the client is always the socket's peer.
    trusted_proxies: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> "Settings":
        """Build settings from ``VULTUS_*`` variables, then apply non-None ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def with_(self, **changes: object) -> "Settings":
        """Return a copy with some fields changed and validated."""
        settings = replace(self, **{k: v for k, v in changes.items() if v is not None})
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`SettingsError` for values that cannot work."""
        if not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.key_file is not None and not isinstance(self.key_file, Path):
            object.__setattr__(self, "key_file", Path(self.key_file))
        if self.workers < 0:
            raise SettingsError(f"workers must be 0 (one per core) or more, not {self.workers}.")
        if self.max_pixels < 1:
            raise SettingsError("max_pixels must be a positive number of pixels.")
        if self.max_decode_mb < 64:
            raise SettingsError(
                f"max_decode_mb must be at least 64 (MiB of memory for one decode), not {self.max_decode_mb}."
            )
        if self.detect_size is not None and not 160 <= self.detect_size <= 8000:
            raise SettingsError(
                f"detect_size must be between 160 and 8000 pixels, not {self.detect_size}."
            )
        if self.ivf_threshold < 0:
            raise SettingsError(f"ivf_threshold must be 0 (always exact) or a number of faces, not {self.ivf_threshold}.")
        if self.top < 1:
            raise SettingsError(f"top must be at least 1, not {self.top}.")
        if self.min_face_size < 20:
            raise SettingsError(
                f"min_face_size must be at least 20 pixels (no usable template is smaller), not {self.min_face_size}."
            )
        if self.rights_threshold is not None and not 0.0 < self.rights_threshold <= 1.0:
            raise SettingsError(
                f"rights_threshold is a similarity between 0 and 1, not {self.rights_threshold}."
            )
        if self.actor is not None and not self.actor.strip():
            raise SettingsError("The actor may not be blank: every action is recorded under a name.")
        if not 0.1 <= self.body_timeout <= 3600:
            raise SettingsError(f"body_timeout is in seconds, from 0.1 to 3600, not {self.body_timeout}.")
        if not 1 <= self.max_batch_photos <= 10_000:
            raise SettingsError(f"max_batch_photos must be from 1 to 10000, not {self.max_batch_photos}.")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise SettingsError(
                f"threshold is a similarity between 0 and 1, not {self.threshold}."
            )

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


def env_name(field_name: str) -> str:
    """The environment variable that sets a field (``data_dir`` is ``VULTUS_DATA``)."""
    return ENV_PREFIX + ("DATA" if field_name == "data_dir" else field_name.upper())


def _parse(name: str, kind: object, raw: str) -> object:
    """Convert one environment string to the field's type, with a clear error."""
    text = str(kind)
    try:
        if "bool" in text:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "Path" in text:
            return Path(raw)
        if "float" in text:
            return float(raw)
        if "int" in text:
            return int(raw)
    except ValueError:
        raise SettingsError(
            f"{env_name(name)}={raw!r} is not a valid {text.split(' ')[0]}; "
            "fix or unset the variable."
        ) from None
    return raw
