"""A probe photo as a caller gives it (a path or its bytes): read once, never copied, never fetched."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from .errors import InputPathError
from .policy import refuse_remote

__all__ = ["InBackground", "read_probe"]


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
        raise InputPathError(f"{path} is a folder; search takes one photo.") from None


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
