"""The model file format: msgpack, versioned, checksummed, never executable.

Layout (all msgpack, no pickle, no extension types)::

    {"magic": "scanner-ube-model", "format_version": 1,
     "sha256": <hex digest of payload>, "payload": <bytes: msgpack map>}

    payload = {"feature_settings": {...}, "linear": {"dimension", "bias", "nnz",
               "value_dtype", "mask", "values"}, "calibration": {"method", "a", "b"},
               "training": {...}, "learned": <bytes>}

``mask`` is a bitmap of the non-zero weight positions (``numpy.packbits``, little bit
order, zlib); ``values`` are the weights at those positions in position order
(little-endian float16 or float32, stored byte plane by byte plane, zlib). Decoding
validates every field and bounds every size, so a corrupt, truncated or foreign file
raises :class:`~scanner.ml.errors.ModelError` naming the file instead of yielding a
half-valid model.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from typing import Any

import msgpack
import numpy as np

from scanner.ml.errors import ModelError

MAGIC = "scanner-ube-model"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 256 << 20
_MAGIC_KEY = b"\xa5magic"  # every model file starts with a small map whose first key is this
_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}


def pack_weights(weights: np.ndarray, value_dtype: str = "float16") -> dict[str, Any]:
    """Sparse, compressed form of a dense weight vector (zeros are not stored)."""
    dtype = _DTYPES[value_dtype]
    stored = weights.astype(dtype)
    mask = stored != 0
    return {
        "dimension": int(weights.size),
        "nnz": int(np.count_nonzero(mask)),
        "value_dtype": value_dtype,
        "mask": zlib.compress(np.packbits(mask, bitorder="little").tobytes(), 6),
        "values": zlib.compress(_planes(stored[mask]), 6),
    }


def unpack_weights(linear: dict[str, Any], name: str) -> np.ndarray:
    """Dense float32 weights from :func:`pack_weights` output, fully validated."""
    dimension = _int(linear, "dimension", name, 1 << 10, 1 << 24)
    if dimension & (dimension - 1):
        raise ModelError(f"{name}: weight dimension {dimension} is not a power of two")
    nnz = _int(linear, "nnz", name, 0, dimension)
    dtype_name = linear.get("value_dtype")
    if dtype_name not in _DTYPES:
        raise ModelError(f"{name}: unsupported weight type {dtype_name!r}")
    dtype = _DTYPES[dtype_name]
    bits = np.frombuffer(_inflate(linear, "mask", name, dimension // 8), dtype=np.uint8)
    mask = np.unpackbits(bits, bitorder="little").astype(bool)
    if int(np.count_nonzero(mask)) != nnz:
        raise ModelError(f"{name}: weight mask does not match the declared count")
    planes = _inflate(linear, "values", name, nnz * dtype.itemsize)
    values = np.frombuffer(planes, dtype=np.uint8).reshape(dtype.itemsize, nnz).T
    values = np.ascontiguousarray(values).view(dtype).ravel()
    if not np.all(np.isfinite(values)) or (nnz and np.any(values == 0)):
        raise ModelError(f"{name}: weights contain zeros, NaN or infinity")
    weights = np.zeros(dimension, dtype=np.float32)
    weights[mask] = values.astype(np.float32)
    return weights


def _planes(values: np.ndarray) -> bytes:
    """Little-endian values stored byte plane by byte plane (compresses far better)."""
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(values.size, values.itemsize)
    return np.ascontiguousarray(raw.T).tobytes()


def encode(payload: dict[str, Any]) -> bytes:
    """The complete file contents for a payload map (deterministic for equal input)."""
    body = msgpack.packb(payload, use_bin_type=True)
    return msgpack.packb(
        {
            "magic": MAGIC,
            "format_version": FORMAT_VERSION,
            "sha256": hashlib.sha256(body).hexdigest(),
            "payload": body,
        },
        use_bin_type=True,
    )


def decode(data: bytes, name: str) -> dict[str, Any]:
    """The payload map of a model file, after checking magic, version and checksum."""
    if not data:
        raise ModelError(f"{name}: model file is empty")
    if len(data) < 7 and 0x80 <= data[0] <= 0x8F and _MAGIC_KEY.startswith(data[1:]):
        raise ModelError(f"{name}: model file is truncated or corrupt ({len(data)} bytes)")
    if not (0x80 <= data[0] <= 0x8F and data[1:7] == _MAGIC_KEY):
        raise ModelError(f"{name}: not a scanner spam model (unknown file type)")
    outer = _unpack(data, name, "file")
    if not isinstance(outer, dict) or outer.get("magic") != MAGIC:
        raise ModelError(f"{name}: not a scanner spam model (wrong magic)")
    version = outer.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{name}: model format version {version!r} is not supported "
            f"(this scanner reads version {FORMAT_VERSION}); retrain or upgrade"
        )
    body = outer.get("payload")
    digest = outer.get("sha256")
    if not isinstance(body, bytes) or not isinstance(digest, str):
        raise ModelError(f"{name}: model file lacks its payload or checksum")
    if hashlib.sha256(body).hexdigest() != digest:
        raise ModelError(f"{name}: checksum mismatch, the model file is corrupt")
    payload = _unpack(body, name, "payload")
    if not isinstance(payload, dict):
        raise ModelError(f"{name}: model payload is not a map")
    for key in ("feature_settings", "linear", "calibration", "training"):
        if not isinstance(payload.get(key), dict):
            raise ModelError(f"{name}: model payload lacks {key!r}")
    return payload


def finite(section: dict[str, Any], key: str, name: str) -> float:
    """A finite float field of a payload section, or a :class:`ModelError`."""
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(f"{name}: field {key!r} must be a number")
    if not math.isfinite(float(value)):
        raise ModelError(f"{name}: field {key!r} is not finite")
    return float(value)


def _int(section: dict[str, Any], key: str, name: str, low: int, high: int) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelError(f"{name}: field {key!r} must be an integer in [{low}, {high}]")
    return value


def _inflate(section: dict[str, Any], key: str, name: str, expected: int) -> bytes:
    blob = section.get(key)
    if not isinstance(blob, bytes):
        raise ModelError(f"{name}: field {key!r} must be bytes")
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(blob, expected + 1)
    except zlib.error as exc:
        raise ModelError(f"{name}: field {key!r} is not valid compressed data ({exc})") from exc
    if len(data) != expected or not inflater.eof:
        raise ModelError(f"{name}: field {key!r} has the wrong length")
    return data


def _unpack(data: bytes, name: str, what: str) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=MAX_FILE_BYTES,
            max_str_len=1 << 20,
            max_array_len=1 << 20,
            max_map_len=1 << 16,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise ModelError(f"{name}: trailing data after the model {what}") from exc
    except Exception as exc:
        raise ModelError(f"{name}: model {what} is truncated or corrupt ({exc})") from exc
