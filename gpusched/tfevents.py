"""TensorBoard event files, written with the standard library only (no tensorflow, no
tensorboard, no protobuf package).

An event file is a sequence of TFRecords: ``uint64 length``, ``uint32 masked_crc32c(length)``,
the bytes, ``uint32 masked_crc32c(bytes)``, little-endian, each record one serialized
``tensorboard.Event``. The few protobuf messages needed (Event, Summary, SummaryMetadata and
the HParams plugin's messages in ``tb_hparams.py``) are encoded by hand with :class:`Message`;
field numbers are those of TensorBoard's ``event.proto``/``summary.proto``.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from pathlib import Path
from typing import BinaryIO

__all__ = ["crc32c", "masked_crc32c", "Message", "EventWriter", "summary_event",
           "scalar_value", "FILE_VERSION"]

FILE_VERSION = "brain.Event:2"
_CRC_POLY = 0x82F63B78  # Castagnoli, reflected
_MASK_DELTA = 0xA282EAD8


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``: ``crc32c(b"123456789") == 0xE3069283``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: the CRC rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]  # field keys and small values: most varints


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    value &= (1 << 64) - 1  # negative int64s travel as ten bytes, as protobuf does
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _as_float(value: float) -> float:
    """``value`` as a float; an int beyond a double's range as ±inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


class Message:
    """A protobuf message being encoded: add fields in any order, then :meth:`encode`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def _key(self, number: int, wire: int) -> None:
        self._parts.append(_varint(number << 3 | wire))

    def varint(self, number: int, value: int) -> Message:
        """An int32/int64/enum/bool field."""
        self._key(number, 0)
        self._parts.append(_varint(int(value)))
        return self

    def double(self, number: int, value: float) -> Message:
        """A ``double`` field (an int too large for a double as ±inf)."""
        self._key(number, 1)
        self._parts.append(struct.pack("<d", _as_float(value)))
        return self

    def single(self, number: int, value: float) -> Message:
        """A ``float`` field: a number beyond float32's range (a diverging loss, 4.1e39) as
        ±inf, as TensorFlow's own cast does; NaN and infinities as they are."""
        self._key(number, 5)
        value = _as_float(value)
        try:
            packed = struct.pack("<f", value)
        except OverflowError:  # finite, but past float32's largest (about 3.4e38)
            packed = struct.pack("<f", math.copysign(math.inf, value))
        self._parts.append(packed)
        return self

    def raw(self, number: int, value: bytes) -> Message:
        """A ``bytes`` field."""
        self._key(number, 2)
        self._parts += [_varint(len(value)), value]
        return self

    def string(self, number: int, value: str) -> Message:
        """A ``string`` field (a lone surrogate, which UTF-8 cannot hold, as ``\\udxxx``)."""
        return self.raw(number, value.encode("utf-8", "backslashreplace"))

    def message(self, number: int, value: Message) -> Message:
        """A nested message field."""
        return self.raw(number, value.encode())

    def encode(self) -> bytes:
        """The encoded message."""
        return b"".join(self._parts)


def scalar_value(tag: str, value: float) -> Message:
    """A ``Summary.Value`` holding ``simple_value`` (what the scalars dashboard reads)."""
    return Message().string(1, tag).single(2, value)


def summary_event(values: list[Message], *, step: int, wall_time: float) -> Message:
    """An ``Event`` with a ``Summary`` of ``values``."""
    summary = Message()
    for v in values:
        summary.message(1, v)
    return Message().double(1, wall_time).varint(2, step).message(5, summary)


class EventWriter:
    """Writes one ``events.out.tfevents.*`` file in ``folder`` (made if missing)."""

    def __init__(self, folder: Path, *, wall_time: float | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time() if wall_time is None else wall_time
        self.path = folder / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self._fh: BinaryIO = open(self.path, "wb")  # noqa: SIM115  # closed by close()
        self.write(Message().double(1, now).string(3, FILE_VERSION))

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, event: Message) -> None:
        """Append one event as a TFRecord."""
        data = event.encode()
        length = struct.pack("<Q", len(data))
        self._fh.write(length + struct.pack("<I", masked_crc32c(length)) + data
                       + struct.pack("<I", masked_crc32c(data)))

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()
