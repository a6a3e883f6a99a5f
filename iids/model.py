"""The hybrid detector: residual 1-D convolutions, a bidirectional GRU, multi-head attention.

After Gueriani, Kheddar and Mazari, "Hybrid ResNet-1D-BiGRU with Multi-Head Attention for
Cyberattack Detection in Industrial IoT Environments", arXiv 2604.06481 (2026). A row's
feature vector is read as a one-channel sequence (one position per feature): residual
convolution blocks learn local patterns across neighbouring features, a bidirectional GRU
reads the convolution output in both directions, multi-head self-attention weighs the GRU
states against each other, and mean and max pooling over positions feed a small classifier.

The paper publishes no layer sizes. Ours, and why:

- `channels=32`, `num_blocks=2`, `kernel_size=3`: CAN frames carry 9 features and
  Edge-IIoTset about 100 after encoding; two residual blocks of 32 channels already see
  every position of a CAN frame (receptive field 9) and keep the model small enough to
  score tens of thousands of rows per second on two CPU cores.
- `strides=(1, 1)`: the sequence length into the GRU is the feature count divided by the
  product of the strides. A GRU step is sequential, so long inputs (Edge-IIoTset) should use
  stride 2 in one or two blocks to shorten what the GRU has to walk.
- `gru_hidden=32` per direction, one layer: the attention then works on 64-wide states,
  split into `num_heads=4` heads of 16.
- `dropout=0.1` before the classifier: the training sets are large and heavily repeated;
  stronger regularisation did not help on a validation split.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class HybridConfig:
    """Every size of the hybrid model.

    Attributes:
        channels: convolution channels in every residual block.
        num_blocks: residual blocks after the stem.
        kernel_size: odd convolution kernel width.
        strides: one stride per residual block (1 keeps the length, 2 halves it).
        gru_hidden: GRU hidden size per direction.
        gru_layers: stacked GRU layers.
        num_heads: attention heads; must divide `2 * gru_hidden`.
        dropout: dropout before the classifier.
    """

    channels: int = 32
    num_blocks: int = 2
    kernel_size: int = 3
    strides: tuple[int, ...] = (1, 1)
    gru_hidden: int = 32
    gru_layers: int = 1
    num_heads: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.kernel_size % 2 != 1 or self.kernel_size < 1:
            raise ValueError(
                f"kernel_size must be odd and positive, got {self.kernel_size}"
            )
        if len(self.strides) != self.num_blocks:
            raise ValueError(
                f"strides needs one value per block: num_blocks={self.num_blocks}, "
                f"strides={self.strides}"
            )
        if any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"each stride must be 1 or 2, got {self.strides}")
        if (2 * self.gru_hidden) % self.num_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must divide 2 * gru_hidden "
                f"({2 * self.gru_hidden})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HybridConfig:
        data = dict(data)
        if "strides" in data:
            data["strides"] = tuple(data["strides"])
        return cls(**data)


class _ResidualBlock(nn.Module):
    """Two convolutions with batch norm and a skip connection (projected on a stride)."""

    def __init__(self, channels: int, kernel_size: int, stride: int):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.act = nn.ReLU(inplace=True)
        self.skip: nn.Module = nn.Identity()
        if stride != 1:
            self.skip = nn.Sequential(
                nn.Conv1d(channels, channels, 1, stride, bias=False),
                nn.BatchNorm1d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.skip(x))


class HybridIDS(nn.Module):
    """ResNet-1D, then BiGRU, then multi-head self-attention, then a classifier.

    Args:
        num_features: F, the length of a preprocessed feature vector.
        num_classes: C, the number of classes of the task.
        config: the layer sizes.
    """

    def __init__(self, num_features: int, num_classes: int, config: HybridConfig):
        super().__init__()
        if num_features < 1 or num_classes < 2:
            raise ValueError(
                f"need at least 1 feature and 2 classes, got {num_features} features "
                f"and {num_classes} classes"
            )
        self.num_features, self.num_classes, self.config = (
            num_features,
            num_classes,
            config,
        )
        c = config.channels
        self.stem = nn.Sequential(
            nn.Conv1d(
                1, c, config.kernel_size, padding=config.kernel_size // 2, bias=False
            ),
            nn.BatchNorm1d(c),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(
            *[_ResidualBlock(c, config.kernel_size, s) for s in config.strides]
        )
        self.gru = nn.GRU(
            c,
            config.gru_hidden,
            num_layers=config.gru_layers,
            batch_first=True,
            bidirectional=True,
        )
        width = 2 * config.gru_hidden
        self.attn = nn.MultiheadAttention(width, config.num_heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Sequential(
            nn.Linear(2 * width, width),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch of feature vectors.

        Args:
            x: float32 features, shape (B, F).

        Returns:
            float32 logits, shape (B, C).
        """
        h = self.blocks(self.stem(x.unsqueeze(1)))  # (B, channels, L)
        # The GRU stays in fp32 under mixed precision: its fused kernels and its
        # recurrence accumulate error in bf16.
        with torch.autocast(device_type=h.device.type, enabled=False):
            h, _ = self.gru(h.transpose(1, 2).float())  # (B, L, 2 * gru_hidden)
        h = self.norm(h + self._self_attention(h))  # (B, L, 2 * gru_hidden)
        pooled = torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=1)  # (B, 4 * gru_hidden)
        return self.head(pooled)

    def _self_attention(self, h: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention over positions with `self.attn`'s weights.

        The same computation as `nn.MultiheadAttention(h, h, h)` (no masks, no attention
        dropout), written out as one fused q/k/v projection and batched matmuls: on
        CPUs, with sequences of a few dozen positions, it runs about twice as fast as
        the module's own forward, which spends most of its time re-laying out q, k, v.

        Args:
            h: (B, L, W) GRU states.

        Returns:
            (B, L, W) attention output, after the output projection.
        """
        batch, length, width = h.shape
        heads = self.attn.num_heads
        qkv = nn.functional.linear(h, self.attn.in_proj_weight, self.attn.in_proj_bias)
        # (3, B, heads, L, W / heads)
        q, k, v = qkv.view(batch, length, 3, heads, width // heads).permute(
            2, 0, 3, 1, 4
        )
        scores = torch.softmax((q * (width // heads) ** -0.5) @ k.transpose(-1, -2), -1)
        out = (scores @ v).transpose(1, 2).reshape(batch, length, width)
        return self.attn.out_proj(out)

    def sequence_length(self) -> int:
        """L, the number of positions the GRU and the attention see."""
        length = self.num_features
        for s in self.config.strides:
            length = (length - 1) // s + 1
        return length


def _attend_time_major(attn: nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
    """`HybridIDS._self_attention` on time-major states, (L, B, W) in and out.

    Scored with torch's fused `scaled_dot_product_attention`, which reads q, k and v
    from strided views of the projection; in training the batched matmuls of
    `HybridIDS._self_attention` have the faster backward pass.
    """
    width = h.shape[-1]
    heads = attn.num_heads
    qkv = nn.functional.linear(h, attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.unflatten(-1, (3, heads, width // heads))  # (L, B, 3, heads, W / heads)
    q, k, v = qkv.permute(2, 1, 3, 0, 4)  # each (B, heads, L, W / heads)
    out = nn.functional.scaled_dot_product_attention(q, k, v)
    return attn.out_proj(out.permute(2, 0, 1, 3).flatten(-2))  # (L, B, W)


class _TimeMajorConv(nn.Module):
    """A trained `nn.Conv1d` (batch norm folded in) as matmuls over time-major input.

    Input and output are (L, B, C): a slice of positions is then a contiguous
    (positions x B, C) matrix, so each kernel tap is one matmul accumulated in place
    into the output positions it reaches, with no padding or im2col copies (a stride-2
    convolution copies its input once, split into even and odd positions). On a few
    dozen positions this beats oneDNN's convolution and needs no transposes between the
    convolutions and the GRU. Outputs equal the convolution's up to float rounding.
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        c_out, _, k = conv.weight.shape
        self.k, self.stride, self.pad = k, conv.stride[0], conv.padding[0]
        bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(c_out)
        # One (C_in, C_out) matrix per tap, the centre tap first: it reaches every
        # output position, so it starts the sum.
        self.taps = sorted(range(k), key=lambda j: abs(j - self.pad))
        weight = conv.weight.detach().permute(2, 1, 0)[self.taps].contiguous()
        self.register_buffer("weight", weight)  # (k, C_in, C_out)
        self.register_buffer("bias", bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(L, B, C_in) to (L_out, B, C_out)."""
        length, batch, c_in = x.shape
        stride = self.stride
        out_len = (length + 2 * self.pad - self.k) // stride + 1
        # Input positions by phase (position mod stride), copied only for the phases
        # some tap reads: a 1x1 strided skip needs only the even positions.
        phases = {
            p: x if stride == 1 else x[p::stride].contiguous()
            for p in {(tap - self.pad) % stride for tap in self.taps}
        }
        out = None
        for weight, tap in zip(self.weight, self.taps, strict=True):
            # Output position o reads input position stride * o + tap - pad, which is
            # position o + shift of phase `phase`.
            phase = (tap - self.pad) % stride
            shift = (tap - self.pad - phase) // stride
            src = phases[phase]
            lo, hi = max(0, -shift), min(out_len, len(src) - shift)
            rows = src[lo + shift : hi + shift].reshape(-1, c_in)
            if out is None:
                out = torch.addmm(self.bias, rows, weight).view(out_len, batch, -1)
            elif hi > lo:  # in-place, so cast by hand where autocast chose bf16
                target = out[lo:hi].view(-1, out.shape[-1])
                target.addmm_(rows.to(out.dtype), weight.to(out.dtype))
        return out


class _TimeMajorBlock(nn.Module):
    """A trained `_ResidualBlock` (batch norms folded) on time-major input."""

    def __init__(self, block: _ResidualBlock):
        super().__init__()
        self.conv1, self.conv2 = (
            _TimeMajorConv(block.conv1),
            _TimeMajorConv(block.conv2),
        )
        self.skip = (
            None if isinstance(block.skip, nn.Identity) else _TimeMajorConv(block.skip)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x).relu_())
        return out.add_(x if self.skip is None else self.skip(x)).relu_()


class _BatchedBiGRU(nn.Module):
    """A trained bidirectional `nn.GRU`, for inference, both directions in one step.

    Time-major: the input is (L, B, C) and so is the output. Each layer stacks the
    sequence with its reverse and runs both directions as one batched matmul per step,
    which halves the number of small sequential kernels against `nn.GRU`'s CPU path
    (one direction after the other) and keeps every step's tensors contiguous.
    The candidate state's tanh is computed as 2 * sigmoid(2a) - 1 with the candidate
    gate's weights and biases doubled once here (an exact rescaling): on CPUs torch's
    tanh runs about 3.5x slower than its sigmoid, and it was a quarter of the GRU's time.
    Outputs equal `nn.GRU`'s up to float rounding.
    """

    def __init__(self, gru: nn.GRU):
        super().__init__()
        if not (gru.bidirectional and gru.bias and gru.batch_first):
            raise ValueError("expects a batch-first bidirectional nn.GRU with biases")
        self.hidden, self.num_layers = gru.hidden_size, gru.num_layers
        for layer in range(gru.num_layers):
            # Weights transposed for `x @ W`: (2, in, 3H); biases (2, 1, 3H).
            w_ih, w_hh, b_ih, b_hh = (
                torch.stack(
                    [
                        getattr(gru, f"{name}_l{layer}"),
                        getattr(gru, f"{name}_l{layer}_reverse"),
                    ]
                ).detach()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            # Rows of gate n (the last third) doubled: see the class docstring.
            for weights in (w_ih, w_hh, b_ih, b_hh):
                weights[:, 2 * gru.hidden_size :] *= 2
            self.register_buffer(f"w_ih{layer}", w_ih.transpose(1, 2).contiguous())
            self.register_buffer(f"w_hh{layer}", w_hh.transpose(1, 2).contiguous())
            self.register_buffer(f"b_ih{layer}", b_ih.unsqueeze(1))
            self.register_buffer(f"b_hh{layer}", b_hh.unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(L, B, C) inputs to (L, B, 2H) states, forward then backward direction."""
        hidden = self.hidden
        for layer in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"w_ih{layer}"), getattr(self, f"w_hh{layer}")
            b_ih, b_hh = getattr(self, f"b_ih{layer}"), getattr(self, f"b_hh{layer}")
            length, batch = x.shape[0], x.shape[1]
            # Input gates of every step at once, bias included: (2, L, B, 3H), the
            # backward direction [1] in reading order.
            both = torch.stack([x, x.flip(0)]).view(2, length * batch, -1)
            gates_in = torch.baddbmm(b_ih, both, w_ih).view(2, length, batch, -1)
            out = x.new_empty(length, batch, 2, hidden)
            h = x.new_zeros(2, batch, hidden)
            for t in range(length):
                gates_h = torch.baddbmm(b_hh, h, w_hh)  # (2, B, 3H), gates r, z, n
                step = gates_in[:, t]
                r, z = torch.sigmoid(
                    step[..., : 2 * hidden] + gates_h[..., : 2 * hidden]
                ).chunk(2, -1)
                # tanh(a) as 2 * sigmoid(2a) - 1, the 2 already in the weights.
                n = (
                    torch.addcmul(
                        step[..., 2 * hidden :], r, gates_h[..., 2 * hidden :]
                    )
                    .sigmoid_()
                    .mul_(2)
                    .sub_(1)
                )
                h = torch.lerp(n, h, z)  # (1 - z) * n + z * h
                # The backward direction's step t is position L - 1 - t.
                out[t, :, 0], out[length - 1 - t, :, 1] = h[0], h[1]
            x = out.view(length, batch, 2 * hidden)
        return x


class ScoringModule(nn.Module):
    """What a scoring copy of a trained model keeps of it: its sizes and config.

    The base of `InferenceHybridIDS` and `iids.native.NativeHybridIDS`, which code
    that only needs a model's shape (FLOP counts, the scoring core) reads alike.

    Attributes:
        num_features, num_classes, config: as on the trained model.
    """

    def __init__(self, fused: HybridIDS):
        super().__init__()
        self.num_features, self.num_classes, self.config = (
            fused.num_features,
            fused.num_classes,
            fused.config,
        )
        self._length = fused.sequence_length()

    def sequence_length(self) -> int:
        """L, the number of positions the GRU and the attention see."""
        return self._length


class InferenceHybridIDS(ScoringModule):
    """A trained `HybridIDS` rewritten in torch for scoring: the same outputs, faster.

    Built by `for_inference` where the native pass (`iids.native`) is not used: with
    backend "torch", on a GPU, or where the extension was not built. Batch norms are
    folded into the convolutions, which run as `_TimeMajorConv` matmuls, the GRU is a
    `_BatchedBiGRU`, positions stay first from the stem to the pooling (no
    transposes), attention runs in torch's fused kernel, and a batch is scored in
    micro-batches of `micro_batch` rows. A 1024-row micro-batch's intermediate tensors
    (a few MB) stay in the CPU's caches where a 4096-row batch's do not: on two CPU
    cores, with the scoring process's malloc tuning
    (`iids.scoring.keep_allocations_on_the_heap`), that measured 1.1x (9 features) and
    1.07x (60 features) more rows/s than whole 4096-row forwards.

    Attributes:
        num_features, num_classes, config: as on the trained model.
        micro_batch: rows per internal forward pass.
    """

    def __init__(self, fused: HybridIDS, micro_batch: int = 1024):
        super().__init__(fused)
        self.micro_batch = micro_batch
        self.stem = _TimeMajorConv(fused.stem[0])
        self.blocks = nn.Sequential(*[_TimeMajorBlock(b) for b in fused.blocks])
        self.gru = _BatchedBiGRU(fused.gru)
        self.attn, self.norm, self.head = fused.attn, fused.norm, fused.head
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, (B, C), of float32 features, (B, F)."""
        if len(x) <= self.micro_batch:
            return self._forward(x)
        return torch.cat([self._forward(part) for part in x.split(self.micro_batch)])

    def stages(self) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        """One micro-batch's forward pass as named steps, for profiling.

        Each step takes the previous one's output: features (B, F) go in, logits (B, C)
        come out. The names are the parts `benchmarks/bench.py` counts FLOPs by.
        """
        return [
            ("conv", self._convolutions),
            ("gru", self._gru),
            ("attention", self._attention),
            ("head", self._head),
        ]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, stage in self.stages():
            x = stage(x)
        return x

    def _convolutions(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) features to (L, B, channels)."""
        h = self.stem(x.t().contiguous().unsqueeze(-1)).relu_()  # (F, B, channels)
        return self.blocks(h)

    def _gru(self, h: torch.Tensor) -> torch.Tensor:
        """(L, B, channels) to (L, B, 2 * gru_hidden)."""
        # As in HybridIDS, the GRU stays in fp32 under mixed precision.
        with torch.autocast(device_type=h.device.type, enabled=False):
            return self.gru(h.float())

    def _attention(self, h: torch.Tensor) -> torch.Tensor:
        """(L, B, W) to (L, B, W): self-attention, residual and layer norm."""
        return self.norm(h + _attend_time_major(self.attn, h))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """(L, B, W) to (B, C) logits: mean and max pooling, then the classifier."""
        return self.head(torch.cat([h.mean(dim=0), h.amax(dim=0)], dim=1))


def fold_batch_norms(model: HybridIDS) -> HybridIDS:
    """A copy of a trained model in eval mode with its batch norms folded away.

    Each batch norm's running statistics and affine weights are folded into the
    convolution before it (`torch.nn.utils.fusion.fuse_conv_bn_eval`), which removes
    five to seven elementwise passes over the activations per forward; the batch norms
    become identities. Outputs equal the eval-mode model's up to float rounding; the
    original model is left untouched.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    stem_conv, stem_bn = fused.stem[0], fused.stem[1]
    fused.stem[0], fused.stem[1] = fuse_conv_bn_eval(stem_conv, stem_bn), nn.Identity()
    for block in fused.blocks:
        block.conv1, block.bn1 = (
            fuse_conv_bn_eval(block.conv1, block.bn1),
            nn.Identity(),
        )
        block.conv2, block.bn2 = (
            fuse_conv_bn_eval(block.conv2, block.bn2),
            nn.Identity(),
        )
        if isinstance(block.skip, nn.Sequential):
            block.skip = fuse_conv_bn_eval(block.skip[0], block.skip[1])
    return fused


BACKENDS = ("auto", "native", "torch")


def for_inference(model: HybridIDS, backend: str = "auto") -> ScoringModule:
    """A copy of a trained model to score with, in eval mode: the same logits, faster.

    Args:
        model: a trained model (left untouched).
        backend: "native" scores with the C forward pass of `iids.native` (built at
            install); "torch" with `InferenceHybridIDS`, the model rewritten in torch;
            "auto" with the native pass where it was built and the model is on the
            CPU, else the torch rewrite.

    Returns:
        `iids.native.NativeHybridIDS` or `InferenceHybridIDS`: logits (B, C) of
        float32 features (B, F), equal to the eval-mode model's up to float rounding.

    Raises:
        ValueError: an unknown backend.
        RuntimeError: "native" where the native pass was not built.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from iids import native

    fused = fold_batch_norms(model)
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if backend == "native" or (backend == "auto" and on_cpu and native.available()):
        return native.NativeHybridIDS(fused)
    return InferenceHybridIDS(fused)
