"""torch.fx: symbolic tracing of TPS-Swin and TPS-ViT (forward and backward equal eager, also at a clip size whose
layouts are built per call) and timm's FX feature extractor (``features_only=True, feature_cls='fx'``)."""
import pytest
import timm
import torch

from conftest import randomize_

# the named architectures, on clips small enough for the CPU: layouts kept for 8 x 64 x 64, built for 6 x 64 x 64
MODELS = [('tps_swin_tiny', dict(img_size=64, num_frames=8, num_classes=5)),
          ('tps_vit_small_patch16_224', dict(img_size=64, num_frames=8, num_classes=5))]
KEPT, OTHER = (1, 3, 8, 64, 64), (2, 3, 6, 64, 64)


def _forward_backward(model: torch.nn.Module, clip: torch.Tensor):
    clip = clip.clone().requires_grad_()
    torch.manual_seed(0)  # the same stochastic-depth draws in both runs (they run the same ops in the same order)
    out = model(clip)
    grads = torch.autograd.grad(out.square().sum(), [clip, *model.parameters()], allow_unused=True)
    return out, grads


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
@pytest.mark.parametrize('name,kwargs', MODELS, ids=[name for name, _ in MODELS])
def test_symbolic_trace_equals_eager_forward_and_backward(name, kwargs, train):
    """One traced graph serves the kept clip size and another: the steps that read the clip's size run as leaves."""
    model = randomize_(timm.create_model(name, **kwargs)).train(train)
    traced = torch.fx.symbolic_trace(model)
    with pytest.raises(ValueError, match=r'T, H, W\)'):  # the graph keeps the input check
        traced(torch.randn(1, 3, 64, 64))
    for shape in (KEPT, OTHER):
        clip = torch.randn(shape)
        out, grads = _forward_backward(model, clip)
        traced_out, traced_grads = _forward_backward(traced, clip)
        assert (traced_out - out).abs().max() <= 1e-5
        assert len(traced_grads) == len(grads) and all(g is not None for g in grads)  # the input's and every param's
        for a, b in zip(traced_grads, grads):
            assert (a - b).abs().max() <= 1e-5


@pytest.mark.parametrize('name,kwargs', MODELS, ids=[name for name, _ in MODELS])
def test_features_only_fx_gives_the_default_paths_maps(name, kwargs):
    """``feature_cls='fx'`` (timm's FeatureGraphNet on the traced model) gives the maps ``(B, C, D, H, W)`` of the
    default path (``forward_intermediates``): same shapes, channels, values."""
    out_indices = dict(tps_swin_tiny=(0, 1, 2, 3), tps_vit_small_patch16_224=(3, 7, 11))[name]
    models = {}
    for feature_cls in ('fx', None):
        torch.manual_seed(0)  # the same weights
        extra = dict(feature_cls=feature_cls) if feature_cls else {}
        models[feature_cls] = timm.create_model(name, features_only=True, out_indices=out_indices, **kwargs,
                                                **extra).eval()
    fx, default = models['fx'], models[None]
    assert type(fx).__name__ == 'VideoFeatureGraphNet' and fx.feature_info.channels() == default.feature_info.channels()
    for shape in (KEPT, OTHER):
        clip = torch.randn(shape)
        with torch.no_grad():
            got, expected = fx(clip), default(clip)
        assert [t.shape for t in got] == [t.shape for t in expected]
        assert [t.shape[1] for t in got] == fx.feature_info.channels()
        assert all((a - b).abs().max() <= 1e-5 for a, b in zip(got, expected))
