"""Bytes on the CKKS wire: SEAL objects to and from bytes, and the message framing.

A message is a sequence of frames, each an 8-byte little-endian length and its bytes. Frame 0 is
a small JSON header; the rest are SEAL objects as SEAL serializes them (with its own
compression). TenSEAL's SEAL bindings (``tenseal.sealapi``) save and load only through file
paths, so bytes pass through one private scratch file per process and thread.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
from typing import Any

_LENGTH = struct.Struct("<Q")
_scratch: tempfile.TemporaryDirectory | None = None


def _scratch_path() -> str:
    global _scratch
    if _scratch is None:  # in memory where the system offers it: every epoch reloads each input
        _scratch = tempfile.TemporaryDirectory(prefix="smule-ckks-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    return os.path.join(_scratch.name, f"{os.getpid()}-{threading.get_ident()}")


def seal_bytes(obj: Any) -> bytes:
    """Serialize a SEAL object (ciphertext, key, parameters, or a seeded ``Serializable``)."""
    path = _scratch_path()
    obj.save(path)
    with open(path, "rb") as file:
        return file.read()


def seal_load(obj: Any, data: bytes | memoryview, *context: Any) -> Any:
    """Load ``data`` into the empty SEAL object ``obj`` (keys and ciphertexts need the SEAL context)."""
    path = _scratch_path()
    with open(path, "wb") as file:
        file.write(data)
    obj.load(*context, path)
    return obj


def pack(header: dict[str, Any], frames: list[bytes]) -> bytes:
    parts = [json.dumps(header, sort_keys=True).encode(), *frames]
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)


def unpack(data: bytes) -> tuple[dict[str, Any], list[memoryview]]:
    """Split a message into its header and frames (views into ``data``, nothing copied)."""
    view, frames, at = memoryview(data), [], 0
    while at < len(view):
        (length,) = _LENGTH.unpack_from(view, at)
        frames.append(view[at + _LENGTH.size : at + _LENGTH.size + length])
        at += _LENGTH.size + length
    return json.loads(bytes(frames[0])), frames[1:]


def packed_size(header: dict[str, Any], frame_bytes: int, frame_count: int) -> int:
    """``len(pack(header, frames))`` for ``frame_count`` frames of ``frame_bytes`` in all, without building them."""
    return len(json.dumps(header, sort_keys=True).encode()) + frame_bytes + _LENGTH.size * (1 + frame_count)
