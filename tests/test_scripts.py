"""validate.py, predict and the YAML hparams, end to end on generated videos."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from tps_timm.convert import convert
from tps_timm.data import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = ['--model', 'tps_swin_tiny', '--model-kwargs', 'embed_dim=32', 'depths=(1,1,1,1)',
               'num_heads=(1,2,4,8)']


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    paths = make_demo_dataset(str(root), num_train=8, num_val=13, progress=False)
    val = Path(paths['val'])
    val.write_text(val.read_text() + 'videos/does_not_exist.mp4 3\n')  # one unreadable video
    return paths


def run_validate(demo, out: Path, launcher=(), extra=()):
    cmd = [*launcher, str(ROOT / 'validate.py'), *SMALL_MODEL, '--data-root', demo['root'], '--val-list', demo['val'],
           '--class-names', demo['classes'], '--num-frames', '8', '--sampling', 'uniform', '--img-size', '48',
           '--num-clips', '2', '--num-crops', '3', '--batch-size', '3', '--workers', '0', '--results-file', str(out),
           *extra]
    if not launcher:
        cmd = [sys.executable, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_validate_end_to_end_and_across_two_processes(demo, tmp_path):
    proc = run_validate(demo, tmp_path / 'one.json')
    one = json.loads((tmp_path / 'one.json').read_text())
    assert one['num_videos'] == 14 and one['unreadable'] == 1 and one['evaluated'] == 13
    assert one['views'] == 6 and one['num_clips'] == 2 and one['num_crops'] == 3
    assert 0 <= one['top1'] <= one['top5'] <= 100 and one['clips_per_s'] > 0
    assert 'top-1' in proc.stdout and 'does_not_exist.mp4' in proc.stderr

    run_validate(demo, tmp_path / 'two.csv', launcher=[
        sys.executable, '-m', 'accelerate.commands.launch', '--num_processes', '2', '--num_machines', '1',
        '--mixed_precision', 'no', '--dynamo_backend', 'no', '--cpu'])
    header, row = (tmp_path / 'two.csv').read_text().splitlines()
    two = dict(zip(header.split(','), row.split(',')))
    for key in ('num_videos', 'unreadable', 'evaluated'):
        assert int(two[key]) == one[key]
    for key in ('top1', 'top5', 'mean_class_acc', 'loss'):
        assert abs(float(two[key]) - one[key]) < 1e-4, key


def test_hparams_yaml_gives_defaults_and_flags_override(demo, tmp_path):
    hparams = tmp_path / 'h.yaml'
    hparams.write_text(f"num-frames: 4\nnum_clips: 1\nnum-crops: 1\nval_list: {demo['val']}\n")
    run_validate(demo, tmp_path / 'r.json', extra=['--hparams', str(hparams), '--num-crops', '3'])
    result = json.loads((tmp_path / 'r.json').read_text())
    assert result['num_frames'] == 8  # given on the command line too: the flag wins
    assert result['num_clips'] == 2 and result['num_crops'] == 3
    hparams.write_text('num_frame: 4\n')
    bad = subprocess.run([sys.executable, str(ROOT / 'validate.py'), '--hparams', str(hparams)], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown keys ['num_frame']" in bad.stderr


def test_predict_prints_top5_class_names(demo, tmp_path):
    torch.manual_seed(0)
    model = timm.create_model('tps_swin_tiny', num_classes=8)
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    names = Path(demo['classes']).read_text().split('\n')[:8]
    folder = convert(str(tmp_path / 'w.pth'), str(tmp_path / 'hub'), 'tps_swin_tiny', label_names=names,
                     pretrained_cfg=dict(num_frames=8, sampling='uniform', test_num_crops=1, input_size=(3, 48, 48)))
    video = os.path.join(demo['root'], 'videos', 'val_00000.mp4')
    proc = subprocess.run([sys.executable, '-m', 'tps_timm.predict', video, str(tmp_path / 'missing.mp4'),
                           '--model', f'local-dir:{folder}', '--pretrained'],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == video and len(lines) >= 8
    predicted = [line.split('%', 1)[1].strip() for line in lines[1:6]]
    assert len(predicted) == 5 and set(predicted) <= set(names)
    assert 'unreadable: no such file' in proc.stdout
