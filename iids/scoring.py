"""The one scoring core: a model bundle in, class probabilities out.

Batch scoring (Ray Data actors) and online scoring (Ray Serve replicas) both call `Scorer`,
so the two can never disagree on the same rows.
"""

from __future__ import annotations

import ctypes
import logging
import sys

import numpy as np
import pyarrow as pa
import torch

from iids import native
from iids.bundle import Bundle, load_bundle
from iids.model import for_inference
from iids.preprocess import RowFaults
from iids.storage import Storage

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4096

# glibc malloc hands every allocation above a (self-adjusting) threshold its own mmap and
# returns it to the kernel when freed, so each forward pass page-faults its activations
# in afresh. A scoring process keeps them on the heap instead: allocations up to 64 MiB
# come from the heap, which is trimmed only past 256 MiB free. Measured on 2 CPUs: batch
# scoring actors spent about a sixth of their CPU time in the kernel without it.
_MMAP_THRESHOLD = 64 << 20
_TRIM_THRESHOLD = 256 << 20


def keep_allocations_on_the_heap() -> bool:
    """Tune glibc malloc for repeated forward passes (see `_MMAP_THRESHOLD`).

    Returns:
        True where it applied (Linux with glibc); elsewhere nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(
        libc.mallopt(m_mmap_threshold, _MMAP_THRESHOLD)
        and libc.mallopt(m_trim_threshold, _TRIM_THRESHOLD)
    )


def predict_proba(
    model: torch.nn.Module, features: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Class probabilities of a model in eval mode, batch by batch.

    The softmax runs in NumPy, not torch: between two native forward passes (whose
    threads keep the cores busy) a torch operator wakes torch's OpenMP threads, which
    then spin for CPU the native threads need; on 2 cores that cost a fifth of the
    native pass's rows/s.

    Args:
        model: a classifier returning logits (B, C).
        features: float32, shape (N, F).
        batch_size: rows per forward pass.

    Returns:
        float32 probabilities, shape (N, C).
    """
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            logits = model(torch.from_numpy(features[start : start + batch_size]))
            chunks.append(_softmax(logits.float().numpy()))  # (B, C)
    if not chunks:
        return np.empty((0, model.num_classes), dtype=np.float32)
    return np.concatenate(chunks)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) float32 logits, in place."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


class Scorer:
    """Scores raw rows with a loaded bundle.

    Args:
        bundle: the model bundle.
        batch_size: rows per forward pass.
        threads: torch intra-op threads for this process (None leaves torch's default).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
    ):
        if threads is not None:
            torch.set_num_threads(threads)
        keep_allocations_on_the_heap()
        self.bundle = bundle
        self.batch_size = batch_size
        # The native forward pass where it was built: same outputs, faster on CPUs.
        self.model = for_inference(bundle.model)
        if isinstance(self.model, native.NativeHybridIDS):
            logger.info(
                "model %s: native forward pass (%s), %d thread(s)",
                bundle.version,
                native.isa(),
                torch.get_num_threads(),
            )
        else:
            logger.warning(
                "model %s: scoring with the torch rewrite, whose forward pass runs at "
                "about a third of the native one's rate; the native pass %s",
                bundle.version,
                "was not built for this installation (reinstall iids with a C compiler)"
                if not native.available()
                else "scores on the CPU only",
            )

    @classmethod
    def from_uri(cls, uri: str, storage: Storage | None = None, **kwargs) -> Scorer:
        """Load the bundle at `uri` and build a scorer for it."""
        return cls(load_bundle(uri, storage), **kwargs)

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def classes(self) -> list[str]:
        return self.bundle.classes

    def features(self, rows: pa.Table) -> np.ndarray:
        """Raw rows to model features, shape (N, F) float32 (raises FeatureError)."""
        return self.bundle.preprocessor.transform(rows)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities.

        Args:
            features: float32, shape (N, F).

        Returns:
            float32 probabilities, shape (N, C); each row sums to 1.
        """
        return predict_proba(self.model, features, self.batch_size)

    def score(self, rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Score raw rows.

        Returns:
            (predicted, proba): int64 class codes, shape (N,), and float32
            probabilities, shape (N, C).
        """
        proba = self.predict_proba(self.features(rows))
        return proba.argmax(axis=1), proba

    def score_checked(self, rows: pa.Table) -> tuple[np.ndarray, np.ndarray, RowFaults]:
        """Score the rows that can be turned into features; report the others.

        Returns:
            (predicted, proba, faults): int64 class codes, shape (M,), and float32
            probabilities, shape (M, C), of the M rows not in `faults`, in input order;
            `faults` holds the other N - M rows, each with its column and reason.

        Raises:
            FeatureError: a feature column is missing from `rows` altogether.
        """
        features, faults = self.bundle.preprocessor.transform_checked(rows)
        proba = self.predict_proba(features)
        return proba.argmax(axis=1), proba, faults
