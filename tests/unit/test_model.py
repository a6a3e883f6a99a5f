import pytest
import torch

from iids.model import HybridConfig, HybridIDS, for_inference


@pytest.mark.parametrize(
    ("features", "classes", "strides", "length"),
    [(9, 6, (1, 1), 9), (97, 15, (2, 2), 25), (9, 2, (2, 1), 5)],
)
def test_output_shape_and_sequence_length(features, classes, strides, length):
    model = HybridIDS(features, classes, HybridConfig(strides=strides))
    logits = model(torch.randn(7, features))
    assert logits.shape == (7, classes)
    assert model.sequence_length() == length
    assert torch.isfinite(logits).all()


def test_eval_mode_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    model = HybridIDS(9, 6, HybridConfig()).eval()
    x = torch.randn(16, 9)
    with torch.inference_mode():
        whole = model(x)
        parts = torch.cat([model(x[:5]), model(x[5:])])
    torch.testing.assert_close(whole, parts, rtol=1e-5, atol=1e-5)


def test_config_round_trip():
    config = HybridConfig(channels=16, num_blocks=3, strides=(1, 2, 2), gru_hidden=8)
    assert HybridConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"num_blocks": 3}, "strides needs one value per block"),
        ({"strides": (1, 3)}, "each stride must be 1 or 2"),
        ({"gru_hidden": 5, "num_heads": 4}, "num_heads .* must divide"),
        ({"dropout": 1.0}, "dropout must be in"),
    ],
)
def test_config_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HybridConfig(**kwargs)


def test_model_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.randn(512, 9)
    y = (x[:, 0] > 0).long() + (x[:, 3] > 1).long()
    model = HybridIDS(9, 3, HybridConfig())
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.inference_mode():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95


def test_bf16_autocast_keeps_the_gru_in_fp32_and_close_to_fp32():
    torch.manual_seed(0)
    model = HybridIDS(9, 6, HybridConfig()).eval()
    x = torch.randn(64, 9)
    seen = []
    model.gru.register_forward_hook(lambda m, i, o: seen.append(o[0].dtype))
    with torch.inference_mode():
        full = model(x)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            mixed = model(x)
    assert seen == [torch.float32, torch.float32]
    assert torch.isfinite(mixed).all()
    torch.testing.assert_close(mixed.float(), full, atol=0.1, rtol=0.1)


def test_written_out_attention_equals_the_attention_module():
    torch.manual_seed(0)
    model = HybridIDS(9, 6, HybridConfig())
    h = torch.randn(5, 9, 64)
    reference, _ = model.attn(h, h, h, need_weights=False)
    torch.testing.assert_close(
        model._self_attention(h), reference, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("features", "config"),
    [
        (60, HybridConfig(num_blocks=3, strides=(2, 1, 2))),
        (9, HybridConfig(gru_layers=2, gru_hidden=16, num_heads=2)),
        (13, HybridConfig(kernel_size=5, strides=(2, 2))),  # odd lengths, wide kernel
    ],
)
def test_inference_copy_keeps_the_outputs_without_batch_norms(features, config):
    torch.manual_seed(0)
    model = HybridIDS(features, 15, config)
    model.train()
    model(torch.randn(256, features) * 3 + 1)  # running statistics away from 0 and 1
    model.eval()
    fused = for_inference(model, backend="torch")
    fused.micro_batch = 64
    x = torch.randn(200, features)  # four micro-batches, the last one short
    with torch.inference_mode():
        expected = model(x)
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fused(x[:7]), expected[:7], rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())
    assert not any(isinstance(m, torch.nn.GRU) for m in fused.modules())
    assert fused.sequence_length() == model.sequence_length()
    # The trained model itself is untouched.
    blocks = sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    assert blocks == 1 + 2 * config.num_blocks + config.strides.count(2)


def test_inference_copy_keeps_the_gru_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = HybridIDS(9, 6, HybridConfig()).eval()
    fused = for_inference(model, backend="torch")
    seen = []
    fused.gru.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.randn(64, 9)
    with torch.inference_mode():
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            mixed = fused(x)
        full = model(x)
    assert seen == [torch.float32]
    torch.testing.assert_close(mixed.float(), full, atol=0.1, rtol=0.1)
