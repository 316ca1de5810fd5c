"""Loading weights: offline Hub cache, the authors' mmaction layout, conversion to a Hub-ready folder."""
import argparse
import json
import re
import shutil
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from tps_timm.convert import convert, main as convert_main
from tps_timm.tps_swin import checkpoint_filter_fn

CLIP = torch.randn(1, 3, 4, 64, 64)


def add_to_hf_cache(cache_dir: Path, repo_id: str, files: dict) -> None:
    """Lay files out exactly as huggingface_hub caches a download (refs/main -> snapshots/<commit>/...)."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    commit = 'a' * 40
    (repo / 'refs').mkdir(parents=True, exist_ok=True)
    (repo / 'refs' / 'main').write_text(commit)
    snapshot = repo / 'snapshots' / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        shutil.copy(src, snapshot / name)


def randomized(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.fixture(scope='module')
def tiny_sthv2():
    return randomized('tps_swin_tiny', num_classes=174)


def authors_layout(model: torch.nn.Module) -> dict:
    """Our weights in the authors' mmaction layout: backbone./cls_head. keys, merging at the end of each stage."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith('head.fc.'):
            out[k.replace('head.fc.', 'cls_head.fc_cls.')] = v
            continue
        k = re.sub(r'^layers\.(\d+)\.downsample', lambda m: f'layers.{int(m.group(1)) - 1}.downsample', k)
        out['backbone.' + k] = v
        if k.endswith('relative_position_bias_table'):  # derived buffers the reference also stores
            out['backbone.' + k.replace('bias_table', 'index')] = torch.zeros(16, 49, 49, dtype=torch.long)
            out['backbone.' + k.replace('bias_table', 'index_old')] = torch.zeros(16, 49, 49, dtype=torch.long)
    return out


def test_video_tag_loads_from_offline_hub_cache(tmp_path, tiny_sthv2):
    save_file(tiny_sthv2.state_dict(), tmp_path / 'model.safetensors')
    add_to_hf_cache(tmp_path / 'hub', 'tps-timm/tps_swin_tiny.sthv2',
                    {'model.safetensors': tmp_path / 'model.safetensors'})
    with torch.no_grad():
        expected = tiny_sthv2(CLIP)
        for name in ('tps_swin_tiny_sthv2', 'tps_swin_tiny.sthv2'):
            model = timm.create_model(name, pretrained=True, cache_dir=tmp_path / 'hub').eval()
            assert torch.equal(model(CLIP), expected), name


def test_hf_hub_name_with_config_loads_from_offline_cache(tmp_path, tiny_sthv2):
    folder = convert_from_model(tiny_sthv2, tmp_path, labels=[f'action {i}' for i in range(174)])
    add_to_hf_cache(tmp_path / 'hub', 'someone/my-tps', {f.name: f for f in folder.iterdir()})
    model = timm.create_model('hf-hub:someone/my-tps', pretrained=True, cache_dir=tmp_path / 'hub').eval()
    with torch.no_grad():
        assert torch.equal(model(CLIP), tiny_sthv2(CLIP))
    assert model.pretrained_cfg['label_names'][3] == 'action 3'
    assert model.pretrained_cfg['sampling'] == 'uniform'


def test_imagenet_tag_inflates_timm_2d_swin_from_offline_cache(tmp_path):
    swin2d = randomized('swin_tiny_patch4_window7_224')
    save_file(swin2d.state_dict(), tmp_path / 'model.safetensors')
    add_to_hf_cache(tmp_path / 'hub', 'timm/swin_tiny_patch4_window7_224.ms_in1k',
                    {'model.safetensors': tmp_path / 'model.safetensors'})
    model = timm.create_model('tps_swin_tiny.ms_in1k', pretrained=True, cache_dir=tmp_path / 'hub').eval()
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (model(image.unsqueeze(2).expand(-1, -1, 4, -1, -1)) - swin2d(image)).abs().max() < 1e-4
    # a new head for a video dataset keeps the inflated backbone
    video = timm.create_model('tps_swin_tiny.ms_in1k', pretrained=True, num_classes=400, cache_dir=tmp_path / 'hub')
    assert video.num_classes == 400
    assert torch.equal(video.patch_embed.proj.weight, model.patch_embed.proj.weight)


def test_microsoft_layout_2d_swin_inflates_like_timm_layout():
    swin2d = randomized('swin_tiny_patch4_window7_224')
    timm_sd = swin2d.state_dict()
    ms_sd = {}
    for k, v in timm_sd.items():
        k = re.sub(r'^layers\.(\d+)\.downsample', lambda m: f'layers.{int(m.group(1)) - 1}.downsample', k)
        ms_sd[k.replace('head.fc.', 'head.')] = v
    model = timm.create_model('tps_swin_tiny', num_classes=1000)
    a, b = checkpoint_filter_fn({'model': ms_sd}, model), checkpoint_filter_fn(timm_sd, model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a['layers.0.blocks.0.attn.relative_position_bias_table'].shape == (31 * 169, 3)


def test_authors_mmaction_checkpoint_loads_as_in_the_readme(tmp_path):
    """The issue's own call: the authors' K400 file through timm's pretrained machinery."""
    k400 = randomized('tps_swin_tiny', num_classes=400)
    path = tmp_path / 'pytorch_model.pt'
    torch.save({'meta': {'epoch': 30, 'mmcv_version': '1.3.1'}, 'state_dict': authors_layout(k400)}, path)
    model = timm.create_model('tps_swin_tiny', pretrained=True, num_classes=400,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    with torch.no_grad():
        assert torch.equal(model(CLIP), k400(CLIP))


def test_authors_checkpoint_with_module_prefix_and_model_wrapper(tmp_path, tiny_sthv2):
    sd = {'module.' + k: v for k, v in authors_layout(tiny_sthv2).items()}
    path = tmp_path / 'pytorch_model.pt'
    torch.save({'model': sd}, path)
    model = timm.create_model('tps_swin_tiny.sthv2', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    with torch.no_grad():
        assert torch.equal(model.eval()(CLIP), tiny_sthv2(CLIP))


def test_bias_tables_resampled_along_time_for_longer_clips(tiny_sthv2):
    long = timm.create_model('tps_swin_tiny', num_classes=174, max_temporal_tokens=24)
    sd = checkpoint_filter_fn(tiny_sthv2.state_dict(), long)
    long.load_state_dict(sd)
    key = 'layers.2.blocks.1.attn.relative_position_bias_table'
    old = tiny_sthv2.state_dict()[key].view(31, 169, -1)
    new = long.state_dict()[key].view(47, 169, -1)
    # stretched along time: the ends and dt = 0 (row Dt - 1) keep their values
    assert all(torch.allclose(new[i], old[j], atol=1e-6) for i, j in ((0, 0), (-1, -1), (23, 15)))
    assert long.eval()(torch.randn(1, 3, 48, 64, 64)).shape == (1, 174)


def test_missing_hub_weights_name_the_repo_and_the_local_way(tmp_path):
    with pytest.raises(RuntimeError) as err:
        timm.create_model('tps_swin_tiny.k400', pretrained=True, cache_dir=tmp_path)
    message = str(err.value)
    assert 'tps-timm/tps_swin_tiny.k400' in message and 'pretrained_cfg_overlay=dict(file=' in message


def convert_from_model(model, tmp_path, labels=None) -> Path:
    torch.save({'state_dict': authors_layout(model)}, tmp_path / 'ckpt.pth')
    return convert(str(tmp_path / 'ckpt.pth'), str(tmp_path / 'out'), 'tps_swin_tiny', label_names=labels,
                   pretrained_cfg=dict(num_frames=16, sampling='uniform'))


def test_convert_to_local_dir_round_trip(tmp_path, tiny_sthv2):
    out = convert_from_model(tiny_sthv2, tmp_path, labels=[f'class {i}' for i in range(174)])
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == 'tps_swin_tiny' and config['num_classes'] == 174
    assert config['label_names'][5] == 'class 5' and config['pretrained_cfg']['num_frames'] == 16
    model = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(model(CLIP), tiny_sthv2(CLIP))
    assert model.pretrained_cfg['num_frames'] == 16


def test_convert_cli_refuses_untrusted_pickles(tmp_path, tiny_sthv2, capsys):
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': authors_layout(tiny_sthv2), 'meta': argparse.Namespace(cfg='x')}, path)
    labels = tmp_path / 'labels.txt'
    labels.write_text('\n'.join(f'c{i}' for i in range(174)))
    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(path), str(tmp_path / 'out'), '--model', 'tps_swin_tiny'])
    assert exit_info.value.code == 2 and '--trust-pickle' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()
    convert_main([str(path), str(tmp_path / 'out'), '--model', 'tps_swin_tiny', '--trust-pickle',
                  '--labels', str(labels)])
    assert json.loads((tmp_path / 'out' / 'config.json').read_text())['label_names'][-1] == 'c173'


def test_convert_rejects_wrong_label_count_and_mismatched_weights(tmp_path, tiny_sthv2):
    torch.save(tiny_sthv2.state_dict(), tmp_path / 'ours.pth')
    with pytest.raises(ValueError, match='3 label names given for 174 classes'):
        convert(str(tmp_path / 'ours.pth'), str(tmp_path / 'out'), 'tps_swin_tiny', label_names=['a', 'b', 'c'])
    with pytest.raises(ValueError, match='does not fit tps_swin_base|heads'):
        convert(str(tmp_path / 'ours.pth'), str(tmp_path / 'out'), 'tps_swin_base')
    with pytest.raises(FileNotFoundError, match='no such checkpoint'):
        convert(str(tmp_path / 'missing.pth'), str(tmp_path / 'out'))


def test_repo_without_weights_names_the_repo(tmp_path):
    """A Hub repo that exists but holds no weight file yet (our video repos until weights are pushed)."""
    (tmp_path / 'README.md').write_text('weights coming soon')
    add_to_hf_cache(tmp_path / 'hub', 'tps-timm/tps_swin_tiny.sthv1', {'README.md': tmp_path / 'README.md'})
    with pytest.raises(RuntimeError, match=r"tps-timm/tps_swin_tiny\.sthv1.*\n.*local file"):
        timm.create_model('tps_swin_tiny.sthv1', pretrained=True, cache_dir=tmp_path / 'hub')
