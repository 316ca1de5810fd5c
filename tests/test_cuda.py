"""Checks that need a CUDA device: skipped without one (CI has none); run them on a GPU machine."""
import pytest
import torch

from tps_timm.shift import channel_shift, partition_channel_shift, patch_shift, window_token_index

from conftest import randomize_, small_model
from reference import channel_shift_reference, patch_shift_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def _forward_backward(op, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().clone().requires_grad_()
    y = op(x)
    y.backward(grad)
    return y.detach(), x.grad


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_shifts_on_cuda_equal_the_cpu_references(dtype):
    """The shifts are copies: on CUDA (channel_shift compiled there) they equal the CPU references bit for bit."""
    heads = 3
    tokens = torch.randn(2, 16, 4, 49, heads * 32).to(dtype)
    maps = torch.randn(2, 16, 14, 14, heads * 32).to(dtype)
    index = window_token_index(16, (14, 14), (7, 7), window_major=True)
    cuda_index = window_token_index(16, (14, 14), (7, 7), window_major=True, device='cuda')
    cases = [
        (lambda t: channel_shift(t, heads), lambda t: channel_shift_reference(t, heads), tokens),
        (lambda t: patch_shift(t, (7, 7)), lambda t: patch_shift_reference(t, (7, 7)), tokens),
        (lambda t: partition_channel_shift(t, *cuda_index, (7, 7), heads),
         lambda t: partition_channel_shift(t, *index, (7, 7), heads), maps),
    ]
    for fused, reference, x in cases:
        out_grad = torch.randn_like(reference(x))
        y_ref, grad_ref = _forward_backward(reference, x, out_grad)
        y, grad = _forward_backward(fused, x.cuda(), out_grad.cuda())
        assert torch.equal(y.cpu(), y_ref)
        assert torch.equal(grad.cpu(), grad_ref)


def test_bf16_autocast_on_cuda_matches_float32_on_cpu():
    model = randomize_(small_model())
    x = torch.randn(2, 3, 8, 56, 56)
    with torch.no_grad():
        expected = model.forward_features(x).flatten(1)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            got = model.cuda().forward_features(x.cuda()).float().cpu().flatten(1)
    assert torch.nn.functional.cosine_similarity(got, expected).min() > 0.999


@pytest.mark.parametrize('scope', ['model', 'regional'])
def test_compiled_training_step_on_cuda_matches_eager(scope):
    from tps_timm.compilation import compile_model
    model = randomize_(small_model(img_size=(60, 44), num_frames=8)).cuda().train()
    x = torch.randn(2, 3, 8, 60, 44, device='cuda')
    expected = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
    compiled = compile_model(model, scope, fullgraph=True)
    got = torch.autograd.grad(compiled(x).square().sum(), list(model.parameters()))
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)


def test_training_attention_runs_a_fused_sdpa_kernel():
    """With the relative position bias (and Swin's mask) as a mask that needs a gradient, SDPA on CUDA must pick a
    fused kernel, not its math fallback."""
    from bench import attention_kernels
    model = small_model().cuda().train()
    x = torch.randn(2, 3, 8, 56, 56, device='cuda')

    def step():
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = model(x).float().square().sum()
        loss.backward()

    kernels = attention_kernels(step, 'cuda')
    assert 'scaled_dot_product' in kernels and 'math' not in kernels, kernels


def test_rand_augment_on_the_batch_on_cuda_matches_the_cpu():
    """--aa-on-batch: each op of a draw on a CUDA batch gives the CPU tensor ops' clip (bilinear within rounding)."""
    import random

    from tps_timm.data import ClipRandAugment
    from tps_timm.data.rand_augment import CLIP_OPS
    clips = torch.randint(0, 256, (2, 3, 4, 40, 56), dtype=torch.uint8)
    augment = ClipRandAugment('rand-m9-n4-mstd0.5-inc1', dict(img_mean=(124, 116, 104), interpolation=2))
    rng = random.Random(0)
    for _ in range(30):
        for name, args, kwargs in augment.draw(rng):
            cpu = CLIP_OPS[name](clips[0].transpose(0, 1), *args, **kwargs)
            cuda = CLIP_OPS[name](clips[0].transpose(0, 1).cuda(), *args, **kwargs).cpu()
            assert cuda.dtype == torch.uint8 and (cuda.int() - cpu.int()).abs().max() <= 1, name
    out = augment.augment_batch(clips.cuda(), random.Random(1))
    assert out.is_cuda and out.shape == clips.shape
