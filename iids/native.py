"""The trained hybrid model's forward pass as native CPU code, for scoring.

`iids/csrc/` holds a C forward pass of `HybridIDS` (built at install into the extension
`iids._hybrid_cpu`) that scores a tile of rows at a time, one row per SIMD lane, through
every layer: each multiply-add works on 16 rows with AVX-512 (8 with AVX2, 4 otherwise),
the gates, softmax and norms run on the same vectors, and a tile's activations stay in
the core's caches from the first convolution to the logits. A forward pass in torch
instead runs a few hundred small kernels per batch (the GRU's steps, attention over a
handful of positions), most of whose time is spent outside the matrix products.

`NativeHybridIDS` wraps it as a torch module with the trained model's interface. The
instruction set is chosen when the library loads (`isa()`); `for_inference` uses the
native pass wherever the extension was built and falls back to the torch rewrite
(`iids.model.InferenceHybridIDS`) elsewhere.
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch
from torch import nn

from iids.model import HybridConfig, HybridIDS, ScoringModule

logger = logging.getLogger(__name__)

_MODULE = "iids._hybrid_cpu"
STAGES = ("conv", "gru", "attention", "head")  # the order of the kernel's stage timers
_OK, _BAD_NET, _NO_MEMORY = 0, 1, 2  # iids_hybrid_forward's return codes


class _Net(ctypes.Structure):
    """`iids_hybrid_net` of iids/csrc/hybrid.h."""

    _fields_ = [
        ("num_features", ctypes.c_int32),
        ("num_classes", ctypes.c_int32),
        ("channels", ctypes.c_int32),
        ("kernel_size", ctypes.c_int32),
        ("num_blocks", ctypes.c_int32),
        ("gru_hidden", ctypes.c_int32),
        ("gru_layers", ctypes.c_int32),
        ("num_heads", ctypes.c_int32),
        ("strides", ctypes.POINTER(ctypes.c_int32)),
        ("norm_eps", ctypes.c_float),
        ("params", ctypes.POINTER(ctypes.c_float)),
        ("num_params", ctypes.c_int64),
    ]


@cache
def _library() -> ctypes.CDLL | None:
    """The built extension loaded with ctypes, or None where it was not built."""
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or spec.origin is None:
        return None
    lib = ctypes.CDLL(spec.origin)
    net_p, float_p = ctypes.POINTER(_Net), ctypes.POINTER(ctypes.c_float)
    lib.iids_hybrid_num_params.argtypes = [net_p]
    lib.iids_hybrid_num_params.restype = ctypes.c_int64
    lib.iids_hybrid_forward.argtypes = [
        net_p,
        float_p,
        ctypes.c_int64,
        float_p,
        ctypes.POINTER(ctypes.c_int64),
    ]
    lib.iids_hybrid_forward.restype = ctypes.c_int
    lib.iids_hybrid_isa.restype = ctypes.c_char_p
    lib.iids_hybrid_select_isa.argtypes = [ctypes.c_char_p]
    lib.iids_hybrid_select_isa.restype = ctypes.c_int
    lib.iids_hybrid_tile_rows.restype = ctypes.c_int
    return lib


def available() -> bool:
    """Whether the native forward pass was built for this installation."""
    return _library() is not None


def isa() -> str | None:
    """The instruction set the native pass runs with ("avx512", "avx2", "baseline")."""
    lib = _library()
    return None if lib is None else lib.iids_hybrid_isa().decode()


def select_isa(name: str) -> None:
    """Run the native pass with instruction set `name` from now on, in this process.

    For comparing instruction sets (tests, benchmarks); scoring needs no call: the
    widest one the CPU has is chosen when the library loads.

    Raises:
        RuntimeError: the native pass was not built.
        ValueError: `name` is not one of "avx512", "avx2", "baseline", or this CPU
            lacks it.
    """
    lib = _require()
    if lib.iids_hybrid_select_isa(name.encode()) != 0:
        raise ValueError(
            f"instruction set {name!r} is not available on this CPU; expected one of "
            f"'avx512', 'avx2', 'baseline' that it has (running with {isa()!r})"
        )


def _require() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError(
            f"the native forward pass ({_MODULE}) was not built: reinstall iids on a "
            "machine with a C compiler and the Python headers (gcc, python3-dev)"
        )
    return lib


@torch.no_grad()
def pack_parameters(fused: HybridIDS) -> np.ndarray:
    """A trained model's parameters in the order and layout iids/csrc/hybrid.h reads.

    Args:
        fused: a HybridIDS whose batch norms are folded into its convolutions
            (`iids.model.fold_batch_norms`).

    Returns:
        float32, shape (P,): every weight matrix input-major ([K][N]), layer by layer.
    """

    def conv(layer: nn.Conv1d) -> list[torch.Tensor]:
        # (C_out, C_in, k) -> rows tap * C_in + c_in, one column per output channel.
        return [layer.weight.permute(2, 1, 0).flatten(0, 1), layer.bias]

    def linear(layer: nn.Linear) -> list[torch.Tensor]:
        return [layer.weight.t(), layer.bias]

    parts = conv(fused.stem[0])
    for block in fused.blocks:
        parts += conv(block.conv1) + conv(block.conv2)
        if not isinstance(block.skip, nn.Identity):
            parts += conv(block.skip)
    gru = fused.gru
    for layer in range(gru.num_layers):
        weight = {
            name: (
                getattr(gru, f"{name}_l{layer}"),
                getattr(gru, f"{name}_l{layer}_reverse"),
            )
            for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
        }
        forward, backward = weight["weight_ih"]
        parts += [torch.cat([forward.t(), backward.t()], dim=1)]
        parts += [torch.cat(weight["bias_ih"])]
        for direction in (0, 1):
            parts += [
                weight["weight_hh"][direction].t(),
                weight["bias_hh"][direction],
            ]
    attn = fused.attn
    width = attn.embed_dim
    # Queries carry the 1/sqrt(head width) of the scores (an exact rescaling).
    scale = torch.ones(3 * width)
    scale[:width] = (width // attn.num_heads) ** -0.5
    parts += [attn.in_proj_weight.t() * scale, attn.in_proj_bias * scale]
    parts += linear(attn.out_proj)
    parts += [fused.norm.weight, fused.norm.bias]
    parts += linear(fused.head[0]) + linear(fused.head[3])
    flat = torch.cat([p.float().reshape(-1) for p in parts])
    return flat.numpy().astype(np.float32, copy=True)


class NativeHybridIDS(ScoringModule):
    """A trained `HybridIDS` scored by the native forward pass: the same logits.

    Built by `iids.model.for_inference` where `available()`. A call splits its rows
    into one range per torch intra-op thread (`torch.get_num_threads()`, which
    `iids.scoring.Scorer` sets) and scores the ranges in parallel.

    Args:
        fused: a trained model with its batch norms folded
            (`iids.model.fold_batch_norms`).

    Raises:
        RuntimeError: the native pass was not built.
    """

    def __init__(self, fused: HybridIDS):
        super().__init__(fused)
        self._params = pack_parameters(fused)
        self._strides = np.asarray(fused.config.strides, dtype=np.int32)
        self._norm_eps = float(fused.norm.eps)
        self._check()
        self.eval()

    def _check(self) -> None:
        expected = _require().iids_hybrid_num_params(ctypes.byref(self._net()))
        if expected != len(self._params):
            raise ValueError(
                f"packed {len(self._params):,} parameters for a model that needs "
                f"{expected:,} (config {self.config})"
            )

    def _net(self) -> _Net:
        cfg: HybridConfig = self.config
        return _Net(
            num_features=self.num_features,
            num_classes=self.num_classes,
            channels=cfg.channels,
            kernel_size=cfg.kernel_size,
            num_blocks=cfg.num_blocks,
            gru_hidden=cfg.gru_hidden,
            gru_layers=cfg.gru_layers,
            num_heads=cfg.num_heads,
            strides=self._strides.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            norm_eps=self._norm_eps,
            params=self._params.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            num_params=len(self._params),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, (B, C) float32, of float32 features, (B, F)."""
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"expected features of shape (rows, {self.num_features}), got "
                f"{tuple(x.shape)}"
            )
        features = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        logits = np.empty((len(features), self.num_classes), dtype=np.float32)
        ranges = _split(len(features), torch.get_num_threads())
        if len(ranges) <= 1:
            self._score(features, logits, None)
        else:
            list(
                _pool(len(ranges)).map(
                    lambda r: self._score(features[r[0] : r[1]], logits[r[0] : r[1]]),
                    ranges,
                )
            )
        return torch.from_numpy(logits)

    def stage_seconds(self, features: np.ndarray) -> dict[str, float]:
        """Score `features` (N, F) in this thread, timing each stage of the pass.

        Returns:
            seconds per stage, keyed by `STAGES` (conv, gru, attention, head).
        """
        features = np.ascontiguousarray(features, dtype=np.float32)
        logits = np.empty((len(features), self.num_classes), dtype=np.float32)
        counters = (ctypes.c_int64 * len(STAGES))()
        self._score(features, logits, counters)
        return {name: counters[i] / 1e9 for i, name in enumerate(STAGES)}

    def _score(self, features: np.ndarray, logits: np.ndarray, counters=None) -> None:
        # ctypes releases the GIL for the call, so ranges run in parallel threads.
        net = self._net()
        status = _require().iids_hybrid_forward(
            ctypes.byref(net),
            features.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            len(features),
            logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            counters,
        )
        if status == _NO_MEMORY:
            raise MemoryError(
                f"native forward pass: no memory for the activations of "
                f"{len(features)} rows"
            )
        if status != _OK:
            raise RuntimeError(
                f"native forward pass refused the model description (status "
                f"{status}; {_BAD_NET} means hybrid.h does not accept its sizes)"
            )


_POOL_LOCK = threading.Lock()
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """One process-wide pool per thread count, so calls start no threads."""
    with _POOL_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, "iids-native")
        return _POOLS[threads]


def _split(rows: int, threads: int) -> list[tuple[int, int]]:
    """Row ranges, one per thread, whole tiles each (a lone range for few rows)."""
    tile = _require().iids_hybrid_tile_rows()
    tiles = -(-rows // tile)
    # A range of fewer than 4 tiles is not worth a thread.
    parts = max(1, min(threads, tiles // 4))
    bounds = [min(rows, tile * (tiles * i // parts)) for i in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
