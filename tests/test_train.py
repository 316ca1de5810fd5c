"""train.py end to end on generated videos, its building blocks, and the learning test."""
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from safetensors.torch import load_file

import train
from tps_timm.clip import ClipConfig
from tps_timm.data import make_demo_dataset
from tps_timm.training import VideoMixup, optimizer_param_groups

from test_pretrained import add_to_hf_cache

ROOT = Path(__file__).resolve().parents[1]
DEMO = ['--hparams', str(ROOT / 'hparams' / 'demo.yaml'), '--no-progress', '--workers', '0']


@pytest.fixture(scope='module')
def small_demo(tmp_path_factory):
    return str(tmp_path_factory.mktemp('demo_small'))


def run(tmp_path, demo_root, *extra, train_videos=48, val_videos=16):
    return train.main([*DEMO, '--demo-data', demo_root, '--demo-train-videos', str(train_videos),
                       '--demo-val-videos', str(val_videos), '--output', str(tmp_path), '--epochs', '2', *extra])


def test_few_step_run_writes_outputs(tmp_path, small_demo):
    # with RandAugment on the batch and two clips per decoded video: the same steps per epoch
    result = run(tmp_path, small_demo, '--model-ema', '--model-ema-decay', '0.9', '--aa', 'rand-m9-n2-mstd0.5-inc1',
                 '--aa-on-batch', '--repeated-aug', '2')
    out = Path(result['out_dir'])
    assert sorted(p.name for p in (out / 'checkpoints').iterdir()) == ['best', 'epoch_0', 'epoch_1']
    rows = (out / 'summary.csv').read_text().splitlines()
    assert len(rows) == 3 and 'eval_top1' in rows[0] and 'eval_ema_top1' in rows[0]
    assert 'lr: 0.001' in (out / 'args.yaml').read_text() and 'repeated_aug: 2' in (out / 'args.yaml').read_text()
    assert list((out / 'tensorboard').rglob('events.out.tfevents*'))
    config = json.loads((out / 'model' / 'config.json').read_text())
    assert config['label_names'][0] == 'moving left to right' and config['num_classes'] == 8
    assert config['pretrained_cfg']['num_frames'] == 8 and config['model_args']['embed_dim'] == 32
    assert config['pretrained_cfg']['dataset'] == 'demo'  # the recipe's, not the architecture's default tag
    assert config['pretrained_cfg']['train_video_seconds'] == pytest.approx(16 / 12)  # a timeline's window
    # every clip setting the run used, in the folder and in args.yaml alike
    recorded = ClipConfig().replace_from_flags(yaml.safe_load((out / 'args.yaml').read_text()))
    in_folder = ClipConfig.from_pretrained_cfg(config['pretrained_cfg'])  # with the data's duration, not a flag
    assert dataclasses.replace(in_folder, train_video_seconds=None) == recorded == ClipConfig(
        num_frames=8, frame_interval=1, sampling='uniform', img_size=48, short_side=48, num_clips=1, num_crops=1)
    card = (out / 'model' / 'README.md').read_text()
    assert 'pipeline_tag: video-classification' in card and 'import tps_timm' in card and '## Results' in card
    assert result['step'] == 2 * (48 // 16)


def test_resume_after_interruption_continues_exactly(tmp_path, small_demo, monkeypatch):
    full = run(tmp_path / 'full', small_demo)
    original = train.train_one_epoch
    calls = []

    def interrupted(epoch, *args, **kwargs):
        calls.append(epoch)
        if epoch == 1:
            raise KeyboardInterrupt  # killed during the second epoch
        return original(epoch, *args, **kwargs)

    monkeypatch.setattr(train, 'train_one_epoch', interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / 'cut', small_demo)
    monkeypatch.setattr(train, 'train_one_epoch', original)
    resumed = run(tmp_path / 'cut', small_demo, '--resume', 'auto')
    assert resumed['step'] == full['step'] and resumed['val_top1'] == full['val_top1']
    with open(Path(resumed['out_dir']) / 'summary.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['epoch'] for r in rows] == ['0', '1'] and float(rows[1]['eval_top1']) == full['val_top1']
    a = load_file(Path(full['model_dir']) / 'model.safetensors')
    b = load_file(Path(resumed['model_dir']) / 'model.safetensors')
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    opt_a = torch.load(Path(full['out_dir']) / 'checkpoints' / 'epoch_1' / 'optimizer.bin', weights_only=False)
    opt_b = torch.load(Path(resumed['out_dir']) / 'checkpoints' / 'epoch_1' / 'optimizer.bin', weights_only=False)
    assert [g['lr'] for g in opt_a['param_groups']] == [g['lr'] for g in opt_b['param_groups']]
    assert all(torch.allclose(opt_a['state'][i]['exp_avg'], opt_b['state'][i]['exp_avg'], atol=1e-6)
               for i in opt_a['state'])


def test_export_best_with_the_demo_set_exports_the_best_epoch(tmp_path, small_demo):
    """--export-best needs a validation list, which the demo set gives (checked after it filled --val-list)."""
    result = run(tmp_path, small_demo, '--export-best')
    exported = load_file(Path(result['model_dir']) / 'model.safetensors')
    best = load_file(Path(result['out_dir']) / 'checkpoints' / 'best' / 'model.safetensors')
    assert sorted(exported) == sorted(k.removeprefix('module.') for k in best)
    assert all(torch.equal(exported[k.removeprefix('module.')], v) for k, v in best.items())
    card = (Path(result['model_dir']) / 'README.md').read_text()
    assert f"the best epoch by validation top-1 (epoch {result['best_epoch']} of 2)" in card


def test_cutmix_pastes_the_same_box_into_every_frame():
    torch.manual_seed(0)
    mixup = VideoMixup(mixup_alpha=0., cutmix_alpha=1.0, prob=1.0, num_classes=4, label_smoothing=0.)
    for _ in range(5):
        x = torch.zeros(2, 3, 6, 32, 32)
        x[1] = 1.0  # sample 0 receives sample 1's box
        target = torch.tensor([0, 1])
        mixed, soft = mixup(x, target)
        pasted = mixed[0].mean(0)  # (T, H, W): 1 where the box is
        fraction = pasted.mean((1, 2))
        lam = soft[0, 0].item()
        assert torch.allclose(fraction, torch.full_like(fraction, 1 - lam), atol=1e-6)
        assert all(torch.equal(pasted[0], frame) for frame in pasted)
    with pytest.raises(ValueError, match='B, C, T, H, W'):
        mixup(torch.zeros(2, 3, 32, 32), torch.tensor([0, 1]))


@pytest.mark.parametrize('mode', ['batch', 'pair', 'elem'])
def test_mixup_never_mixes_two_views_of_one_video(mode):
    """--repeated-aug 2 with 3 videos per batch: the views are adjacent, and timm's B-1-i pairing would mix video 1's
    two views with each other. Each clip must be mixed with another video's clip, and keep its place."""
    mixup = VideoMixup(mixup_alpha=1.0, cutmix_alpha=0., prob=1.0, num_classes=3, label_smoothing=0., mode=mode)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = labels.float().view(6, 1, 1, 1, 1).expand(6, 3, 2, 8, 8).clone()  # each clip filled with its label
    for seed in range(5):
        torch.manual_seed(seed)
        np.random.seed(seed)
        mixed, soft = mixup(x.clone(), labels)
        for i in range(6):
            own = soft[i, labels[i]].item()
            assert own < 1, (i, soft[i])  # some of another class: not the other view of its own video
            other = next(c for c in range(3) if c != labels[i] and soft[i, c] > 0)
            expected = own * labels[i].item() + (1 - own) * other
            assert torch.allclose(mixed[i], torch.full_like(mixed[i], expected), atol=1e-5)  # its place kept


def test_backbone_lr_multiplier_and_no_decay_groups():
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    model = timm.create_model('tps_swin_tiny', embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
                              num_classes=5)
    optimizer = create_optimizer_v2(optimizer_param_groups(model, 0.02, backbone_lr_mult=0.1), 'adamw', lr=1e-3,
                                    weight_decay=0.02)
    scheduler, _ = create_scheduler_v2(optimizer, 'cosine', num_epochs=2, warmup_epochs=0, step_on_epochs=False,
                                       updates_per_epoch=10)
    scheduler.step_update(3)
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {names[id(p)]: g for g in optimizer.param_groups for p in g['params']}
    head_lr = by_name['head.fc.weight']['lr']
    assert by_name['layers.0.blocks.0.attn.qkv.weight']['lr'] == pytest.approx(0.1 * head_lr)
    assert by_name['layers.0.blocks.0.attn.qkv.weight']['weight_decay'] == 0.02
    for name in ('layers.0.blocks.0.attn.relative_position_bias_table', 'layers.0.blocks.0.norm1.weight',
                 'layers.0.blocks.0.attn.qkv.bias', 'head.fc.bias'):
        assert by_name[name]['weight_decay'] == 0, name
    assert len(by_name) == len(names)  # every parameter in exactly one group


def test_hub_folder_round_trip_and_push(tmp_path, small_demo, monkeypatch, capsys):
    result = run(tmp_path, small_demo, '--epochs', '1')
    folder = Path(result['model_dir'])
    local = timm.create_model(f'local-dir:{folder}', pretrained=True).eval()
    add_to_hf_cache(tmp_path / 'hub', 'me/tps-demo', {f.name: f for f in folder.iterdir()})
    hub = timm.create_model('hf-hub:me/tps-demo', pretrained=True, cache_dir=tmp_path / 'hub').eval()
    clip = torch.randn(1, 3, 8, 48, 48)
    with torch.no_grad():
        assert torch.equal(local(clip), hub(clip))
    assert hub.pretrained_cfg['label_names'][7] == 'rotating counter-clockwise'

    import huggingface_hub
    from huggingface_hub import constants
    from tps_timm.hub import main as hub_main
    uploads = []
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setenv('HF_TOKEN', 'hf_test')
    # the Hub's write side is all that is faked: the token check, the repo creation and the upload
    monkeypatch.setattr(huggingface_hub.HfApi, 'whoami', lambda self, **kw: {'name': 'me'})
    monkeypatch.setattr(huggingface_hub.HfApi, 'create_repo', lambda self, repo_id, **kw: repo_id)
    monkeypatch.setattr(huggingface_hub.HfApi, 'upload_folder', lambda self, folder_path, repo_id, **kw: uploads.append(
        (repo_id, {p.name: p.read_bytes() for p in Path(folder_path).iterdir()})) or 'url')
    card = (folder / 'README.md').read_text()
    hub_main(['push', str(folder), 'me/tps-demo'])
    assert [repo for repo, _ in uploads] == ['me/tps-demo']
    uploaded = uploads[0][1]
    assert sorted(uploaded) == sorted(p.name for p in folder.iterdir())
    assert uploaded['model.safetensors'] == (folder / 'model.safetensors').read_bytes()
    # the card uploaded loads the repo; the local one still loads the folder
    assert "create_model('hf-hub:me/tps-demo'" in uploaded['README.md'].decode() and 'local-dir:' in card
    assert (folder / 'README.md').read_text() == card
    with pytest.raises(SystemExit):
        hub_main(['push', str(tmp_path), 'me/tps-demo'])  # not a Hub-ready folder

    def unreachable(self, **kw):
        raise ConnectionError('[Errno -2] Name or service not known')

    files = sorted(p.name for p in folder.iterdir())
    monkeypatch.setattr(huggingface_hub.HfApi, 'upload_folder', unreachable)
    with pytest.raises(SystemExit) as exit_info:
        hub_main(['push', str(folder), 'me/tps-demo'])
    assert exit_info.value.code == 2 and sorted(p.name for p in folder.iterdir()) == files  # the folder is kept
    monkeypatch.delenv('HF_TOKEN')
    monkeypatch.setattr(huggingface_hub, 'get_token', lambda: None)
    with pytest.raises(SystemExit):
        hub_main(['push', str(folder), 'me/tps-demo'])
    assert 'no Hugging Face token' in capsys.readouterr().err


def test_command_line_data_wins_over_the_recipes_demo_switch(tmp_path, small_demo):
    """`--hparams demo.yaml --data-root D --train-list T --val-list V` trains on the user's data, not the demo set."""
    paths = make_demo_dataset(small_demo, 48, 16, progress=False)
    user = tmp_path / 'user'
    user.mkdir()
    for split in ('train', 'val'):  # a 3-class dataset of the user's: the first three demo classes
        lines = [line for line in Path(paths[split]).read_text().splitlines() if int(line.split()[1]) < 3]
        (user / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    result = train.main([*DEMO, '--data-root', paths['root'], '--train-list', str(user / 'train.txt'), '--val-list',
                         str(user / 'val.txt'), '--num-classes', '3', '--output', str(tmp_path / 'out'),
                         '--epochs', '1'])
    recorded = yaml.safe_load((Path(result['out_dir']) / 'args.yaml').read_text())
    assert recorded['train_list'] == str(user / 'train.txt') and recorded['demo_data'] is None
    assert json.loads((Path(result['model_dir']) / 'config.json').read_text())['num_classes'] == 3


def test_flip_pairs_are_resolved_by_name_printed_and_recorded(tmp_path, small_demo, capsys):
    result = run(tmp_path, small_demo, '--epochs', '1', '--flip-label-map', 'auto')
    args_yaml = Path(result['out_dir']) / 'args.yaml'
    recorded = yaml.safe_load(args_yaml.read_text())
    assert recorded['flip_label_map'] == [['moving left to right', 'moving right to left'],
                                          ['rotating clockwise', 'rotating counter-clockwise']]
    again = run(tmp_path / 'again', small_demo, '--epochs', '1', '--hparams', str(args_yaml), '--output',
                str(tmp_path / 'again'))  # the recorded configuration runs again as a recipe
    assert yaml.safe_load((Path(again['out_dir']) / 'args.yaml').read_text())['flip_label_map'] == \
        recorded['flip_label_map']
    assert 'a flip swaps: moving left to right <-> moving right to left; rotating clockwise' in capsys.readouterr().out
    pairs = tmp_path / 'pairs.yaml'
    pairs.write_text('- [growing, exploding]\n')
    with pytest.raises(SystemExit):
        run(tmp_path, small_demo, '--epochs', '1', '--flip-label-map', str(pairs))
    assert "name classes the dataset does not have: ['exploding']" in capsys.readouterr().err


@pytest.mark.parametrize('content,message', [(None, 'No such file'), ('epochs: [1\n', 'not valid YAML')])
def test_bad_hparams_file_is_a_one_line_error(tmp_path, content, message, capsys):
    path = tmp_path / 'recipe.yaml'
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        train.main(['--hparams', str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and f'--hparams {path}' in err


def test_push_to_hub_offline_fails_before_training(tmp_path, small_demo, capsys):
    with pytest.raises(SystemExit):
        run(tmp_path, small_demo, '--push-to-hub', 'me/tps-demo')
    assert 'HF_HUB_OFFLINE is set' in capsys.readouterr().err
    assert not (tmp_path / 'demo').exists()  # nothing ran


def test_failed_upload_after_training_keeps_the_model_and_says_how_to_retry(tmp_path, small_demo, monkeypatch,
                                                                            caplog):
    import huggingface_hub
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setenv('HF_TOKEN', 'hf_test')
    monkeypatch.setattr(huggingface_hub.HfApi, 'whoami', lambda self, **kw: {'name': 'me'})
    monkeypatch.setattr(huggingface_hub.HfApi, 'create_repo', lambda self, repo_id, **kw: repo_id)

    def unreachable(self, **kw):
        raise ConnectionError('[Errno -2] Name or service not known')

    monkeypatch.setattr(huggingface_hub.HfApi, 'upload_folder', unreachable)
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, small_demo, '--epochs', '1', '--push-to-hub', 'me/tps-demo')
    assert exit_info.value.code == 1
    folder = tmp_path / 'demo' / 'model'
    assert (folder / 'model.safetensors').is_file() and (tmp_path / 'demo' / 'checkpoints' / 'epoch_0').is_dir()
    assert f'retry with python -m tps_timm.hub push {folder} me/tps-demo' in caplog.text
    monkeypatch.setattr(huggingface_hub.HfApi, 'whoami', lambda self, **kw: {
        'name': 'me', 'auth': {'accessToken': {'role': 'read'}}})
    with pytest.raises(SystemExit):
        run(tmp_path / 'read', small_demo, '--push-to-hub', 'me/tps-demo')
    assert not (tmp_path / 'read' / 'demo').exists()  # a read-only token is refused before training


@pytest.mark.slow
def test_shifts_learn_temporal_order(trained_demo):
    """On classes that differ only in the direction of time, TPS learns them; without the shifts it cannot: that
    network gives a clip and the same clip backwards the same logits, so it cannot tell a class from its pair's."""
    from tps_timm.data import load_video_list, normalize_clip
    from tps_timm.evaluate import eval_dataset
    tps = trained_demo['result']  # the demo recipe for 6 epochs, without flips or scale jitter (conftest)
    assert tps['val_top1'] >= 90, tps
    with open(Path(tps['out_dir']) / 'summary.csv', newline='') as f:  # validated at the end only: one header
        rows = list(csv.DictReader(f))
    assert [r['eval_top1'] for r in rows[:-1]] == [''] * 5 and float(rows[-1]['eval_top1']) == tps['val_top1']

    model = timm.create_model(f'local-dir:{trained_demo["model_dir"]}', pretrained=True).eval()
    config = json.loads((Path(trained_demo['model_dir']) / 'config.json').read_text())
    flat = timm.create_model(config['architecture'], **dict(config['model_args'], temporal_mixing='none')).eval()
    clip = ClipConfig.from_pretrained_cfg(model.pretrained_cfg)
    demo = trained_demo['demo']
    videos = load_video_list(demo['val'], demo['root'])
    dataset = eval_dataset(videos, clip)
    flipped = 0
    with torch.no_grad():
        for i in range(16):  # two of each class
            x = normalize_clip(dataset[i]['video'], clip.mean, clip.std)
            backwards = x.flip(2)  # the frames in reverse order
            assert torch.allclose(flat(x), flat(backwards), atol=1e-6)  # blind to the frames' order
            label = videos.samples[i][1]
            flipped += int(model(x).argmax()) == label and int(model(backwards).argmax()) == label ^ 1
    assert flipped >= 12, flipped  # TPS: backwards, a clip is of its pair's class


@pytest.mark.long
def test_tps_vit_learns_temporal_order(tmp_path_factory):
    """The ViT demo recipe (one frame per temporal token): TPS-ViT learns the order, the same ViT without shifts not."""
    demo = str(tmp_path_factory.mktemp('demo_vit'))
    out = tmp_path_factory.mktemp('learn_vit')
    quick = ['--hparams', str(ROOT / 'hparams' / 'vit_demo.yaml'), '--demo-data', demo, '--output', str(out),
             '--no-progress', '--eval-interval', '100']
    tps = train.main([*quick, '--experiment', 'tps'])
    flat = train.main([*quick, '--experiment', 'none', '--epochs', '8', '--model-kwargs', 'temporal_mixing=none'])
    assert tps['val_top1'] >= 90, tps
    assert flat['val_top1'] <= 60, flat


@pytest.mark.parametrize('recipe', ['k400', 'sthv2', 'sthv1', 'diving48', 'demo', 'vit_k400', 'vit_sthv2',
                                    'vit_demo'])
def test_recipes_parse_for_train_and_validate(recipe):
    """Every recipe is read by both scripts (keys are flag names), its model builds, with the paper's settings."""
    import validate
    from tps_timm.cli import parse_with_hparams
    path = str(ROOT / 'hparams' / f'{recipe}.yaml')
    args = parse_with_hparams(train.build_parser(), ['--hparams', path])
    vargs = parse_with_hparams(validate.build_parser(), ['--hparams', path], shared_with=train.build_parser())
    assert vargs.model == args.model and vargs.num_frames == args.num_frames
    with torch.device('meta'):
        timm.create_model(args.model, **args.model_kwargs)
    if recipe.startswith('vit_') and recipe != 'vit_demo':  # VideoMAE-style fine-tuning of an image ViT
        assert (args.num_frames, args.model_kwargs['tubelet_size'], args.img_size) == (16, 2, 224)
        assert (args.layer_decay, args.drop_path, args.weight_decay) == (0.75, 0.1, 0.05)
        assert args.flip_label_map == ('sthv2' if recipe == 'vit_sthv2' else 'none')
    elif not recipe.endswith('demo'):
        assert (args.num_frames, args.frame_interval, args.img_size, args.epochs) == (32, 2, 224, 30)
        assert (args.lr, args.backbone_lr_mult, args.weight_decay, args.warmup_epochs) == (1e-3, 0.1, 0.02, 2.5)
        assert args.drop_path == 0.1 and args.num_crops == 3
        assert args.sampling == ('dense' if recipe == 'k400' else 'uniform')
        assert args.num_clips == (4 if recipe == 'k400' else 1)
        assert args.smoothing == (0.1 if recipe.startswith('sthv') else 0.0)
        assert args.flip_label_map == ('sthv2' if recipe.startswith('sthv') else 'none')
