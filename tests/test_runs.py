"""Nothing lost, nothing misleading: run folders, resumes of finished runs, what a trained model folder says, model
folders in validate.py, unreadable videos past --max-unreadable, and one line for every bad input."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
import validate

ROOT = Path(__file__).resolve().parents[1]
TINY = ['--demo-train-videos', '16', '--demo-val-videos', '8', '--no-progress', '--workers', '0', '--epochs', '1']


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    """TPS_TIMM_CACHE for the demo recipe's ``demo_data: auto``: the tiny demo set is generated there once."""
    folder = tmp_path_factory.mktemp('cache')
    old = os.environ.get('TPS_TIMM_CACHE')
    os.environ['TPS_TIMM_CACHE'] = str(folder)
    yield folder
    if old is None:
        del os.environ['TPS_TIMM_CACHE']
    else:
        os.environ['TPS_TIMM_CACHE'] = old


@pytest.fixture(scope='module')
def finished(cache, tmp_path_factory):
    """A finished run of `python train.py` with the demo set's size on the command line (no recipe named: the
    demo recipe applies), with EMA; and a snapshot of its folder."""
    out = tmp_path_factory.mktemp('runs')
    result = train.main([*TINY, '--output', str(out), '--model-ema', '--model-ema-decay', '0.5'])
    return dict(result, output=out, snapshot=snapshot(Path(result['out_dir'])))


def test_a_rerun_starts_a_numbered_folder_and_leaves_the_first_as_it_was(finished, capsys):
    first = Path(finished['out_dir'])
    assert first == finished['output'] / 'demo'
    capsys.readouterr()
    again = train.main([*TINY, '--output', str(finished['output']), '--model-ema', '--model-ema-decay', '0.5',
                        '--export-ema', '--batch-size', '8'])  # two steps: timm's EMA copies the model at the first
    out = capsys.readouterr().out.splitlines()
    assert again['out_dir'] == f'{first}-1'
    assert out[0] == f'{first} holds an earlier run: this run writes to {first}-1 (--resume auto continues {first})'
    assert f'outputs in {first}-1' in out[-1]
    assert snapshot(first) == finished['snapshot']  # byte-identical
    # the EMA weights were exported, and the card says so; the first run exported its trained weights
    model = Path(again['model_dir'])
    last = load_file(model.parent / 'checkpoints' / 'epoch_0' / 'model.safetensors')
    assert any(not torch.equal(t, last[k]) for k, t in load_file(model / 'model.safetensors').items())
    assert 'Weights: the EMA of the weights (decay 0.5)' in (model / 'README.md').read_text()
    first_weights = load_file(first / 'model' / 'model.safetensors')
    first_last = load_file(first / 'checkpoints' / 'epoch_0' / 'model.safetensors')
    assert all(torch.equal(t, first_last[k]) for k, t in first_weights.items())


def test_resume_auto_of_a_finished_run_changes_nothing(finished, capsys):
    capsys.readouterr()
    result = train.main([*TINY, '--output', str(finished['output']), '--model-ema', '--model-ema-decay', '0.5',
                         '--resume', 'auto'])
    out = capsys.readouterr().out
    assert 'nothing to train: epoch 0 was the last' in out
    assert f"final val top-1 {finished['val_top1']:.2f}%" in out and 'n/a' not in out
    assert result['val_top1'] == finished['val_top1'] and result['out_dir'] == finished['out_dir']
    assert snapshot(Path(finished['out_dir'])) == finished['snapshot']


def test_the_trained_folder_says_what_it_holds(finished):
    folder = Path(finished['model_dir'])
    config = json.loads((folder / 'config.json').read_text())
    assert config['model_args']['embed_dim'] == 32  # --demo-data alone: the demo recipe's small model
    assert config['model_args']['img_size'] == [48, 48] and config['model_args']['num_frames'] == 8
    assert config['pretrained_cfg']['input_size'] == [3, 48, 48]
    assert 'tag' not in config['pretrained_cfg'] and 'hf_hub_id' not in config['pretrained_cfg']
    card = (folder / 'README.md').read_text()
    assert 'hf-hub:' not in card and f"timm.create_model('local-dir:{folder}', pretrained=True)" in card
    assert f'--model local-dir:{folder}`' in card
    assert 'synthetic demo set' in card and '16 training videos, 8 validation videos' in card
    assert "Weights: the last epoch's (0); the EMA model (--model-ema) was evaluated alongside" in card
    assert '`moving left to right`' in card and '| 1 crop x 1 clip |' in card and '8 classes' in card


def test_validate_takes_a_model_folder_over_the_recipe(finished, tmp_path):
    """The folder defines architecture, classes and views; the recipe's demo switch gives the data."""
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text((ROOT / 'hparams' / 'demo.yaml').read_text()
                      + 'num_clips: 2\nnum_crops: 3\nnum_classes: 400\n'
                        'model_kwargs: {embed_dim: 64, depths: [1, 1, 1, 1], num_heads: [1, 2, 4, 8]}\n')
    results = tmp_path / 'r.json'
    validate.main(['--hparams', str(recipe), '--checkpoint', finished['model_dir'], '--demo-train-videos', '16',
                   '--demo-val-videos', '8', '--workers', '0', '--results-file', str(results)])
    metrics = json.loads(results.read_text())
    assert (metrics['num_clips'], metrics['num_crops'], metrics['num_videos']) == (1, 1, 8)
    assert metrics['top1'] == pytest.approx(finished['val_top1'])  # the same weights and views as train.py's check


def test_throughput_runs_the_demo_recipe(cache, capsys):
    from tps_timm.throughput import main
    result = main(['--hparams', str(ROOT / 'hparams' / 'demo.yaml'), '--demo-train-videos', '16', '--demo-val-videos',
                   '8', '--clips', '16', '--split-clips', '2', '--workers', '0', '--no-progress'])
    assert result['clips'] >= 16 and capsys.readouterr().out.startswith('16 videos; clips of 8 frames (uniform, 48 px)')


def test_a_local_folder_loads_without_asking_the_hub(finished, monkeypatch, caplog):
    import timm
    from huggingface_hub import constants

    from tps_timm import pretrained
    asked = []
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(pretrained, 'hub_reachable', lambda: asked.append(1) or False)
    timm.create_model(f"local-dir:{finished['model_dir']}", pretrained=True)
    assert not asked and 'unreachable' not in caplog.text
    with pytest.raises(RuntimeError, match='tps-timm/tps_swin_tiny.k400'):  # the Hub's weights: asked, and said
        timm.create_model('tps_swin_tiny.k400', pretrained=True)
    assert asked and 'unreachable' in caplog.text


def test_training_past_max_unreadable_stops_in_one_line(cache, finished, tmp_path):
    demo = cache / 'demo'
    listing = tmp_path / 'train.txt'
    lines = (demo / 'train.txt').read_text().splitlines()
    listing.write_text('\n'.join(lines + [f'videos/missing_{i}.mp4 0' for i in range(4)]) + '\n')  # 4 of 20
    args = ['--train-list', str(listing), '--data-root', str(demo), '--class-names', str(demo / 'classes.txt'),
            '--output', str(tmp_path), '--no-progress', '--workers', '0', '--epochs', '1', '--hparams',
            str(ROOT / 'hparams' / 'demo.yaml')]
    with pytest.raises(SystemExit) as stop:
        train.main(args)
    message = str(stop.value.code)
    assert message.startswith('train.py: error: epoch 0: ') and 'more than --max-unreadable 0.05 allows' in message
    assert 'videos/missing_' in message and '\n' not in message
    result = train.main([*args, '--max-unreadable', '0.5', '--experiment', 'tolerant'])  # replaced and counted
    summary = (Path(result['out_dir']) / 'summary.csv').read_text().splitlines()
    header, row = summary[0].split(','), summary[1].split(',')
    assert int(row[header.index('train_unreadable')]) > 0


def bad_inputs(root: Path, demo: Path, model_dir: str):
    """(name, command, expected text) for the CLIs, each a bad input that must give one line and no traceback."""
    (root / 'empty').mkdir()
    (root / 'empty.txt').write_text('')
    (root / 'fake.mp4').write_text('not a video\n')
    (root / 'missing.txt').write_text('videos/a.mp4 0\nvideos/b.mp4 1\n')
    (root / 'rand.bin').write_bytes(bytes(range(1, 256)) * 16)
    (root / 'bad.safetensors').write_bytes(b'\xff' * 64)
    (root / 'typo.yaml').write_text('num_frame: 4\n')
    (root / 'zero.yaml').write_text('epochs: 0\n')
    (root / 'binary.txt').write_bytes(b'\xff\xfe\x00videos')
    (root / 'some_missing.txt').write_text((demo / 'val.txt').read_text() + 'videos/gone.mp4 0\n')  # 1 of 9
    demo_data = ['--data-root', str(demo), '--class-names', str(demo / 'classes.txt')]
    folder = ['--model', model_dir]
    return [
        ('predict: empty folder', ['predict', str(root / 'empty'), *folder], 'no videos found'),
        ('validate: empty list', ['validate', *folder, '--val-list', str(root / 'empty.txt')], 'no videos in it'),
        ('embed: empty list', ['embed', *folder, '--input', str(root / 'empty.txt'), '--output', str(root / 'e.npy')],
         'no videos found'),
        ('train: --epochs 0', ['train', '--epochs', '0'], 'argument --epochs: must be at least 1, got 0'),
        ('train: all files missing', ['train', '--train-list', str(root / 'missing.txt'), *demo_data, '--output',
                                      str(root / 'out')], 'none of its 2 videos exists'),
        ('train: empty list', ['train', '--train-list', str(root / 'empty.txt'), '--output', str(root / 'out')],
         'no videos in it'),
        ('validate: corrupt safetensors', ['validate', '--checkpoint', str(root / 'bad.safetensors'),
                                           '--val-list', str(demo / 'val.txt'), *demo_data],
         'a corrupt or truncated .safetensors file'),
        ('predict: random binary checkpoint', ['predict', str(root / 'fake.mp4'), '--checkpoint',
                                               str(root / 'rand.bin')], 'is not a checkpoint of any known format'),
        ('predict: random binary, trusted', ['predict', str(root / 'fake.mp4'), '--checkpoint', str(root / 'rand.bin'),
                                             '--trust-pickle'], 'is not a checkpoint of any known format'),
        ('predict: --batch-size -1', ['predict', str(root / 'fake.mp4'), '--batch-size', '-1'],
         'argument --batch-size: must be at least 1, got -1'),
        ('prepare: all files missing', ['prepare', '--data-root', str(demo), '--list', str(root / 'missing.txt'),
                                        '--output', str(root / 'prepared')], 'none of its 2 videos exists'),
        ('validate: recipe typo', ['validate', '--hparams', str(root / 'typo.yaml')],
         "unknown key 'num_frame' (did you mean 'num_frames'?)"),
        ('predict: text named .mp4', ['predict', str(root / 'fake.mp4'), *folder], 'none of the 1 videos was readable'),
        ('validate: every video missing', ['validate', *folder, '--val-list', str(root / 'missing.txt'), *demo_data],
         'none of its 2 videos exists'),
        ('validate: past --max-unreadable', ['validate', *folder, '--val-list', str(root / 'some_missing.txt'),
                                             *demo_data, '--workers', '0'], '1 of 9 videos of'),
        ('train: recipe with epochs 0', ['train', '--hparams', str(root / 'zero.yaml')],
         'zero.yaml: epochs: must be at least 1, got 0'),
        ('predict: a binary list file', ['predict', str(root / 'binary.txt'), *folder], 'not a text list of videos'),
        ('embed: past --max-unreadable', ['embed', *folder, '--input', str(root / 'fake.mp4'), str(demo / 'videos'),
                                          '--output', str(root / 'e.npy'), '--max-unreadable', '0.01'],
         'were unreadable, more than --max-unreadable 0.01 allows'),
    ]


def _main(tool: str):
    from tps_timm import embed, predict
    from tps_timm.data import prepare
    return {'train': train.main, 'validate': validate.main, 'predict': predict.main, 'embed': embed.main,
            'prepare': prepare.main}[tool]


def test_bad_inputs_give_one_line_through_the_real_clis(finished, cache, tmp_path, capfd):
    failures = []
    for name, (tool, *argv), expected in bad_inputs(tmp_path, cache / 'demo', finished['model_dir']):
        capfd.readouterr()
        try:
            _main(tool)(argv)
            code = 0
        except SystemExit as e:
            code = e.code
        captured = capfd.readouterr()
        err = captured.err + (code if isinstance(code, str) else '')
        errors = [line for line in err.splitlines() if ': error: ' in line]
        ok = code not in (0, None) and expected in err and len(errors) == 1 and 'Traceback' not in err \
            and 'usage:' not in err and '[mov,' not in err and 'video_reader' not in err
        if not ok:
            failures.append(f'{name}: exit {code!r}, stderr {err[-1500:]!r}')
    assert not failures, '\n'.join(failures)
    assert not (tmp_path / 'out').exists()  # inputs are checked before any output is made
    assert not (tmp_path / 'prepared' / 'missing.txt').exists()  # no empty list "to train with"


def test_accelerate_cpu_launch_of_several_processes_says_what_to_run(finished, tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'accelerate.commands.launch', '--cpu', '--num_processes', '2',
                           str(ROOT / 'validate.py'), '--model', finished['model_dir'], '--val-list',
                           str(tmp_path / 'none.txt')], capture_output=True, text=True, timeout=300, cwd=ROOT)
    # accelerate's launcher warns of its defaults before, and reports the failed script after, as for any failure
    assert proc.returncode != 0 and ('validate.py: error: `accelerate launch --cpu --num_processes N` starts only one '
                                     'process; on the CPU start N with: torchrun --nproc_per_node N validate.py ...'
                                     ) in proc.stderr.splitlines()


def test_embed_and_predict_in_two_cpu_processes_write_what_one_writes(finished, cache, tmp_path):
    """torchrun on a machine without a GPU: two real processes (gloo), each video once, the one process's file."""
    from conftest import run_two_cpu_processes
    from tps_timm.embed import main as embed_main, read_embeddings
    from tps_timm.predict import main as predict_main
    videos = str(cache / 'demo' / 'videos')  # 24 videos: 12 per process
    model = ['--model', finished['model_dir'], '--batch-size', '5']
    embed_main(['--input', videos, *model, '--output', str(tmp_path / 'one.npy'), '--no-progress'])
    predict_main([videos, *model, '--output', str(tmp_path / 'one.json')])
    embed = run_two_cpu_processes('-m', 'tps_timm.embed', '--input', videos, *model, '--output',
                                  str(tmp_path / 'two.npy'), '--no-progress', '--save-every', '4')
    assert embed.returncode == 0, embed.stderr[-3000:]
    predict = run_two_cpu_processes('-m', 'tps_timm.predict', videos, *model, '--output', str(tmp_path / 'two.json'))
    assert predict.returncode == 0, predict.stderr[-3000:]
    one, two = read_embeddings(str(tmp_path / 'one.npy')), read_embeddings(str(tmp_path / 'two.npy'))
    assert list(two) == list(one) and len(one) == 24  # the same rows, in input order
    assert all(torch.allclose(torch.from_numpy(one[p]), torch.from_numpy(two[p]), atol=1e-5) for p in one)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['one.json', 'one.npy', 'two.json', 'two.npy']  # merged
    first, second = json.loads((tmp_path / 'one.json').read_text()), json.loads((tmp_path / 'two.json').read_text())
    assert list(second) == list(first)
    assert all([r['label'] for r in second[p]] == [r['label'] for r in first[p]] for p in first)
