"""``numpy.random.default_rng(entropy).random(k)``, computed without numpy.

The random search's point for trial ``number`` is, by contract, the first ``k`` doubles of
``numpy.random.default_rng([seed, number])`` (``[seed, number, N, digest]`` after
``resume_from``: ``random_search.draw_entropy``; TPE's and GP's start-up points are the
same). Building that generator takes numpy's ``SeedSequence``, a ``PCG64`` and a ``Generator``
for one or two numbers: 10-20 us alone, but ~0.14 ms of the daemon's event loop per trial in
place (the dispatch benchmark, bench/dispatch.py), where that code is never in the caches. The
same arithmetic on Python integers takes ~0.05 ms there. :func:`unit_draws` gives exactly
numpy's numbers; tests/plugins/test_unit_draws.py compares them over many seeds.

The steps, as numpy 1.17+ implements them (``numpy/random/bit_generator.pyx``, ``pcg64.h``):

1. ``SeedSequence(entropy)``: each integer as 32-bit words, least significant first, mixed into
   a pool of four words by ``hashmix`` / ``mix``; ``generate_state(4, uint64)`` hashes the pool
   out into eight words, read as four little-endian 64-bit words.
2. ``PCG64`` takes the first two as its 128-bit initial state and the last two as its stream
   (``inc = seq << 1 | 1``), and steps twice (``pcg64_srandom_r``).
3. Each double: one step of the 128-bit LCG, the XSL-RR output, ``(out >> 11) * 2**-53``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["unit_draws"]

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_M128 = (1 << 128) - 1
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645
# SeedSequence's hash constants.
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_POOL = 4
_PAIRS = tuple((src, dst) for src in range(_POOL) for dst in range(_POOL) if src != dst)


def _entropy_words(entropy: Iterable[int]) -> list[int]:
    words: list[int] = []
    for value in entropy:
        if value < 0:
            raise ValueError(f"entropy must be non-negative integers (got {value})")
        rest = value
        if rest == 0:
            words.append(0)
        while rest:
            words.append(rest & _M32)
            rest >>= 32
    return words


def _mix_into(pool: list[int], dst: int, value: int, h: int) -> int:
    """``pool[dst] = mix(pool[dst], hashmix(value))``; the hash constant after it."""
    v = (value ^ h) & _M32
    h = (h * _MULT_A) & _M32
    v = (v * h) & _M32
    r = (_MIX_L * pool[dst] - _MIX_R * (v ^ (v >> 16))) & _M32
    pool[dst] = r ^ (r >> 16)
    return h


def unit_draws(entropy: Iterable[int], k: int) -> list[float]:
    """``numpy.random.default_rng(list(entropy)).random(k).tolist()``: ``k`` doubles in
    [0, 1), bit for bit. ``entropy``: non-negative integers (numpy refuses negative ones too).
    """
    ent = _entropy_words(entropy)
    # SeedSequence.mix_entropy: the hashes are written out in line (this is the hot part).
    h = _INIT_A
    pool = []
    for i in range(_POOL):
        v = ((ent[i] if i < len(ent) else 0) ^ h) & _M32
        h = (h * _MULT_A) & _M32
        v = (v * h) & _M32
        pool.append(v ^ (v >> 16))
    for src, dst in _PAIRS:
        v = (pool[src] ^ h) & _M32
        h = (h * _MULT_A) & _M32
        v = (v * h) & _M32
        v ^= v >> 16
        r = (_MIX_L * pool[dst] - _MIX_R * v) & _M32
        pool[dst] = r ^ (r >> 16)
    for src in range(_POOL, len(ent)):  # entropy beyond the pool (numbers of 2**64 and up)
        for dst in range(_POOL):
            h = _mix_into(pool, dst, ent[src], h)
    # SeedSequence.generate_state(4, uint64): eight 32-bit words.
    h = _INIT_B
    w = []
    for i in range(8):
        v = (pool[i % _POOL] ^ h) & _M32
        h = (h * _MULT_B) & _M32
        v = (v * h) & _M32
        w.append(v ^ (v >> 16))
    init_state = ((w[0] | w[1] << 32) << 64) | w[2] | w[3] << 32
    init_seq = ((w[4] | w[5] << 32) << 64) | w[6] | w[7] << 32
    # pcg64_srandom_r: from state 0, step, add the initial state, step.
    inc = ((init_seq << 1) | 1) & _M128
    state = (((inc + init_state) & _M128) * _PCG_MULT + inc) & _M128
    out = []
    for _ in range(k):
        state = (state * _PCG_MULT + inc) & _M128
        x = ((state >> 64) ^ state) & _M64
        rot = state >> 122
        x = ((x >> rot) | (x << (64 - rot))) & _M64
        out.append((x >> 11) * (1.0 / 9007199254740992.0))
    return out
