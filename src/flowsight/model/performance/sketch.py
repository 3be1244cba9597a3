"""A mergeable quantile sketch for durations (DDSketch: Masson, Rim, Lee, VLDB 2019).

A positive value ``x`` falls in the logarithmic bucket ``ceil(log_gamma(x))``
with ``gamma = (1 + alpha) / (1 - alpha)``; the bucket's representative value
``2 * gamma**i / (gamma + 1)`` is within ``alpha`` relative of every value in
it. So the estimate of any quantile is within ``alpha`` relative of the true
value of the same rank (``sorted(values)[floor(q * (n - 1))]``), whatever the
distribution, and two sketches merge by adding bucket counts.

Memory is bounded by ``max_buckets``: past it the lowest buckets collapse into
one. Durations care about their slow tail, so the low quantiles lose accuracy
first and the high ones keep it. Values at or below ``min_value`` (zero and
clock noise) are counted in a zero bucket. The exact minimum and maximum are
kept, and every estimate is clamped to them.

:meth:`QuantileSketch.to_bytes` gives a compact, versioned encoding for
storing a sketch per workflow or step.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from math import ceil, log

import msgspec

__all__ = ["DEFAULT_QUANTILES", "QuantileSketch"]

DEFAULT_QUANTILES = (0.5, 0.9, 0.95, 0.99)

_INF = math.inf
_LN_FLOAT_MAX = math.log(1.7976931348623157e308)

# Encoding: a header (magic, then a version byte) and a msgpack array. The
# header lets from_bytes tell garbage from a sketch of a newer version before
# it tries to decode anything.
_MAGIC = b"QS"
_VERSION = 1


class _WireV1(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    alpha: float
    max_buckets: int
    min_value: float
    count: int
    sum: float
    min: float
    max: float
    zero_count: int
    floor: int
    # Ascending bucket keys as the first key then the gaps to the next: the
    # gaps are mostly 1, one msgpack byte each.
    key_steps: list[int]
    counts: list[int]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_WireV1)


class QuantileSketch:
    """Quantiles of a stream of non-negative values (seconds), within ``alpha``
    relative error, in at most ``max_buckets`` buckets.

    Raises:
        ValueError: ``alpha`` not strictly between 0 and 1, ``max_buckets``
            below 1, or ``min_value`` not a positive finite number.
    """

    __slots__ = (
        "_alpha",
        "_max_buckets",
        "_min_value",
        "_ln_gamma",
        "_mult",
        "_ln_scale",
        "_bins",
        "_floor",
        "_zero_count",
        "_count",
        "_sum",
        "_min",
        "_max",
    )

    def __init__(self, alpha: float = 0.005, max_buckets: int = 2048, *, min_value: float = 1e-9) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"sketch alpha (relative accuracy) must be between 0 and 1, got {alpha!r}; e.g. 0.005")
        if type(max_buckets) is not int or max_buckets < 1:
            raise ValueError(f"sketch max_buckets must be a positive integer, got {max_buckets!r}")
        if not 0 < min_value < _INF:
            raise ValueError(f"sketch min_value must be a positive finite number, got {min_value!r}")
        self._alpha = float(alpha)
        self._max_buckets = max_buckets
        self._min_value = float(min_value)
        self._ln_gamma = math.log1p(2 * alpha / (1 - alpha))
        self._mult = 1 / self._ln_gamma
        # log of 2 / (gamma + 1): a bucket's value is exp(key * ln_gamma + ln_scale).
        self._ln_scale = math.log1p(-alpha)
        self._bins: dict[int, int] = {}
        # Keys below the floor are counted in the floor's bucket: the lowest
        # possible key until the first collapse, the lowest kept key after.
        self._floor = self._key(self._min_value)
        self._zero_count = 0
        self._count = 0
        self._sum = 0.0
        self._min: float = _INF
        self._max: float = -_INF

    # -- adding ---------------------------------------------------------------

    def add(self, value: float, count: int = 1) -> None:
        """Count ``value`` (``count`` times).

        Raises:
            ValueError: ``value`` negative, NaN or infinite, or ``count`` not a
                positive integer.
        """
        if count != 1 and (type(count) is not int or count < 1):
            raise ValueError(f"sketch count must be a positive integer, got {count!r}")
        if value > self._min_value:
            if value == _INF:
                raise ValueError("sketch values must be finite, got inf")
            key = ceil(log(value) * self._mult)  # _key() inlined: add() is the hot path
            if key < self._floor:
                key = self._floor
            bins = self._bins
            try:
                bins[key] += count
            except KeyError:
                bins[key] = count
                if len(bins) > self._max_buckets:
                    self._collapse()
        elif value >= 0:
            self._zero_count += count
        else:
            raise ValueError(f"sketch values must be non-negative durations, got {value!r}")
        self._count += count
        self._sum += value * count
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s values to this sketch; ``other`` is unchanged. The
        result equals the sketch of both streams (same buckets, same
        quantiles) when both have the same ``max_buckets``; this sketch's
        ``max_buckets`` is kept.

        Raises:
            ValueError: the sketches differ in ``alpha`` or ``min_value``.
        """
        if other._alpha != self._alpha or other._min_value != self._min_value:
            raise ValueError(
                f"cannot merge sketches of different accuracy: alpha {self._alpha} / min_value "
                f"{self._min_value} here, alpha {other._alpha} / min_value {other._min_value} in the other; "
                "build both with the same parameters"
            )
        bins = self._bins
        for key, n in other._bins.items():
            bins[key] = bins.get(key, 0) + n
        # Each side already counted everything below its floor in its floor's
        # bucket; the higher floor wins, and it is a key of one of the sides.
        floor = max(self._floor, other._floor)
        if floor > self._floor:
            self._floor = floor
            below = [k for k in bins if k < floor]
            bins[floor] += sum(bins.pop(k) for k in below)
        self._collapse()
        self._zero_count += other._zero_count
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def _collapse(self) -> None:
        """Fold the lowest buckets into one until at most ``max_buckets`` remain."""
        bins = self._bins
        excess = len(bins) - self._max_buckets
        if excess <= 0:
            return
        *gone, floor = heapq.nsmallest(excess + 1, bins)
        bins[floor] += sum(bins.pop(k) for k in gone)
        self._floor = floor

    def _key(self, value: float) -> int:
        return ceil(log(value) * self._mult)

    def _value(self, key: int) -> float:
        exponent = key * self._ln_gamma + self._ln_scale
        # The top bucket's value can lie past the largest float; the clamp to
        # max in quantile() brings it back.
        return math.exp(exponent) if exponent < _LN_FLOAT_MAX else _INF

    # -- reading --------------------------------------------------------------

    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def max_buckets(self) -> int:
        return self._max_buckets

    @property
    def count(self) -> int:
        """How many values were added."""
        return self._count

    @property
    def sum(self) -> float:
        return self._sum

    @property
    def min(self) -> float | None:
        """The exact smallest value; None when empty."""
        return float(self._min) if self._count else None

    @property
    def max(self) -> float | None:
        """The exact largest value; None when empty."""
        return float(self._max) if self._count else None

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(alpha={self._alpha}, max_buckets={self._max_buckets}, "
            f"count={self._count}, buckets={len(self._bins) + (self._zero_count > 0)})"
        )

    def bucket_counts(self) -> list[tuple[float, int]]:
        """Each non-empty bucket's representative value and count, ascending;
        the zero bucket, when used, first as ``(0.0, n)``."""
        out = [(0.0, self._zero_count)] if self._zero_count else []
        out.extend((self._value(k), self._bins[k]) for k in sorted(self._bins))
        return out

    def quantile(self, q: float) -> float | None:
        """The value of rank ``floor(q * (count - 1))`` within ``alpha``
        relative (the exact min for 0, the exact max for 1); None when empty.

        Raises:
            ValueError: ``q`` outside [0, 1].
        """
        return self.quantiles((q,))[q]

    def quantiles(self, qs: Iterable[float] = DEFAULT_QUANTILES) -> dict[float, float | None]:
        """``{q: quantile(q)}`` for each of ``qs``, in one pass over the buckets.

        Raises:
            ValueError: a ``q`` outside [0, 1].
        """
        wanted = list(qs)
        for q in wanted:
            if not 0 <= q <= 1:
                raise ValueError(f"quantile must be between 0 and 1, got {q!r}; e.g. 0.99 for p99")
        if not self._count:
            return dict.fromkeys(wanted)
        lo, hi = float(self._min), float(self._max)
        out: dict[float, float | None] = {}
        # The estimate of rank r is the first bucket whose cumulative count
        # exceeds r (DDSketch); walk the buckets once for all qs in rank order.
        ranks = sorted((q * (self._count - 1), q) for q in wanted if 0 < q < 1)
        cumulative = self._zero_count
        keys = iter(sorted(self._bins))
        estimate = 0.0
        for rank, q in ranks:
            while cumulative <= rank:
                key = next(keys)
                cumulative += self._bins[key]
                estimate = self._value(key)
            out[q] = min(max(estimate, lo), hi)
        for q in wanted:
            if q == 0:
                out[q] = lo
            elif q == 1:
                out[q] = hi
        return {q: out[q] for q in wanted}

    # -- encoding -------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A compact encoding (header, version, msgpack) for :meth:`from_bytes`."""
        keys = sorted(self._bins)
        steps = [b - a for a, b in zip(keys, keys[1:])]
        wire = _WireV1(
            alpha=self._alpha,
            max_buckets=self._max_buckets,
            min_value=self._min_value,
            count=self._count,
            sum=self._sum,
            min=float(self._min),
            max=float(self._max),
            zero_count=self._zero_count,
            floor=self._floor,
            key_steps=keys[:1] + steps,
            counts=[self._bins[k] for k in keys],
        )
        return _MAGIC + bytes((_VERSION,)) + _encoder.encode(wire)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileSketch:
        """The sketch that :meth:`to_bytes` encoded.

        Raises:
            ValueError: ``data`` is not an encoded sketch, is damaged, or was
                written by a newer flowsight (the message says which).
        """
        if data[:2] != _MAGIC or len(data) < 3:
            raise ValueError(f"not an encoded QuantileSketch: it starts {bytes(data[:8])!r}, not {_MAGIC!r}")
        if data[2] != _VERSION:
            raise ValueError(
                f"QuantileSketch encoding version {data[2]} is not supported (this flowsight reads "
                f"version {_VERSION}); upgrade flowsight to read it"
            )
        try:
            wire = _decoder.decode(data[3:])
            sketch = cls(wire.alpha, wire.max_buckets, min_value=wire.min_value)
        except (msgspec.MsgspecError, ValueError) as exc:
            raise ValueError(f"damaged QuantileSketch encoding: {exc}") from None
        problem = sketch._load(wire)
        if problem:
            raise ValueError(f"damaged QuantileSketch encoding: {problem}")
        return sketch

    def _load(self, wire: _WireV1) -> str | None:
        """Fill this empty sketch from ``wire``; what is inconsistent, if anything."""
        steps, counts = wire.key_steps, wire.counts
        if len(steps) != len(counts):
            return f"{len(steps)} bucket keys but {len(counts)} counts"
        if len(counts) > wire.max_buckets:
            return f"{len(counts)} buckets, more than max_buckets {wire.max_buckets}"
        if any(n < 1 for n in counts) or any(s < 1 for s in steps[1:]):
            return "bucket keys must ascend and counts must be positive"
        keys = [steps[0]] if steps else []
        for s in steps[1:]:
            keys.append(keys[-1] + s)
        lowest, highest = self._floor, self._key(1.7976931348623157e308)
        if not lowest <= wire.floor <= (keys[0] if keys else highest) or (keys and keys[-1] > highest):
            return f"bucket keys {keys[:1]}..{keys[-1:]} or floor {wire.floor} out of range"
        if wire.zero_count < 0 or wire.count != wire.zero_count + sum(counts):
            return f"count {wire.count} is not the sum of the bucket counts"
        if wire.count and not (0 <= wire.min <= wire.max < _INF and wire.sum >= 0):
            return f"min {wire.min}, max {wire.max} or sum {wire.sum} impossible"
        self._bins = dict(zip(keys, counts))
        self._floor = wire.floor
        self._zero_count = wire.zero_count
        self._count = wire.count
        self._sum = wire.sum
        if wire.count:
            self._min, self._max = wire.min, wire.max
        return None
