import pickle

import numpy as np
import pytest
import torch

from iids import native
from iids.model import HybridConfig, HybridIDS, InferenceHybridIDS, for_inference


def _trained_like(features: int, classes: int, config: HybridConfig) -> HybridIDS:
    """A model with batch-norm statistics and weights away from their initial values."""
    torch.manual_seed(0)
    model = HybridIDS(features, classes, config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.train()
    model(torch.randn(512, features) * 3 + 1)  # running statistics away from 0 and 1
    return model.eval()


@pytest.fixture
def widest_isa():
    """Leave the process on the instruction set the library chose at load."""
    chosen = native.isa()
    yield chosen
    native.select_isa(chosen)


CONFIGS = [
    (9, 6, HybridConfig()),  # CICIoV2024's
    (60, 15, HybridConfig(num_blocks=3, strides=(2, 2, 2))),  # Edge-IIoTset's
    (60, 15, HybridConfig(num_blocks=3, strides=(2, 1, 2))),
    (9, 2, HybridConfig(gru_layers=2, gru_hidden=16, num_heads=2)),
    (13, 4, HybridConfig(kernel_size=5, strides=(2, 2))),  # odd lengths, wide kernel
    (7, 3, HybridConfig(channels=8, num_blocks=0, strides=(), gru_hidden=8)),
    (1, 2, HybridConfig(channels=4, strides=(2, 2), gru_hidden=4, num_heads=8)),
]


@pytest.mark.parametrize(("features", "classes", "config"), CONFIGS)
def test_native_logits_equal_the_trained_models(features, classes, config):
    model = _trained_like(features, classes, config)
    scorer = for_inference(model)
    assert isinstance(scorer, native.NativeHybridIDS)
    x = torch.randn(203, features) * 2  # not a whole number of tiles
    with torch.inference_mode():
        expected = model(x)
        logits = scorer(x)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    assert scorer.sequence_length() == model.sequence_length()


def test_every_instruction_set_of_this_cpu_gives_the_same_logits(widest_isa):
    model = _trained_like(60, 15, HybridConfig(num_blocks=3, strides=(2, 2, 2)))
    scorer = for_inference(model)
    x = torch.randn(101, 60)
    with torch.inference_mode():
        expected = model(x)
    tried = []
    for isa in ("avx512", "avx2", "baseline"):
        try:
            native.select_isa(isa)
        except ValueError:
            continue  # this CPU lacks it
        tried.append(isa)
        with torch.inference_mode():
            torch.testing.assert_close(scorer(x), expected, rtol=1e-4, atol=1e-4)
    assert "baseline" in tried and widest_isa in tried


def test_an_instruction_set_the_cpu_lacks_is_refused(widest_isa):
    with pytest.raises(ValueError, match="'sse9' is not available on this CPU"):
        native.select_isa("sse9")
    assert native.isa() == widest_isa


def test_threads_score_row_ranges_with_exactly_the_same_logits():
    model = _trained_like(9, 6, HybridConfig())
    scorer = for_inference(model)
    x = torch.randn(5000, 9)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = scorer(x)
        torch.set_num_threads(2)
        together = scorer(x)
    finally:
        torch.set_num_threads(threads)
    # Every row is one SIMD lane of the same arithmetic, whichever range it lands in.
    assert torch.equal(alone, together)
    ranges = native._split(5000, 2)
    assert len(ranges) == 2 and ranges[0][0] == 0 and ranges[-1][1] == 5000
    assert ranges[0][1] == ranges[1][0]


def test_extreme_and_empty_inputs():
    model = _trained_like(9, 6, HybridConfig())
    scorer = for_inference(model)
    # Saturated gates and softmax: exp's range limits are exercised.
    x = torch.cat([torch.randn(40, 9) * 1e4, torch.zeros(3, 9)])
    with torch.inference_mode():
        expected = model(x)
        logits = scorer(x)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, expected, rtol=1e-3, atol=1e-3)
    assert scorer(torch.empty(0, 9)).shape == (0, 6)


def test_a_wrong_feature_count_is_refused():
    scorer = for_inference(_trained_like(9, 6, HybridConfig()))
    with pytest.raises(ValueError, match=r"shape \(rows, 9\), got \(4, 10\)"):
        scorer(torch.zeros(4, 10))


def test_parameters_packed_for_another_model_are_refused():
    scorer = for_inference(_trained_like(9, 6, HybridConfig()))
    needed = len(scorer._params)
    scorer._params = scorer._params[:-1]
    with pytest.raises(
        ValueError, match=f"packed {needed - 1:,} parameters .* needs {needed:,}"
    ):
        scorer._check()


def test_a_pickled_scorer_gives_the_same_logits():
    scorer = for_inference(_trained_like(9, 6, HybridConfig()))
    x = torch.randn(50, 9)
    assert torch.equal(pickle.loads(pickle.dumps(scorer))(x), scorer(x))


def test_stage_timers_cover_the_whole_pass():
    scorer = for_inference(_trained_like(9, 6, HybridConfig()))
    seconds = scorer.stage_seconds(np.random.default_rng(0).normal(size=(4096, 9)))
    assert list(seconds) == ["conv", "gru", "attention", "head"]
    assert all(s > 0 for s in seconds.values())


def test_backends_of_for_inference():
    model = _trained_like(9, 6, HybridConfig())
    assert isinstance(for_inference(model, backend="torch"), InferenceHybridIDS)
    assert isinstance(for_inference(model, backend="native"), native.NativeHybridIDS)
    with pytest.raises(ValueError, match="backend must be one of"):
        for_inference(model, backend="onnx")


def test_without_the_native_pass_scoring_falls_back_to_the_torch_rewrite(monkeypatch):
    model = _trained_like(9, 6, HybridConfig())
    monkeypatch.setattr(native, "available", lambda: False)
    fallback = for_inference(model)
    assert isinstance(fallback, InferenceHybridIDS)
    x = torch.randn(30, 9)
    with torch.inference_mode():
        torch.testing.assert_close(fallback(x), model(x), rtol=1e-4, atol=1e-4)
