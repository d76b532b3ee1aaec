"""Probe photos as a caller gives them (paths or bytes): read once, never copied, never fetched.

A search or a rights request takes one probe photo, or several of the same person. Each is held
in memory for the length of the request and decoded and analysed in turn, never two at once, so
the most one request holds is :data:`MAX_PROBES` photos' bytes and one photo's pixels.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

from .errors import InputPathError, ProbeChoiceError
from .policy import refuse_remote

__all__ = ["MAX_PROBES", "InBackground", "Probe", "read_probe", "read_probes"]

#: The most probe photos one search or rights request takes. Recall@10 on the shared faces gains
#: most from the second and third photo (bench/people_probes.py); the bound keeps one request's
#: memory (and the server's upload limit for these routes) a small multiple of one photo's.
MAX_PROBES = 5


@dataclass(frozen=True)
class Probe:
    """One probe photo: its bytes (in memory only), a name for messages, and its sha256 (what is logged)."""

    data: bytes = field(repr=False)
    name: str = "probe"
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())


#: What a caller may give as one probe: its bytes, a path, or a :class:`Probe` already named.
PhotoArg = Union[bytes, bytearray, str, "os.PathLike[str]", Probe]


def read_probe(photo: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    """The probe's bytes and a name for messages; a path is read, never copied."""
    if isinstance(photo, (bytes, bytearray)):
        return bytes(photo), "probe"
    path = Path(photo)
    refuse_remote([str(photo)])
    try:
        return path.read_bytes(), str(photo)
    except FileNotFoundError:
        raise InputPathError(f"The probe photo {path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise InputPathError(f"{path} is a folder; give probe photos one by one.") from None


def read_probes(photos: PhotoArg | Sequence[PhotoArg]) -> list[Probe]:
    """One probe photo or several (of one person), read and named; at most :data:`MAX_PROBES`.

    Refused before any is read: none, or more than ``MAX_PROBES``. Refused after: the same
    photo twice (it would count twice in the fused scores and in "probe faces used").
    Several photos given as bytes are named "probe photo 1", "probe photo 2", ...
    """
    single = isinstance(photos, (bytes, bytearray, str, os.PathLike, Probe))
    items: list[PhotoArg] = [photos] if single else list(photos)  # type: ignore[list-item]
    if not items:
        raise ProbeChoiceError("No probe photo was given; give one photo of the person, or several of them.")
    if len(items) > MAX_PROBES:
        raise ProbeChoiceError(
            f"{len(items)} probe photos were given; at most {MAX_PROBES} are searched together as one person. "
            f"Choose the {MAX_PROBES} clearest photos of the face."
        )
    probes: list[Probe] = []
    for number, item in enumerate(items, 1):
        if isinstance(item, Probe):
            probes.append(item)
            continue
        data, name = read_probe(item)
        probes.append(Probe(data, f"probe photo {number}" if name == "probe" and len(items) > 1 else name))
    seen: dict[str, str] = {}
    for probe in probes:
        if probe.sha256 in seen:
            raise ProbeChoiceError(f"{probe.name} is the same photo as {seen[probe.sha256]}; give each probe photo once.")
        seen[probe.sha256] = probe.name
    return probes


class InBackground:
    """Runs ``work`` in a thread; :meth:`result` waits for it and re-raises its error."""

    def __init__(self, work: Callable[[], object]):
        self._value: object = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = work()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller in result()
                self._error = exc

        self._thread = threading.Thread(target=run, name="vultus-index", daemon=True)
        self._thread.start()

    def result(self):  # noqa: ANN201 - whatever work returned
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
