"""Synthetic stand-ins for the built-in datasets, written in their raw schemas.

`synth` writes a CSV file whose header and cell spellings are those of the dataset's raw
exports, so that everything downstream (ingest, training, scoring) runs on it unchanged,
and a sidecar `<file>.synthetic.json` saying how it was made. Output is deterministic
for a seed and streamed in chunks, so memory stays bounded at any row count.

- **CICIoV2024**: a CAN-bus simulation. Benign traffic is the periodic schedule of a
  car's ECUs: each arbitration id repeats at its own period (5 ms to 500 ms) with a
  fixed payload, rolling counters, a checksum byte or slowly varying signals; ids,
  periods and payloads follow the benign capture of CICIoV2024 (Neto et al., 2024).
  Attacks are injected as bursts: DoS floods of high-priority frames (id 291 with random
  nibbles, as in the capture, and id 0), and spoofed GAS, RPM, SPEED and STEERING_WHEEL
  frames with the ids and payloads of the capture's spoofing files.
- **Edge-IIoTset**: packets whose class counts follow the published counts of the
  curated dataset (Ferrag et al., IEEE Access 2022) scaled to the requested rows. Each
  class draws a protocol mix (ARP, ICMP, TCP, HTTP, UDP, DNS, MQTT, Modbus) and
  class-dependent field distributions that overlap between classes, so a model can learn
  them but no single column gives the class away. Cells keep the raw files' quirks:
  numbers written `0`, `0.0` or `0x…`, `frame.time` padded with spaces, `Attack_label`
  sometimes `1.0`, and Fingerprinting often spelled `OS_Fingerprinting`.

Synthetic data exercise the pipeline; they say nothing about detection performance on
real traffic.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from iids.datasets.ciciov2024 import ciciov2024
from iids.datasets.edge_iiotset import COLUMNS as EDGE_COLUMNS
from iids.datasets.edge_iiotset import PUBLISHED_COUNTS

logger = logging.getLogger(__name__)

SYNTH_DATASETS = ("ciciov2024", "edge-iiotset")
DEFAULT_SEED = 0
GENERATOR_VERSION = 1
CHUNK_ROWS = 100_000


def synth(
    dataset: str,
    rows: int,
    seed: int,
    output_path: str | os.PathLike[str],
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Write `rows` synthetic rows of `dataset` as a raw CSV file, and its sidecar.

    Args:
        dataset: `ciciov2024` or `edge-iiotset` (`edge_iiotset` is accepted too).
        rows: how many data rows to write; at least one per class.
        seed: the random seed; one seed always gives the same bytes.
        output_path: a directory (the file is named
            `<dataset>_synthetic_<rows>_seed<seed>.csv` inside it) or a file path ending
            in `.csv` or `.csv.gz` whose name contains `synthetic`.
        chunk_rows: rows generated and written per step (bounds memory).

    Returns:
        The sidecar's contents: `path`, `dataset`, `generator`, `seed`, `rows`,
        `class_column`, `class_counts`, `columns`.

    Raises:
        ValueError: an unknown dataset, too few rows, or an output file name without
            `synthetic`.
    """
    name = dataset.replace("_", "-")
    if name not in SYNTH_DATASETS:
        raise ValueError(
            f"synth: unknown dataset {dataset!r}; choose one of {list(SYNTH_DATASETS)}"
        )
    if chunk_rows < 1:
        raise ValueError(f"synth: chunk_rows must be at least 1, got {chunk_rows}")
    spec = _CIC if name == "ciciov2024" else _EDGE
    if rows < len(spec.weights):
        raise ValueError(
            f"synth: rows must be at least {len(spec.weights)} (one per class of "
            f"{name}), got {rows}"
        )
    path = _output_file(output_path, name, rows, seed)

    # Fix the class counts, then stream chunks drawn from what is left of them.
    # TODO(iids): the bytes depend on chunk_rows as well as the seed (each chunk draws
    # its own class mix); derive per-chunk generators from the row offset to lift that.
    counts = allocate(spec.weights, rows, spec.min_rows)
    rng = np.random.default_rng(seed)
    chunks = spec.generate(rng, counts, chunk_rows)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    written = _write_csv(tmp, spec.columns, chunks)
    os.replace(tmp, path)
    assert written == rows, f"wrote {written} rows, expected {rows}"

    sidecar = {
        "path": str(path),
        "dataset": name,
        "generator": f"iids.synth/{name} v{GENERATOR_VERSION}",
        "seed": seed,
        "rows": rows,
        "class_column": spec.class_column,
        "class_counts": counts,
        "columns": list(spec.columns),
    }
    with open(f"{path}.synthetic.json", "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=2)
    logger.info("wrote %d synthetic %s rows to %s", rows, name, path)
    return sidecar


def allocate(weights: dict[str, float], rows: int, min_rows: int) -> dict[str, int]:
    """Split `rows` among classes in proportion to `weights`, each class at least
    `min(min_rows, rows // classes)` rows; the largest class gives up the difference.

    Returns:
        Row counts per class, in the order of `weights`, summing to `rows`.
    """
    names = list(weights)
    share = np.array([weights[n] for n in names], dtype=np.float64)
    ideal = share / share.sum() * rows
    counts = np.floor(ideal).astype(np.int64)

    # Largest remainders first, ties in class order.
    short = rows - int(counts.sum())
    order = np.argsort(-(ideal - counts), kind="stable")
    counts[order[:short]] += 1

    floor = min(min_rows, rows // len(names))
    deficit = np.maximum(floor - counts, 0)
    counts += deficit
    counts[int(np.argmax(counts))] -= int(deficit.sum())
    return {n: int(c) for n, c in zip(names, counts, strict=True)}


# -- output ----------------------------------------------------------------------------


def _output_file(output_path: str | os.PathLike[str], name: str, rows: int, seed: int):
    """The CSV file to write: inside a directory, or the file named."""
    text = os.fspath(output_path)
    path = Path(text)
    is_file = text.lower().endswith((".csv", ".csv.gz"))
    if not is_file or path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        stem = name.replace("-", "_")
        return path / f"{stem}_synthetic_{rows}_seed{seed}.csv"
    if "synthetic" not in path.name.lower():
        raise ValueError(
            f"synth: output file name {path.name!r} must contain 'synthetic' so that "
            f"synthetic rows are never mistaken for a capture; e.g. "
            f"{path.with_name('synthetic_' + path.name)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_csv(path: Path, columns: tuple[str, ...], chunks: Iterator[pa.Table]) -> int:
    """Write the header and every chunk, unquoted as raw exports are; return rows."""
    raw = open(path, "wb")  # noqa: SIM115  (closed below, after the gzip layer)
    out: Any = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if _gz(path) else raw
    written = 0
    try:
        out.write((",".join(columns) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        for table in chunks:
            buf = io.BytesIO()
            pacsv.write_csv(table.select(list(columns)), buf, options)
            out.write(buf.getvalue())
            written += table.num_rows
    finally:
        out.close()
        raw.close()
    return written


def _gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz") or ".csv.gz.tmp-" in path.name.lower()


def _chunk_counts(
    rng: np.random.Generator, counts: dict[str, int], chunk_rows: int
) -> Iterator[np.ndarray]:
    """Per-chunk class counts drawn without replacement from the totals."""
    left = np.array(list(counts.values()), dtype=np.int64)
    while left.sum() > 0:
        take = min(chunk_rows, int(left.sum()))
        part = rng.multivariate_hypergeometric(left, take)
        left -= part
        yield part


# -- text helpers ----------------------------------------------------------------------


def _ints(values: np.ndarray) -> pa.Array:
    """Whole numbers as `12`."""
    return pc.cast(pa.array(values.astype(np.int64)), pa.string())


def _floats(values: np.ndarray, zero_as_int: np.ndarray | None = None) -> pa.Array:
    """Whole numbers as raw captures write floats: `12.0`; some zeros as `0`."""
    text = pc.binary_join_element_wise(_ints(values), ".0", "")
    if zero_as_int is not None:
        text = pc.if_else(pa.array(zero_as_int & (values == 0)), "0", text)
    return text


_HEX16 = pa.array([f"0x{v:08x}" for v in range(1 << 16)])


def _hex(values: np.ndarray) -> pa.Array:
    """16-bit values as captures write checksums and flags: `0` or `0x00002ea2`."""
    text = pc.take(_HEX16, pa.array(values.astype(np.int64)))
    return pc.if_else(pa.array(values == 0), "0", text)


def _fraction_us(values_us: np.ndarray) -> pa.Array:
    """Microseconds as seconds with six decimals: `0.000123`."""
    whole = values_us // 1_000_000
    frac = pc.utf8_lpad(_ints(values_us % 1_000_000), 6, "0")
    return pc.binary_join_element_wise(_ints(whole), frac, ".")


def _pick(vocab: list[str], codes: np.ndarray) -> pa.Array:
    """Cells chosen by code from a small vocabulary."""
    return pc.take(pa.array(vocab, pa.string()), pa.array(codes.astype(np.int64)))


def _draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row from per-row probabilities, shape (N, K) -> (N,)."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1)


# -- CICIoV2024: a CAN-bus simulation --------------------------------------------------

_CIC_CLASSES = ("BENIGN", "DoS", "GAS", "RPM", "SPEED", "STEERING_WHEEL")
_CIC_WEIGHTS = {
    "BENIGN": 1_223_737,
    "DoS": 74_663,
    "GAS": 9_991,
    "RPM": 54_900,
    "SPEED": 24_951,
    "STEERING_WHEEL": 19_977,
}
_CIC_LABELS = {
    "BENIGN": ("BENIGN", "BENIGN"),
    "DoS": ("ATTACK", "DoS"),
    "GAS": ("ATTACK", "SPOOFING"),
    "RPM": ("ATTACK", "SPOOFING"),
    "SPEED": ("ATTACK", "SPOOFING"),
    "STEERING_WHEEL": ("ATTACK", "SPOOFING"),
}

# Benign ECUs: (id, period_ms, payload, dynamics). Dynamics change bytes per frame:
# ("c", byte, start, step, count): a rolling counter, start + step * (k % count);
# ("x", byte): a checksum, 0xFF minus the low byte of id + the other bytes;
# ("s", byte, low, high, period_ms): a signal drifting between low and high.
_ECUS: tuple[tuple[int, int, tuple[int, ...], tuple[tuple, ...]], ...] = (
    (535, 5, (127, 255, 127, 255, 127, 255, 127, 255), ()),
    (359, 5, (0, 128, 0, 0, 0, 1, 227, 0), ()),
    (516, 5, (192, 0, 125, 0, 0, 0, 0, 0), ()),
    (119, 10, (255, 255, 15, 255, 127, 255, 255, 255), ()),
    (
        125,
        10,
        (0, 0, 255, 0, 0, 63, 255, 255),
        (("c", 2, 255, -1, 16), ("c", 3, 0, 16, 16)),
    ),
    (531, 10, (255, 255, 8, 127, 47, 7, 255, 80), ()),
    (532, 10, (0, 0, 0, 0, 0, 0, 255, 0), (("c", 6, 255, -1, 16), ("c", 7, 0, 16, 16))),
    (65, 10, (96, 0, 0, 0, 0, 0, 0, 0), ()),
    (936, 10, (1, 0, 39, 16, 0, 0, 0, 0), ()),
    (118, 10, (62, 128, 66, 128, 15, 255, 0, 0), ()),
    (534, 10, (0, 0, 0, 0, 195, 0, 0, 0), ()),
    (
        1200,
        10,
        (255, 0, 128, 0, 0, 0, 40, 245),
        (("c", 4, 0, 16, 16), ("s", 6, 24, 40, 20_000), ("x", 7)),
    ),
    (357, 10, (16, 65, 0, 0, 0, 0, 0, 0), ()),
    (
        514,
        10,
        (28, 253, 0, 0, 64, 0, 0, 0),
        (("c", 1, 253, -1, 16), ("c", 2, 0, 8, 16)),
    ),
    (560, 10, (0, 30, 0, 0, 19, 0, 0, 0), ()),
    (1045, 10, (0, 0, 0, 255, 15, 255, 15, 255), (("c", 2, 0, 4, 16), ("x", 3))),
    (71, 10, (100, 44, 169, 92, 86, 74, 0, 0), ()),
    (512, 10, (0, 0, 130, 79, 130, 79, 240, 0), (("s", 3, 79, 80, 4_000),)),
    (1071, 15, (125, 4, 0, 2, 113, 0, 0, 0), ()),
    (369, 15, (16, 108, 0, 0, 0, 0, 0, 0), ()),
    (578, 20, (255, 255, 32, 0, 214, 0, 0, 1), ()),
    (1068, 25, (132, 13, 160, 0, 0, 0, 0, 0), ()),
    (609, 25, (0, 0, 9, 0, 0, 0, 0, 0), ()),
    (1086, 25, (0, 55, 16, 0, 0, 0, 0, 0), ()),
    (1085, 25, (20, 0, 0, 0, 0, 0, 0, 0), ()),
    (1072, 50, (131, 0, 7, 52, 100, 1, 18, 147), (("s", 0, 129, 135, 30_000),)),
    (1076, 50, (36, 0, 20, 0, 15, 255, 2, 96), (("s", 7, 64, 100, 60_000),)),
    (1077, 50, (40, 32, 0, 20, 0, 32, 41, 0), (("s", 3, 16, 92, 45_000),)),
    (1046, 50, (64, 96, 254, 8, 1, 10, 128, 0), (("c", 0, 64, 1, 16), ("x", 2))),
    (1109, 50, (0, 0, 0, 0, 0, 0, 0, 0), ()),
    (342, 50, (186, 0, 0, 0, 0, 0, 0, 0), ()),
    (376, 50, (0, 0, 2, 0, 2, 84, 194, 84), ()),
    (377, 50, (1, 227, 8, 0, 146, 4, 0, 0), ()),
    (610, 50, (0, 0, 0, 0, 0, 0, 0, 0), ()),
    (1057, 50, (6, 0, 21, 0, 0, 0, 0, 0), ()),
    (1069, 50, (0, 3, 255, 0, 0, 0, 240, 0), ()),
    (358, 50, (122, 32, 0, 0, 0, 106, 0, 0), ()),
    (131, 50, (15, 224, 0, 0, 0, 0, 0, 0), ()),
    (806, 50, (1, 160, 3, 255, 1, 208, 0, 200), ()),
    (
        1034,
        100,
        (193, 0, 255, 255, 255, 255, 255, 255),
        (("s", 5, 0, 255, 20_000), ("s", 6, 2, 255, 35_000)),
    ),
    (938, 100, (0, 34, 32, 0, 0, 0, 0, 0), ()),
    (939, 100, (18, 0, 0, 0, 64, 0, 0, 0), ()),
    (950, 125, (8, 0, 0, 0, 0, 0, 0, 0), (("c", 2, 0, 1, 12),)),
    (951, 125, (0, 0, 0, 0, 0, 0, 0, 0), (("c", 2, 0, 1, 4),)),
    (952, 250, (255, 255, 255, 255, 0, 0, 0, 0), ()),
    (949, 250, (255, 253, 255, 253, 255, 253, 255, 253), ()),
    (947, 250, (65, 136, 0, 18, 230, 0, 3, 50), ()),
    (
        817,
        250,
        (192, 0, 231, 49, 10, 0, 0, 2),
        (("s", 2, 228, 232, 60_000), ("c", 3, 0, 1, 256)),
    ),
    (
        132,
        500,
        (0, 0, 0, 76, 16, 0, 12, 0),
        (("c", 5, 0, 1, 60), ("s", 4, 15, 31, 600_000)),
    ),
    (1438, 500, (158, 0, 255, 255, 255, 255, 255, 255), ()),
    (1409, 500, (129, 0, 255, 255, 255, 255, 255, 255), ()),
    (1126, 500, (0, 80, 12, 248, 96, 32, 32, 0), (("s", 1, 76, 140, 30_000), ("x", 7))),
    (862, 500, (0, 192, 0, 20, 160, 104, 0, 0), ()),
    (1125, 500, (255, 252, 255, 252, 255, 254, 255, 252), ()),
)
_CYCLE_MS = 1500  # a common multiple of every period above

# Attack frames as the capture's attack files write them: (id, payload), weight.
_DOS_FRAMES = (
    ((291, (3, 3, 0, 9, 7, 3, 7, 4)), 2),
    ((291, (15, 10, 0, 13, 9, 1, 1, 11)), 2),
    ((291, (7, 14, 1, 5, 13, 0, 11, 11)), 2),
    ((291, (5, 3, 8, 9, 6, 7, 14, 2)), 2),
    ((291, (15, 9, 13, 9, 11, 9, 11, 8)), 2),
    ((291, (10, 11, 2, 12, 5, 13, 1, 14)), 2),
    ((291, (9, 13, 8, 6, 4, 3, 5, 14)), 2),
    ((291, (3, 2, 13, 13, 10, 15, 2, 4)), 2),
    ((291, (8, 3, 11, 4, 6, 0, 12, 3)), 2),
    ((291, (9, 9, 11, 4, 14, 3, 8, 0)), 2),
    ((291, (10, 15, 13, 6, 7, 11, 14, 7)), 1),
    ((291, (9, 8, 4, 5, 3, 1, 7, 15)), 1),
    ((291, (5, 6, 3, 0, 8, 15, 7, 9)), 1),
    ((291, (13, 2, 7, 14, 14, 1, 10, 11)), 1),
    ((291, (11, 11, 10, 1, 11, 11, 8, 5)), 1),
    ((291, (1, 7, 6, 10, 14, 15, 15, 8)), 1),
    ((291, (14, 11, 4, 4, 3, 3, 8, 12)), 1),
    ((291, (1, 5, 9, 7, 0, 11, 15, 4)), 1),
    ((291, (2, 4, 10, 11, 11, 1, 0, 0)), 1),
    ((291, (3, 1, 6, 7, 8, 10, 2, 5)), 1),
    ((291, (0, 0, 0, 0, 0, 0, 0, 0)), 1),
    # The highest priority id, flooding the bus with empty frames.
    ((0, (0, 0, 0, 0, 0, 0, 0, 0)), 3),
)
_SPOOF_FRAMES = {
    "GAS": (
        ((513, (0, 0, 0, 0, 0, 0, 64, 156)), 1),
        ((513, (0, 0, 0, 0, 0, 0, 0, 125)), 1),
    ),
    "RPM": (
        ((476, (2, 61, 23, 19, 0, 0, 0, 0)), 2),
        ((513, (160, 15, 3, 37, 168, 53, 148, 34)), 2),
        ((476, (2, 53, 221, 69, 0, 0, 0, 0)), 1),
        ((513, (64, 31, 2, 35, 24, 5, 138, 34)), 1),
        ((476, (2, 23, 84, 221, 0, 0, 0, 0)), 1),
        ((476, (2, 15, 60, 3, 0, 0, 0, 0)), 1),
        ((513, (6, 28, 6, 63, 6, 42, 2, 41)), 1),
        ((476, (2, 30, 245, 3, 0, 0, 0, 0)), 1),
        ((476, (2, 7, 177, 239, 0, 0, 0, 0)), 1),
    ),
    "SPEED": (
        ((344, (6, 16, 6, 54, 6, 29, 2, 14)), 1),
        ((344, (6, 28, 6, 63, 6, 42, 2, 41)), 1),
        ((344, (6, 12, 6, 51, 6, 26, 2, 54)), 1),
        ((513, (0, 0, 0, 0, 100, 0, 2, 0)), 1),
        ((344, (6, 20, 6, 57, 6, 33, 2, 17)), 1),
    ),
    "STEERING_WHEEL": (
        ((128, (132, 3, 2, 35, 24, 5, 138, 34)), 100),
        ((128, (194, 1, 2, 35, 24, 5, 138, 34)), 100),
        ((128, (0, 0, 0, 0, 0, 0, 0, 0)), 1),
    ),
}
_CIC_FRAMES = {"DoS": _DOS_FRAMES, **_SPOOF_FRAMES}
_RUN_MEAN = {"DoS": 60, "GAS": 12, "RPM": 12, "SPEED": 12, "STEERING_WHEEL": 12}


class _CanBus:
    """The benign schedule, generated one 1.5 s cycle at a time, in time order."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.phase_us = [int(rng.integers(0, p * 1000)) for _, p, _, _ in _ECUS]
        self.signal_phase = rng.random((len(_ECUS), 8)) * 2 * math.pi
        self.cycle = 0
        self.buffer = np.empty((0, 9), dtype=np.int64)

    def take(self, n: int) -> np.ndarray:
        """The next `n` benign frames, shape (n, 9): ID, DATA_0..DATA_7."""
        parts = [self.buffer]
        have = len(self.buffer)
        while have < n:
            frames = self._next_cycle()
            parts.append(frames)
            have += len(frames)
        frames = np.concatenate(parts)
        self.buffer = frames[n:]
        return frames[:n]

    def _next_cycle(self) -> np.ndarray:
        start_ms = self.cycle * _CYCLE_MS
        self.cycle += 1
        times, rows = [], []
        for e, (can_id, period, payload, dynamics) in enumerate(_ECUS):
            per_cycle = _CYCLE_MS // period
            k = np.arange(per_cycle, dtype=np.int64) + (start_ms // period)
            t_us = k * period * 1000 + self.phase_us[e]
            data = np.tile(np.array(payload, dtype=np.int64), (per_cycle, 1))
            for rule in dynamics:
                if rule[0] == "c":
                    _, byte, first, step, count = rule
                    data[:, byte] = (first + step * (k % count)) % 256
                elif rule[0] == "s":
                    _, byte, low, high, period_ms = rule
                    angle = 2 * math.pi * t_us / (period_ms * 1000)
                    level = 0.5 - 0.5 * np.cos(angle + self.signal_phase[e, byte])
                    data[:, byte] = np.rint(low + (high - low) * level)
            for rule in dynamics:
                if rule[0] == "x":
                    byte = rule[1]
                    others = data.sum(axis=1) - data[:, byte]
                    data[:, byte] = 0xFF - ((others + can_id + (can_id >> 8)) & 0xFF)
            times.append(t_us)
            rows.append(np.column_stack([np.full(per_cycle, can_id), data]))
        order = np.argsort(np.concatenate(times), kind="stable")
        return np.concatenate(rows)[order]


def _cic_chunks(
    rng: np.random.Generator, counts: dict[str, int], chunk_rows: int
) -> Iterator[pa.Table]:
    """CAN frames in chunks: the benign schedule with attack bursts spliced in."""
    bus = _CanBus(rng)
    frame_tables = {
        cls: (
            np.array([[fid, *data] for (fid, data), _ in frames], dtype=np.int64),
            np.array([w for _, w in frames], dtype=np.float64),
        )
        for cls, frames in _CIC_FRAMES.items()
    }
    for part in _chunk_counts(rng, counts, chunk_rows):
        # Units: single benign frames and attack bursts, shuffled together.
        unit_class = [np.zeros(part[0], dtype=np.int64)]
        unit_len = [np.ones(part[0], dtype=np.int64)]
        for c in range(1, len(_CIC_CLASSES)):
            if part[c] == 0:
                continue
            runs = max(1, round(part[c] / _RUN_MEAN[_CIC_CLASSES[c]]))
            runs = min(runs, int(part[c]))
            lengths = rng.multinomial(part[c] - runs, np.full(runs, 1 / runs)) + 1
            unit_class.append(np.full(runs, c))
            unit_len.append(lengths)
        classes, lengths = np.concatenate(unit_class), np.concatenate(unit_len)
        order = rng.permutation(len(classes))
        row_class = np.repeat(classes[order], lengths[order])

        # Frames per class, then placed in row order.
        frames = np.empty((len(row_class), 9), dtype=np.int64)
        frames[row_class == 0] = bus.take(int(part[0]))
        for c in range(1, len(_CIC_CLASSES)):
            mask = row_class == c
            if mask.any():
                table, weights = frame_tables[_CIC_CLASSES[c]]
                pick = rng.choice(
                    len(table), size=int(mask.sum()), p=weights / weights.sum()
                )
                frames[mask] = table[pick]

        columns = {"ID": _ints(frames[:, 0])}
        for i in range(8):
            columns[f"DATA_{i}"] = _ints(frames[:, i + 1])
        labels = [_CIC_LABELS[c][0] for c in _CIC_CLASSES]
        categories = [_CIC_LABELS[c][1] for c in _CIC_CLASSES]
        columns["label"] = _pick(labels, row_class)
        columns["category"] = _pick(categories, row_class)
        columns["specific_class"] = _pick(list(_CIC_CLASSES), row_class)
        yield pa.table(columns)


# -- Edge-IIoTset: packets with class-dependent protocol fields ------------------------

_EDGE_CLASSES = tuple(PUBLISHED_COUNTS)
_FAMILIES = ("arp", "icmp", "tcp", "http", "udp", "dns", "mqtt", "modbus")
_FLAGS = np.array([0x02, 0x12, 0x10, 0x18, 0x14, 0x11])  # SYN SYNACK ACK PSH RST FIN

# Per class: protocol mix (over _FAMILIES), TCP flag mix (over _FLAGS), log-mean of
# tcp.len, share of GET among HTTP requests, log-mean of the POST body length, log-mean
# of udp.time_delta in microseconds.
_PROFILES: dict[
    str, tuple[tuple[float, ...], tuple[float, ...], float, float, float, float]
] = {
    "Normal": ((1, 2, 22, 5, 8, 7, 35, 20), (5, 5, 45, 35, 5, 5), 3.5, 0.7, 5.0, 9.0),
    "DDoS_UDP": (
        (0, 2, 5, 0, 90, 3, 0, 0),
        (30, 10, 30, 10, 10, 10),
        3.0,
        0.7,
        5.0,
        3.0,
    ),
    "DDoS_ICMP": (
        (1, 92, 4, 0, 3, 0, 0, 0),
        (30, 10, 30, 10, 10, 10),
        3.0,
        0.7,
        5.0,
        6.0,
    ),
    "SQL_injection": (
        (0, 0, 50, 47, 0, 3, 0, 0),
        (5, 5, 45, 35, 5, 5),
        6.0,
        0.8,
        4.0,
        8.0,
    ),
    "Password": ((0, 0, 60, 35, 0, 5, 0, 0), (10, 5, 40, 35, 5, 5), 5.5, 0.5, 4.0, 8.0),
    "Vulnerability_scanner": (
        (0, 5, 55, 33, 5, 2, 0, 0),
        (25, 5, 30, 20, 15, 5),
        5.0,
        0.85,
        3.0,
        7.0,
    ),
    "DDoS_TCP": ((0, 2, 93, 0, 5, 0, 0, 0), (70, 2, 10, 3, 13, 2), 1.0, 0.7, 5.0, 6.0),
    "DDoS_HTTP": (
        (0, 0, 45, 52, 1, 2, 0, 0),
        (10, 5, 40, 35, 5, 5),
        5.0,
        0.9,
        3.0,
        7.0,
    ),
    "Uploading": (
        (0, 0, 50, 48, 0, 2, 0, 0),
        (5, 5, 50, 32, 4, 4),
        7.0,
        0.15,
        8.0,
        8.0,
    ),
    "Backdoor": ((0, 0, 85, 8, 2, 5, 0, 0), (10, 5, 40, 35, 5, 5), 4.5, 0.7, 5.0, 8.0),
    "Port_Scanning": (
        (0, 3, 90, 0, 7, 0, 0, 0),
        (65, 2, 5, 1, 25, 2),
        0.5,
        0.7,
        5.0,
        6.0,
    ),
    "XSS": ((0, 0, 52, 45, 0, 3, 0, 0), (5, 5, 45, 35, 5, 5), 6.3, 0.6, 5.0, 8.0),
    "Ransomware": (
        (0, 0, 80, 8, 2, 10, 0, 0),
        (10, 5, 45, 30, 5, 5),
        6.0,
        0.7,
        5.0,
        8.0,
    ),
    "MITM": ((55, 2, 20, 3, 10, 10, 0, 0), (5, 5, 45, 35, 5, 5), 3.5, 0.7, 5.0, 9.0),
    "Fingerprinting": (
        (8, 45, 40, 0, 7, 0, 0, 0),
        (50, 0, 0, 0, 50, 0),
        0.5,
        0.7,
        5.0,
        8.0,
    ),
}

# A fixed per-class shift of the log-mean of size and counter fields, the same for every
# seed (a model trained on one synthetic file scores another). Each class sits at its
# own corner of a 3-level grid over (tcp.seq, tcp.ack, tcp.len): one field alone tells
# only 3 groups of classes apart, the three together tell all 15. udp.stream follows
# the tcp.seq level, http.content_length the tcp.ack level, icmp.seq_le the tcp.len one.
_LEVELS = np.array([-1.8, 0.0, 1.8])
_GRID = {
    "Normal": (1, 1, 1),
    "DDoS_UDP": (0, 0, 0),
    "DDoS_ICMP": (2, 2, 2),
    "SQL_injection": (0, 2, 1),
    "Password": (2, 0, 1),
    "Vulnerability_scanner": (1, 2, 0),
    "DDoS_TCP": (0, 1, 2),
    "DDoS_HTTP": (1, 0, 2),
    "Uploading": (2, 1, 0),
    "Backdoor": (0, 0, 2),
    "Port_Scanning": (2, 2, 0),
    "XSS": (1, 2, 2),
    "Ransomware": (2, 0, 2),
    "MITM": (0, 2, 0),
    "Fingerprinting": (1, 0, 0),
}
_SIGNATURE = _LEVELS[np.array(list(_GRID.values()))]  # (classes, 3): seq, ack, len
_SIGMA = 0.35

_HOSTS = [f"192.168.0.{i}" for i in range(100, 200)] + ["0.0.0.0", "224.0.0.251"]
_REFERERS = [
    "0.0",
    "127.0.0.1/DVWA/",
    "192.168.0.128/dvwa/index.php",
    "http://localhost/",
]
_QUERIES = ["0.0", "id=1", "id=1%27+or+%271%27%3D%271", "q=%3Cscript%3E", "page=2"]
_URIS = [
    "0.0",
    "http://192.168.0.128/DVWA/login.php",
    "http://192.168.0.128/index.html",
]
_DNS_NAMES = [
    "0.0",
    "0.debian.pool.ntp.org",
    "_googlecast._tcp.local",
    "raspberrypi.local",
]
_TOPICS = [
    "0.0",
    "Temperature_and_Humidity",
    "Water_level",
    "Heart_Rate",
    "Soil_Moisture",
]
_PAYLOADS = [
    "0.0",
    "474554202f20485454502f312e310d0a",
    "16030100c8010000c403",
    "3d3d3d0a",
]
_TCP_OPTIONS = ["0.0", "020405b40402080a", "0101080a"]

_HEX_COLUMNS = {
    "icmp.checksum",
    "tcp.checksum",
    "tcp.flags",
    "mqtt.conflags",
    "mqtt.hdrflags",
}
_TEXT_DEFAULTS = {
    "ip.src_host": "0",
    "ip.dst_host": "0",
    "arp.dst.proto_ipv4": "0",
    "arp.src.proto_ipv4": "0",
}
_VOCAB_COLUMNS = {
    "http.file_data": _PAYLOADS,
    "http.request.uri.query": _QUERIES,
    "http.request.method": ["0.0", "GET", "POST", "0"],
    "http.referer": [*_REFERERS, "0"],
    "http.request.full_uri": _URIS,
    "http.request.version": ["0.0", "HTTP/1.1", "0"],
    "tcp.options": _TCP_OPTIONS,
    "tcp.payload": _PAYLOADS,
    "dns.qry.name.len": [*_DNS_NAMES, "0"],
    "mqtt.conack.flags": ["0.0", "0x00000000", "0"],
    "mqtt.msg": _PAYLOADS,
    "mqtt.protoname": ["0.0", "MQTT", "0"],
    "mqtt.topic": [*_TOPICS, "0"],
}


def _edge_chunks(
    rng: np.random.Generator, counts: dict[str, int], chunk_rows: int
) -> Iterator[pa.Table]:
    """Packets in chunks, classes interleaved, clock running on across chunks."""
    families = np.array([p[0] for p in _PROFILES.values()], dtype=np.float64)
    flags = np.array([p[1] for p in _PROFILES.values()], dtype=np.float64)
    params = np.array([p[2:] for p in _PROFILES.values()], dtype=np.float64)
    clock_us = int(rng.integers(0, 3600 * 10**6)) + 20 * 3600 * 10**6
    for part in _chunk_counts(rng, counts, chunk_rows):
        y = rng.permutation(np.repeat(np.arange(len(part)), part))
        table, clock_us = _edge_table(rng, y, families, flags, params, clock_us)
        yield table


def _edge_table(
    rng: np.random.Generator,
    y: np.ndarray,
    families: np.ndarray,
    flag_mix: np.ndarray,
    params: np.ndarray,
    clock_us: int,
) -> tuple[pa.Table, int]:
    """One chunk of packets of classes `y`, shape (N,)."""
    n = len(y)
    fam = _draw(rng, families[y])
    is_ = {name: fam == i for i, name in enumerate(_FAMILIES)}
    tcp_like = is_["tcp"] | is_["http"] | is_["mqtt"] | is_["modbus"]
    udp_like = is_["udp"] | is_["dns"]
    len_mu, get_share, body_mu, delta_mu = params[y].T
    sig = _SIGNATURE[y]
    zero_as_int = rng.random(n) < 0.02  # rows whose zeros are written `0`

    num = {c: np.zeros(n, dtype=np.int64) for c in EDGE_COLUMNS}
    codes = {c: np.zeros(n, dtype=np.int64) for c in _VOCAB_COLUMNS}

    def lognormal(mu: np.ndarray, sigma: float, cap: int) -> np.ndarray:
        return np.minimum(np.rint(np.exp(mu + sigma * rng.standard_normal(n))), cap)

    # ARP: who-has / is-at, hosts unaddressed at the IP layer.
    arp = is_["arp"]
    mitm = y == _EDGE_CLASSES.index("MITM")
    num["arp.opcode"] = np.where(
        arp, np.where(rng.random(n) < 0.3 + 0.4 * mitm, 2, 1), 0
    )
    num["arp.hw.size"] = np.where(arp, 6, 0)

    # ICMP: echo traffic; floods walk through sequence numbers.
    icmp = is_["icmp"]
    flood = y == _EDGE_CLASSES.index("DDoS_ICMP")
    seq = np.where(
        flood, rng.integers(0, 65536, n), lognormal(5.0 + sig[:, 2], _SIGMA, 65_535)
    )
    num["icmp.checksum"] = np.where(icmp, rng.integers(1, 65536, n), 0)
    num["icmp.seq_le"] = np.where(icmp, seq, 0)
    stamp = icmp & (rng.random(n) < 0.1)
    num["icmp.transmit_timestamp"] = np.where(
        stamp, rng.integers(7 * 10**7, 8 * 10**7, n), 0
    )

    # TCP: flags by class, lengths by class, relative sequence numbers.
    flag = np.where(tcp_like, _FLAGS[_draw(rng, flag_mix[y])], 0)
    acked = (flag & 0x10) > 0
    num["tcp.flags"] = flag
    num["tcp.flags.ack"] = acked
    num["tcp.ack"] = np.where(acked, lognormal(4.0 + sig[:, 1], _SIGMA, 10**7), 0)
    num["tcp.ack_raw"] = np.where(acked, rng.integers(1, 2**32, n), 0)
    num["tcp.seq"] = np.where(tcp_like, lognormal(4.0 + sig[:, 0], _SIGMA, 10**7), 0)
    num["tcp.checksum"] = np.where(tcp_like, rng.integers(1, 65536, n), 0)
    num["tcp.connection.syn"] = flag == 0x02
    num["tcp.connection.synack"] = flag == 0x12
    num["tcp.connection.rst"] = (flag & 0x04) > 0
    num["tcp.connection.fin"] = (flag & 0x01) > 0
    carries = tcp_like & ((flag == 0x18) | ((flag == 0x10) & (rng.random(n) < 0.3)))
    num["tcp.len"] = np.where(carries, lognormal(len_mu + sig[:, 2], _SIGMA, 65_000), 0)
    server = np.select([is_["http"], is_["mqtt"], is_["modbus"]], [80, 1883, 502], 0)
    server = np.where(tcp_like & (server == 0), rng.integers(1, 10_000, n), server)
    client = rng.integers(1024, 65536, n)
    outbound = rng.random(n) < 0.5
    num["tcp.dstport"] = np.where(tcp_like, np.where(outbound, server, client), 0)
    num["tcp.srcport"] = np.where(tcp_like, np.where(outbound, client, server), 0)
    codes["tcp.options"] = np.where(tcp_like & (flag == 0x02), rng.integers(1, 3, n), 0)
    codes["tcp.payload"] = np.where(num["tcp.len"] > 0, rng.integers(1, 4, n), 0)

    # HTTP: requests with class-dependent methods and body sizes, and responses.
    http = is_["http"]
    request = http & (rng.random(n) < 0.75)
    method = np.where(rng.random(n) < get_share, 1, 2)
    codes["http.request.method"] = np.where(request, method, 0)
    codes["http.request.version"] = np.where(request, 1, 0)
    codes["http.referer"] = np.where(request, rng.integers(0, len(_REFERERS), n), 0)
    codes["http.request.uri.query"] = np.where(
        request, rng.integers(0, len(_QUERIES), n), 0
    )
    codes["http.request.full_uri"] = np.where(
        request, rng.integers(1, len(_URIS), n), 0
    )
    codes["http.file_data"] = np.where(http & ~request, rng.integers(1, 4, n), 0)
    body = np.where(method == 2, lognormal(body_mu + sig[:, 1], _SIGMA, 10**6), 0)
    num["http.content_length"] = np.where(request, body, 0)
    num["http.response"] = http & ~request

    # UDP and DNS: streams and inter-arrival gaps; floods send back to back.
    num["udp.port"] = np.where(
        udp_like, np.where(is_["dns"], 53, rng.integers(1024, 65536, n)), 0
    )
    num["udp.stream"] = np.where(udp_like, lognormal(6.0 + sig[:, 0], _SIGMA, 10**7), 0)
    delta_us = np.where(udp_like, lognormal(delta_mu, 1.0, 10**8), 0)
    dns = is_["dns"]
    num["dns.qry.name"] = np.where(dns, rng.random(n) < 0.5, 0)
    codes["dns.qry.name.len"] = np.where(dns, rng.integers(1, len(_DNS_NAMES), n), 0)
    num["dns.qry.type"] = np.where(dns, np.where(rng.random(n) < 0.7, 1, 28), 0)
    retry = dns & (rng.random(n) < 0.1 + 0.3 * mitm)
    num["dns.retransmission"] = retry
    num["dns.retransmit_request"] = retry & (rng.random(n) < 0.5)
    num["dns.retransmit_request_in"] = retry & (rng.random(n) < 0.5)

    # MQTT: sensors publishing readings, with the odd connect / connack.
    mqtt = is_["mqtt"]
    msgtype = np.where(
        mqtt, np.array([3, 3, 3, 3, 3, 3, 1, 2, 12, 13])[rng.integers(0, 10, n)], 0
    )
    connect, publish = msgtype == 1, msgtype == 3
    num["mqtt.msgtype"] = msgtype
    num["mqtt.hdrflags"] = msgtype * 16
    num["mqtt.len"] = np.where(mqtt, np.where(publish, rng.integers(30, 60, n), 2), 0)
    num["mqtt.conflags"] = np.where(connect, 2, 0)
    num["mqtt.conflag.cleansess"] = connect
    num["mqtt.proto_len"] = np.where(connect, 4, 0)
    num["mqtt.ver"] = np.where(connect, 4, 0)
    codes["mqtt.protoname"] = np.where(connect, 1, 0)
    codes["mqtt.conack.flags"] = np.where(msgtype == 2, 1, 0)
    topic = rng.integers(1, len(_TOPICS), n)
    codes["mqtt.topic"] = np.where(publish, topic, 0)
    topic_len = np.array([len(t) for t in _TOPICS])[topic]
    num["mqtt.topic_len"] = np.where(publish, topic_len, 0)
    codes["mqtt.msg"] = np.where(publish, rng.integers(1, 4, n), 0)

    # Modbus/TCP: PLC polls.
    modbus = is_["modbus"]
    num["mbtcp.len"] = np.where(modbus, rng.choice([6, 7, 9, 11], n), 0)
    num["mbtcp.trans_id"] = np.where(modbus, rng.integers(1, 65536, n), 0)
    num["mbtcp.unit_id"] = np.where(modbus, rng.integers(1, 4, n), 0)

    # Zeros that raw captures write as `0` in the categorical columns, too.
    for col, vocab in _VOCAB_COLUMNS.items():
        if vocab[-1] == "0":
            codes[col] = np.where(
                zero_as_int & (codes[col] == 0), len(vocab) - 1, codes[col]
            )

    # Assemble the text of every column.
    out: dict[str, pa.Array] = {}
    gaps = np.maximum(rng.exponential(2_000, n).astype(np.int64), 1)
    stamps = clock_us + np.cumsum(gaps)
    out["frame.time"] = _frame_time(stamps, rng.integers(0, 1000, n))
    hosts = _HOSTS
    ip_known = ~arp
    out["ip.src_host"] = pc.if_else(
        pa.array(ip_known), _pick(hosts, rng.integers(0, 100, n)), "0"
    )
    out["ip.dst_host"] = pc.if_else(
        pa.array(ip_known), _pick(hosts, rng.integers(0, len(hosts), n)), "0"
    )
    out["arp.src.proto_ipv4"] = pc.if_else(
        pa.array(arp), _pick(hosts, rng.integers(0, 100, n)), "0"
    )
    out["arp.dst.proto_ipv4"] = pc.if_else(
        pa.array(arp), _pick(hosts, rng.integers(0, 100, n)), "0"
    )
    for col, vocab in _VOCAB_COLUMNS.items():
        out[col] = _pick(vocab, codes[col])
    out["udp.time_delta"] = pc.if_else(
        pa.array(udp_like), _fraction_us(delta_us.astype(np.int64)), "0.0"
    )
    for col in EDGE_COLUMNS:
        if (
            col in out
            or col in _TEXT_DEFAULTS
            or col in ("Attack_label", "Attack_type")
        ):
            continue
        values = num[col].astype(np.int64)
        out[col] = _hex(values) if col in _HEX_COLUMNS else _floats(values, zero_as_int)

    # Labels, with the raw spellings: 1 or 1.0, OS_Fingerprinting or Fingerprinting.
    attack = (y != 0).astype(np.int64) + 2 * (rng.random(n) < 0.05)
    out["Attack_label"] = _pick(["0", "1", "0.0", "1.0"], attack)
    names = [*_EDGE_CLASSES, "OS_Fingerprinting"]
    fingerprint = y == _EDGE_CLASSES.index("Fingerprinting")
    spelled = np.where(fingerprint & (rng.random(n) < 0.5), len(_EDGE_CLASSES), y)
    out["Attack_type"] = _pick(names, spelled)
    return pa.table(out), int(stamps[-1]) if n else clock_us


def _frame_time(stamps_us: np.ndarray, nanos: np.ndarray) -> pa.Array:
    """Times as raw captures write them: ` 2021 22:14:30.939803000 `."""
    day_us = stamps_us % (24 * 3600 * 10**6)
    seconds = day_us // 10**6

    def two(values: np.ndarray) -> pa.Array:
        return pc.utf8_lpad(_ints(values), 2, "0")

    clock = pc.binary_join_element_wise(
        two(seconds // 3600), two(seconds // 60 % 60), two(seconds % 60), ":"
    )
    fraction = pc.binary_join_element_wise(
        pc.utf8_lpad(_ints(day_us % 10**6), 6, "0"),
        pc.utf8_lpad(_ints(nanos), 3, "0"),
        "",
    )
    return pc.binary_join_element_wise(" 2021 ", clock, ".", fraction, " ", "")


# -- the two datasets ------------------------------------------------------------------


class _Spec:
    """What `synth` needs to know of one dataset."""

    def __init__(
        self,
        columns: tuple[str, ...],
        weights: dict[str, float],
        min_rows: int,
        class_column: str,
        generate: Callable[
            [np.random.Generator, dict[str, int], int], Iterator[pa.Table]
        ],
    ):
        self.columns, self.weights, self.min_rows = columns, weights, min_rows
        self.class_column, self.generate = class_column, generate


_CIC = _Spec(
    tuple(ciciov2024().column_names), _CIC_WEIGHTS, 48, "specific_class", _cic_chunks
)
_EDGE = _Spec(EDGE_COLUMNS, dict(PUBLISHED_COUNTS), 10, "Attack_type", _edge_chunks)
