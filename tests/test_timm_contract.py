import pytest
import timm
import torch
from timm.optim import create_optimizer_v2

from conftest import SMALL, randomize_, small_model

X = torch.randn(2, 3, 8, 64, 64)


def test_forward_features_head_and_pre_logits(model):
    with torch.no_grad():
        feats = model.forward_features(X)
        assert feats.shape == (2, 4, 2, 2, model.num_features)
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (2, model.head_hidden_size)
        assert torch.allclose(pooled, feats.mean((1, 2, 3)), atol=1e-6)  # average over (D, H, W)
        assert torch.allclose(model.forward_head(feats), model.get_classifier()(pooled), atol=1e-6)
        assert torch.allclose(model(X), model.forward_head(feats))


def test_reset_classifier(model):
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.get_classifier().out_features == 5
    assert model(X).shape == (2, 5)
    model.reset_classifier(0)
    assert model(X).shape == (2, model.num_features)
    model.reset_classifier(3, global_pool='max')
    with torch.no_grad():
        feats = model.forward_features(X)
        assert torch.allclose(model.forward_head(feats, pre_logits=True), feats.amax((1, 2, 3)))


def test_grad_checkpointing_recomputes_with_equal_gradients():
    def run(enable):
        model = randomize_(small_model()).train()
        model.set_grad_checkpointing(enable)
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            torch.manual_seed(0)
            out = model(X)
        out.square().sum().backward()
        return out, [p.grad for p in model.parameters()], sum(saved)

    out_a, grads_a, saved_a = run(False)
    out_b, grads_b, saved_b = run(True)
    assert torch.allclose(out_a, out_b, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads_a, grads_b))
    assert saved_b < saved_a / 3  # block activations are recomputed, not stored


def test_layer_decay_and_no_weight_decay_groups():
    model = small_model()
    opt = create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.02, layer_decay=0.8)
    scales = {g['lr_scale'] for g in opt.param_groups}
    assert len(scales) >= len(SMALL['depths']) + 2  # stem, blocks ..., final norm
    name_of = {id(p): n for n, p in model.named_parameters()}
    no_decay = {name_of[id(p)] for g in opt.param_groups if g['weight_decay'] == 0 for p in g['params']}
    assert model.no_weight_decay() <= no_decay
    assert all('relative_position_bias_table' in n for n in model.no_weight_decay())
    assert 'layers.0.blocks.0.attn.qkv.weight' not in no_decay
    stem = [g['lr_scale'] for g in opt.param_groups for p in g['params'] if name_of[id(p)].startswith('patch_embed')]
    head = [g['lr_scale'] for g in opt.param_groups for p in g['params'] if name_of[id(p)].startswith('head')]
    assert max(stem) < min(head) == 1.0


def test_feature_info_and_forward_intermediates(model):
    assert [f['num_chs'] for f in model.feature_info] == [32, 64, 128, 256]
    assert [f['reduction'] for f in model.feature_info] == [4, 8, 16, 32]
    with torch.no_grad():
        final, inters = model.forward_intermediates(X)
        assert [tuple(t.shape) for t in inters] == [(2, 32, 4, 16, 16), (2, 64, 4, 8, 8), (2, 128, 4, 4, 4),
                                                    (2, 256, 4, 2, 2)]
        assert torch.allclose(final, model.forward_features(X), atol=1e-6)
        last = model.forward_intermediates(X, indices=[1], output_fmt='NHWC', intermediates_only=True, stop_early=True)
        assert len(last) == 1 and last[0].shape == (2, 4, 8, 8, 64)
        assert torch.allclose(last[0].permute(0, 4, 1, 2, 3), inters[1], atol=1e-6)
    with pytest.raises(ValueError, match='output_fmt'):
        model.forward_intermediates(X, output_fmt='NLC')


def test_prune_intermediate_layers(model):
    with torch.no_grad():
        full = model.forward_intermediates(X, indices=[1, 2], intermediates_only=True)
        kept = model.prune_intermediate_layers(indices=[1])
        assert kept == [1] and len(model.layers) == 2 and model.num_features == 64
        pruned = model.forward_intermediates(X, indices=[1], intermediates_only=True)
        assert torch.allclose(pruned[0], full[0], atol=1e-6)
        assert model(X).shape == (2, 4, 8, 8, 64)  # unpooled, as timm's pruned Swin


def test_features_only_returns_video_maps():
    model = timm.create_model('tps_swin_tiny', features_only=True, out_indices=(1, 3)).eval()
    assert model.feature_info.channels() == [192, 768]
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 4, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 192, 2, 8, 8), (1, 768, 2, 2, 2)]


def test_registry_names_and_aliases():
    assert {'tps_swin_tiny', 'tps_swin_small', 'tps_swin_base', 'tps_swin_large',
            'tps_swin_base_sthv2'} <= set(timm.list_models('tps_*'))
    pretrained = set(timm.list_pretrained('tps_*'))
    for size in ('tiny', 'small', 'base', 'large'):
        assert {f'tps_swin_{size}.{tag}' for tag in ('k400', 'sthv2', 'sthv1', 'diving48', 'ms_in22k')} <= pretrained
    with torch.device('meta'):
        alias = timm.create_model('tps_swin_base_sthv2')
        tagged = timm.create_model('tps_swin_base.sthv2')
    assert alias.num_classes == tagged.num_classes == 174
    assert alias.pretrained_cfg == tagged.pretrained_cfg
    assert alias.pretrained_cfg['hf_hub_id'] == 'tps-timm/tps_swin_base.sthv2'
    assert alias.pretrained_cfg['sampling'] == 'uniform' and alias.pretrained_cfg['num_frames'] == 32
    assert [n for n, _ in alias.named_parameters()] == [n for n, _ in tagged.named_parameters()]
    assert timm.create_model('tps_swin_tiny_diving48', pretrained=False).num_classes == 48


@pytest.mark.parametrize('name', ['tps_swin_tiny', 'tps_swin_base.sthv2', 'tps_swin_large.ms_in22k'])
def test_pretrained_cfg_and_attributes_as_timm_swin(name):
    """As timm's Swin: ``pool_size`` is the final map of the config's clip (``num_frames`` frames of ``input_size``),
    here ``(D, H/32, W/32)``; ``output_fmt`` names the channels-last maps, 'NDHWC' as timm's Swin's 'NHWC'."""
    with torch.device('meta'):
        model = timm.create_model(name)
        cfg = model.pretrained_cfg
        assert cfg['input_size'] == (3, 224, 224) and cfg['num_frames'] == 32 and cfg['pool_size'] == (16, 7, 7)
        feats = model.forward_features(torch.empty(1, cfg['input_size'][0], cfg['num_frames'], *cfg['input_size'][1:]))
    assert model.output_fmt == 'NDHWC' and tuple(feats.shape) == (1, *cfg['pool_size'], model.num_features)
    # timm's hook wrapper gives the stages' own channels-last maps and says so in timm's words
    hooks = timm.create_model('tps_swin_tiny', img_size=64, num_frames=4, features_only=True, feature_cls='hook')
    assert hooks.output_fmt == 'NHWC' and hooks(torch.randn(1, 3, 4, 64, 64))[0].shape == (1, 2, 16, 16, 96)


def test_tps_vit_default_tags_are_timms_defaults():
    """Every ``tps_vit_*`` model lists its image model's tags in timm's order, so its default tag is timm's default
    for that ViT (small: augreg_in21k_ft_in1k, large: augreg_in21k_ft_in1k, CLIP: laion2b_ft_in12k_in1k)."""
    from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg
    from tps_timm.tps_vit import _IMAGE_MODELS
    for video_name, image_name in _IMAGE_MODELS.items():
        image_tags = [k.split('.', 1)[1] for k in get_arch_pretrained_cfgs(image_name)]
        assert [k.split('.', 1)[1] for k in get_arch_pretrained_cfgs(video_name)] == image_tags
        assert get_pretrained_cfg(video_name).tag == get_pretrained_cfg(image_name).tag == image_tags[0]
        video_cfg = get_pretrained_cfg(video_name)
        assert video_cfg.pool_size == get_pretrained_cfg(image_name).pool_size  # timm's ViT's (None: token maps)
        assert video_cfg.num_frames == 16
    assert get_pretrained_cfg('tps_vit_small_patch16_224').tag == 'augreg_in21k_ft_in1k'
    assert get_pretrained_cfg('tps_vit_base_patch16_clip_224').tag == 'laion2b_ft_in12k_in1k'
