import logging

import pytest
import timm
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tps_timm.tps_swin import checkpoint_filter_fn, resample_bias_table

from conftest import SMALL, randomize_, small_model
from reference import reference_block


@pytest.mark.parametrize('name,classes,millions', [
    ('tps_swin_tiny', 400, 28.53), ('tps_swin_tiny', 174, 28.36), ('tps_swin_small', 400, 50.58),
    ('tps_swin_small', 174, 50.41), ('tps_swin_base', 400, 89.07), ('tps_swin_base', 174, 88.83),
    ('tps_swin_large', 400, 198.48), ('tps_swin_large', 174, 198.13)])
def test_parameter_counts(name, classes, millions):
    with torch.device('meta'):
        model = timm.create_model(name, num_classes=classes)
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - millions) / millions < 1e-3


@pytest.mark.parametrize('mixing', ['tps', 'patch', 'channel', 'none'])
@pytest.mark.parametrize('size', [(56, 56), (60, 44)])
def test_blocks_equal_literal_spec_reference(mixing, size):
    """Every block of a 16-token clip (the reference setting) equals the step-by-step spec implementation."""
    model = randomize_(small_model(temporal_mixing=mixing)).double()
    x = torch.randn(1, 3, 32, *size, dtype=torch.float64)
    with torch.no_grad():
        feats = model.patch_embed(x)
        for stage in model.layers:
            feats = stage.downsample(feats)
            for block in stage.blocks:
                expected = reference_block(block, feats)
                feats = block(feats)
                assert torch.allclose(feats, expected, atol=1e-10), (block.temporal_shift, block.shift_window)


@pytest.mark.parametrize('frames', [1, 2, 7, 16, 32, 40])
def test_output_shapes_any_clip_length(frames):
    model = small_model(max_temporal_tokens=20)
    x = torch.randn(2, 3, frames, 45, 61)  # odd frame sizes: padded inside
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, -(-frames // 2), 2, 2, model.num_features)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def test_clip_longer_than_bias_table_reads_the_table_resampled_along_time():
    """A 16-token model on a 40-frame clip (20 tokens) computes what a 20-token model loaded from it computes: the
    run-time resampling and the checkpoint one are the same."""
    short = randomize_(small_model())
    long = small_model(max_temporal_tokens=20)
    long.load_state_dict(checkpoint_filter_fn(short.state_dict(), long))
    x = torch.randn(1, 3, 40, 32, 32)
    with torch.no_grad():
        assert torch.allclose(short(x), long(x), atol=1e-5)
    short.train()(x).sum().backward()
    assert short.layers[0].blocks[1].attn.relative_position_bias_table.grad.abs().sum() > 0
    # the resampling itself: identity within the table; stretched, it keeps the ends and dt = 0
    table = short.layers[0].blocks[1].attn.relative_position_bias_table.detach()
    assert resample_bias_table(table, 169, 16) is table
    stretched = resample_bias_table(table, 169, 20).view(39, 169, -1)
    assert all(torch.allclose(stretched[i], table.view(31, 169, -1)[j], atol=1e-6) for i, j in ((0, 0), (-1, -1),
                                                                                                 (19, 15)))


@pytest.mark.parametrize('x,message', [
    (torch.randn(3, 8, 32, 32), r'\(B, 3, T, H, W\).*shape \(3, 8, 32, 32\)'),
    (torch.randn(1, 1, 8, 32, 32), r'shape \(1, 1, 8, 32, 32\)'),
    (torch.zeros(1, 3, 8, 32, 32, dtype=torch.uint8), 'torch.uint8'),
])
def test_bad_input_raises_value_error(x, message):
    with pytest.raises(ValueError, match=message):
        small_model()(x)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match='temporal_mixing'):
        small_model(temporal_mixing='both')
    with pytest.raises(ValueError, match='max_temporal_tokens'):
        small_model(max_temporal_tokens=0)


def test_inflated_2d_swin_on_static_clip_gives_2d_logits():
    """Shifts, bias indexing and inflation must all be right for a clip of one repeated image to match 2D Swin."""
    torch.manual_seed(0)
    swin2d = timm.create_model('swin_tiny_patch4_window7_224').eval()
    with torch.no_grad():  # random, non-trivial values everywhere (bias tables, norms, head)
        for p in swin2d.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model = timm.create_model('tps_swin_tiny', num_classes=1000).eval()
    model.load_state_dict(checkpoint_filter_fn(swin2d.state_dict(), model))
    image = torch.randn(2, 3, 224, 224)
    clip = image.unsqueeze(2).expand(-1, -1, 6, -1, -1)
    with torch.no_grad():
        expected = swin2d(image)
        logits = model(clip)
        moving = model(torch.randn(2, 3, 6, 224, 224))
    assert (logits - expected).abs().max() <= 1e-4
    assert (moving - expected).abs().max() > 1e-2  # and the frames do matter


def _swap_temporal_tokens(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x[:, :, 2:4], x[:, :, :2], x[:, :, 4:]], 2)  # token 0 <-> token 1 (frame pairs)


def test_no_temporal_mixing_is_a_per_frame_2d_swin():
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        flat = randomize_(small_model(temporal_mixing='none'))
        a, b = flat.forward_features(x), flat.forward_features(_swap_temporal_tokens(x))
        assert torch.allclose(a[:, [1, 0, 2, 3]], b, atol=1e-5)
        tps = randomize_(small_model())
        a, b = tps.forward_features(x), tps.forward_features(_swap_temporal_tokens(x))
        assert not torch.allclose(a[:, [1, 0, 2, 3]], b, atol=1e-3)


def test_flops_tiny_32x224():
    model = timm.create_model('tps_swin_tiny').eval()
    # the math backend decomposes SDPA into matmuls that the counter sees, whichever fused kernel would run
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 32, 224, 224))
    macs = counter.get_total_flops() / 2
    assert abs(macs / 72e9 - 1) < 0.02


def test_fused_and_explicit_attention_paths_agree():
    model = randomize_(small_model())
    x = torch.randn(2, 3, 6, 40, 40)
    with torch.no_grad():
        fused = model(x)
        for m in model.modules():
            if hasattr(m, 'fused_attn'):
                m.fused_attn = False
        explicit = model(x)
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_gradients_reach_every_parameter(model):
    model.train()
    model(torch.randn(2, 3, 4, 64, 64)).sum().backward()  # >1 token per window everywhere
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()), \
        [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]


def test_training_after_an_inference_mode_forward():
    """Predict, then fine-tune the same model in one session: nothing built under inference mode is kept (the window
    layouts are buffers made with the model, or built per call for other sizes)."""
    model = randomize_(small_model(img_size=32, num_frames=4))
    for x in (torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 6, 40, 36)):  # buffered layouts, then built ones
        with torch.inference_mode():
            model.eval()(x)
        model.train()(x).sum().backward()


def test_window_layouts_are_buffers_for_the_input_size():
    model = small_model(img_size=64, num_frames=8)
    block = model.layers[1].blocks[1]
    assert block.feat_size == (4, 8, 8) and block.attn_mask.shape == (4, 49, 49)  # 8 x 8 maps padded to 2 x 2 windows
    assert not any('index' in k or 'mask' in k for k in model.state_dict())  # derived, not saved
    x = torch.randn(1, 3, 12, 48, 48)
    with torch.no_grad():
        expected = model(x)  # layouts built per call
        model.set_input_size(img_size=48, num_frames=12)
        assert model.layers[1].blocks[1].feat_size == (6, 6, 6)
        assert torch.equal(model(x), expected)



def test_a_clip_size_without_kept_layouts_is_logged_once_per_size_and_model(caplog):
    """A user who benchmarks another clip size learns why it is slower: one INFO line per token grid and model."""
    def logged(model, *shapes):
        caplog.clear()
        with torch.no_grad(), caplog.at_level(logging.INFO, logger='tps_timm'):
            for shape in shapes:
                model(torch.randn(shape))
        return [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]

    model = small_model(img_size=32, num_frames=4)
    assert logged(model, (1, 3, 4, 32, 32), (2, 3, 3, 32, 32)) == []  # 3 frames: the kept grid (2 tokens) too
    messages = logged(model, (1, 3, 6, 40, 36), (2, 3, 6, 40, 36), (1, 3, 5, 40, 36), (1, 3, 8, 32, 32))
    assert len(messages) == 2 and messages[0].startswith('TPS-Swin: clips of 6 x 40 x 36 (T x H x W; token grid '
                                                         '3 x 10 x 9) build their window layouts per call')
    assert '(2 x 8 x 8)' in messages[0] and 'set_input_size' in messages[0] and 'token grid 4 x 8 x 8' in messages[1]
    assert logged(model, (1, 3, 6, 40, 36)) == []
    assert len(logged(small_model(img_size=32, num_frames=4), (1, 3, 6, 40, 36))) == 1  # per model


def test_model_built_on_meta_materialises_with_timm(model):
    """timm's reinit_non_persistent_buffers (after to_empty from the meta device) rebuilds the layouts and rates."""
    from timm.models._manipulate import reinit_non_persistent_buffers
    with torch.device('meta'):
        empty = small_model(img_size=32, num_frames=4, drop_path_rate=0.2)
    assert empty.layers[0].blocks[0].partition_index.is_meta
    empty = empty.to_empty(device='cpu')
    reinit_non_persistent_buffers(empty)
    empty.load_state_dict(small_model(img_size=32, num_frames=4, drop_path_rate=0.2).state_dict())
    reference = small_model(img_size=32, num_frames=4, drop_path_rate=0.2)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(empty.eval()(x), reference.eval()(x))
    assert empty.layers[3].blocks[1].drop_path1.keep_prob.item() == pytest.approx(0.8)


def test_benchmark_eager_baseline_computes_the_same_function():
    """benchmarks/bench.py times our fused model against the literal shifts: both must compute the same thing."""
    from bench import use_literal_shifts
    fused = randomize_(small_model())
    literal = randomize_(small_model())
    assert use_literal_shifts(literal) == sum(SMALL['depths'])  # every block swapped: not the model against itself
    x = torch.randn(2, 3, 8, 60, 44)
    with torch.no_grad():
        assert torch.allclose(fused(x), literal(x), atol=1e-5)


def test_cpu_attention_kernels():
    """CPU inference runs SDPA's fused kernel (a 3D bias would send it to the math fallback); CPU training, where the
    bias needs a gradient and SDPA has no fused kernel, runs the explicit softmax."""
    from bench import attention_kernels
    model = small_model()
    x = torch.randn(1, 3, 4, 56, 56)

    def infer():
        with torch.no_grad():
            model.eval()(x)

    assert attention_kernels(infer, 'cpu') == '_scaled_dot_product_flash_attention_for_cpu'
    assert attention_kernels(lambda: model.train()(x).sum().backward(), 'cpu') == 'explicit softmax (no SDPA op)'


def test_saved_activations_match_the_2d_swin_on_the_same_frames():
    """Training memory that grows with the batch: what autograd keeps for backward stays at the 2D Swin's level."""
    from bench import saved_activation_bytes
    from timm.models.swin_transformer import SwinTransformer
    frames, size = 4, 112
    video = small_model(patch_size=(1, 4, 4))
    image = SwinTransformer(img_size=size, num_classes=10, **SMALL)
    saved_video = saved_activation_bytes(video, torch.randn(1, 3, frames, size, size))
    saved_image = saved_activation_bytes(image, torch.randn(frames, 3, size, size))
    assert saved_video <= 1.02 * saved_image, (saved_video, saved_image)
