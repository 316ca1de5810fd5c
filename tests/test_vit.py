"""TPS-ViT: timm's image ViTs as video models (to_video), their registered entrypoints and timm contract."""
import logging

import pytest
import timm
import torch
from safetensors.torch import save_file

from tps_timm import TpsVisionTransformer, to_video
from tps_timm.shift import patch_shift_offsets, token_patch_shift_index

from test_pretrained import add_to_hf_cache, randomized


def pre_logits(model, x):
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


@pytest.mark.parametrize('name,size', [('deit_small_patch16_224', 64), ('vit_base_patch16_clip_224', 48),
                                       ('vit_small_patch14_dinov2', 56), ('vit_base_patch16_siglip_224', 48)])
def test_static_clip_gives_the_image_models_features(name, size):
    """The inflated patch embedding, both shifts and the pooling over time are exact on a clip of one repeated
    frame, for DeiT / AugReg (class token), CLIP (pre-norm), DINOv2 (layer scale, registers-free) and SigLIP (no
    class token, attention pooling)."""
    image = randomized(name, img_size=size, num_classes=5)
    frame = torch.randn(2, 3, size, size)
    expected = pre_logits(image, frame)
    video = to_video(image, tubelet_size=2).eval()
    got = pre_logits(video, frame.unsqueeze(2).expand(-1, -1, 6, -1, -1))
    assert (got - expected).abs().max() <= 1e-4
    assert (pre_logits(video, torch.randn(2, 3, 6, size, size)) - expected).abs().max() > 1e-2  # frames matter


def test_without_temporal_mixing_it_is_the_image_model_on_every_frame():
    image = randomized('deit_tiny_patch16_224', img_size=32, num_classes=5)
    frames = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = image.forward_features(frames).mean(0, keepdim=True)  # the tokens averaged over the 4 frames
    video = to_video(image, tubelet_size=1, temporal_mixing='none').eval()
    with torch.no_grad():
        got = video.forward_features(frames.permute(1, 0, 2, 3).unsqueeze(0))
        swapped = video.forward_features(frames[[1, 0, 2, 3]].permute(1, 0, 2, 3).unsqueeze(0))
        assert torch.allclose(got, expected, atol=1e-5) and torch.allclose(got, swapped, atol=1e-5)
        tps = to_video(randomized('deit_tiny_patch16_224', img_size=32, num_classes=5), tubelet_size=1).eval()
        clip = frames.permute(1, 0, 2, 3).unsqueeze(0)
        assert not torch.allclose(tps.forward_features(clip), tps.forward_features(clip[:, :, [1, 0, 2, 3]]),
                                  atol=1e-3)


def test_patch_shift_reads_each_token_from_its_tile_frame_and_keeps_prefix_tokens():
    """Token (t, i, j) of the grid reads frame t - k(i mod 3, j mod 3); the class and register tokens stay."""
    frames, grid, prefix = 5, (4, 6), 2
    index = token_patch_shift_index(frames, grid, prefix)
    tokens = prefix + grid[0] * grid[1]
    source = index.partition.view(frames, tokens)
    assert torch.equal(source[:, :prefix], torch.arange(frames)[:, None] * tokens + torch.arange(prefix))
    offsets = patch_shift_offsets(grid)  # (row mod 3, col mod 3) of the grid position
    expected_frames = (torch.arange(frames).view(-1, 1, 1) - offsets) % frames
    assert torch.equal(source[:, prefix:] // tokens, expected_frames.flatten(1))
    assert torch.equal(source[:, prefix:] % tokens - prefix, torch.arange(grid[0] * grid[1]).expand(frames, -1))
    assert torch.equal(index.partition[index.reverse], torch.arange(frames * tokens))


def test_channel_and_patch_shifts_keep_gradients_and_any_clip_length():
    video = to_video(randomized('vit_small_patch16_224', img_size=32, num_classes=5, reg_tokens=2,
                                class_token=True), tubelet_size=2, num_frames=8).train()
    assert video.patch_shift_index.numel() == 4 * (3 + 4)  # 4 temporal tokens x (class, 2 registers, 2 x 2 patches)
    outputs = {frames: video(torch.randn(2, 3, frames, 32, 32)) for frames in (8, 5, 1)}
    assert all(out.shape == (2, 5) for out in outputs.values())
    outputs[5].sum().backward()  # 3 temporal tokens: both shifts move tokens and channels between frames
    assert all(p.grad is not None for p in video.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=r'\(B, C, T, H, W\)'):
        video(torch.randn(2, 3, 32, 32))


def test_a_clip_size_without_kept_permutations_is_logged_once_per_size(caplog):
    video = to_video(randomized('deit_tiny_patch16_224', img_size=32, num_classes=5, depth=2), num_frames=4).eval()
    with torch.no_grad(), caplog.at_level(logging.INFO, logger='tps_timm'):
        for frames in (4, 3, 6, 5, 6, 8):  # kept grid: 2 temporal tokens; 3 tokens twice, then 4
            video(torch.randn(1, 3, frames, 32, 32))
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(messages) == 2 and messages[0].startswith('TPS-ViT: clips of 6 x 32 x 32 (T x H x W; token grid '
                                                         '3 x 2 x 2) build their patch-shift permutation per call')


def test_kept_clip_frames_default_to_the_pretrained_configs():
    with torch.device('meta'):
        assert timm.create_model('tps_vit_small_patch16_224', depth=2).num_frames == 16
        overlay = dict(pretrained_cfg_overlay=dict(num_frames=8))
        assert timm.create_model('tps_vit_small_patch16_224', depth=2, **overlay).num_frames == 8
        assert to_video(timm.create_model('vit_small_patch16_224', depth=2)).num_frames == 16


def test_to_video_rejects_what_it_cannot_convert():
    with pytest.raises(TypeError, match='VisionTransformer'):
        to_video(timm.create_model('resnet18'))
    image = timm.create_model('vit_small_patch16_224', img_size=32)
    video = to_video(image)
    with pytest.raises(TypeError, match='video model already'):
        to_video(video)
    with pytest.raises(ValueError, match='temporal_mixing'):
        to_video(timm.create_model('vit_small_patch16_224', img_size=32), temporal_mixing='both')


def test_entrypoint_loads_timm_2d_tag_from_offline_cache_and_inflates(tmp_path):
    """`tps_vit_small_patch16_224.augreg_in21k_ft_in1k` with timm's weights (a local cache here), a new head."""
    image = randomized('vit_small_patch16_224')
    save_file(image.state_dict(), tmp_path / 'model.safetensors')
    add_to_hf_cache(tmp_path / 'hub', 'timm/vit_small_patch16_224.augreg_in21k_ft_in1k',
                    {'model.safetensors': tmp_path / 'model.safetensors'})
    video = timm.create_model('tps_vit_small_patch16_224.augreg_in21k_ft_in1k', pretrained=True, num_classes=174,
                              cache_dir=tmp_path / 'hub').eval()
    assert isinstance(video, TpsVisionTransformer) and video.num_classes == 174
    assert video.pretrained_cfg['num_frames'] == 16 and video.pretrained_cfg['hf_hub_id'].startswith('timm/')
    frame = torch.randn(1, 3, 224, 224)
    video.reset_classifier(0)
    image.reset_classifier(0)
    got = pre_logits(video, frame.unsqueeze(2).expand(-1, -1, 2, -1, -1))
    assert (got - pre_logits(image, frame)).abs().max() <= 1e-4
    # our own video checkpoint loads back as it is
    video2 = timm.create_model('tps_vit_small_patch16_224', num_classes=0)
    video2.load_state_dict(video.state_dict())


def test_features_only_and_intermediates_are_video_maps():
    model = timm.create_model('tps_vit_small_patch16_224', img_size=64, num_frames=4, features_only=True,
                              out_indices=(5, 11)).eval()
    with torch.no_grad():
        maps = model(torch.randn(2, 3, 4, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, 384, 2, 4, 4)] * 2
    full = timm.create_model('tps_vit_small_patch16_224', img_size=64, num_frames=4, num_classes=3).eval()
    with torch.no_grad():
        final, inters = full.forward_intermediates(torch.randn(1, 3, 4, 64, 64), indices=2)
    assert final.shape == (1, 17, 384) and [tuple(t.shape) for t in inters] == [(1, 384, 2, 4, 4)] * 2
    assert full.group_matcher() and 'pos_embed' in full.no_weight_decay()


def test_tps_vit_exports_to_onnx(tmp_path):
    pytest.importorskip('onnxruntime', reason='the export extra is not installed')
    from tps_timm.export import check_parity, export_model
    model = to_video(randomized('deit_tiny_patch16_224', img_size=32, num_classes=5, depth=4), tubelet_size=2).eval()
    path, _ = export_model(model, str(tmp_path / 'vit.onnx'), 'onnx', frames=8, img_size=32, dynamic_batch=True)
    assert check_parity(path, model, 'onnx', features=False, batch_sizes=(1, 3))['max_abs_diff'] <= 1e-4


def test_stochastic_depth_drops_whole_clips_and_unsupported_settings_are_refused():
    video = to_video(randomized('vit_small_patch16_224', img_size=32, num_classes=5, drop_path_rate=0.6),
                     tubelet_size=1, num_frames=4, temporal_pos_embed=True).train()
    torch.manual_seed(0)
    kept = video.blocks[-1]._drop_clips(video.blocks[-1].drop_path1, torch.ones(16 * 4, 5, 8), 4)  # rate 0.6
    per_frame = kept.view(16, 4, -1).amax(-1)  # 16 clips x 4 frames: a clip's frames are kept or dropped together
    assert torch.equal(per_frame, per_frame[:, :1].expand(-1, 4)) and 0 < per_frame[:, 0].count_nonzero() < 16
    assert 'temporal_pos_embed' in video.no_weight_decay()
    video.set_input_size(img_size=32, patch_size=16, num_frames=6)  # timm accepts an int patch size
    with pytest.raises(ValueError, match='patch_drop_rate=0'):
        to_video(timm.create_model('vit_small_patch16_224', img_size=32, depth=2, patch_drop_rate=0.5))
    meta = to_video(timm.create_model('vit_small_patch16_224', img_size=32, depth=2, drop_path_rate=0.1,
                                      device='meta'), temporal_pos_embed=True)
    assert {t.device.type for t in [*meta.parameters(), *meta.buffers()]} == {'meta'}


def test_a_tps_vit_checkpoint_loads_through_its_own_filter(tmp_path):
    """--checkpoint / load_model_weights / convert pick the model family's filter: a TPS-ViT checkpoint is not
    inflated as if its (O, C * tubelet, p, p) patch kernel were Swin's."""
    from tps_timm.convert import convert, load_model_weights
    kwargs = dict(img_size=32, depth=2, num_classes=5)
    torch.manual_seed(0)
    trained = timm.create_model('tps_vit_small_patch16_224', **kwargs).eval()
    save_file(trained.state_dict(), str(tmp_path / 'w.safetensors'))
    torch.manual_seed(1)
    fresh = timm.create_model('tps_vit_small_patch16_224', **kwargs).eval()
    load_model_weights(fresh, str(tmp_path / 'w.safetensors'))
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(clip), trained(clip))
    folder = convert(str(tmp_path / 'w.safetensors'), str(tmp_path / 'hub'), 'tps_vit_small_patch16_224',
                     model_args=dict(img_size=32, depth=2))
    loaded = timm.create_model(f'local-dir:{folder}', pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded(clip), trained(clip))
