"""validate.py, predict and the YAML hparams, end to end on generated videos."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch

from conftest import run_two_cpu_processes
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


def run_validate(demo, out: Path, two_processes: bool = False, extra=()):
    args = [*SMALL_MODEL, '--data-root', demo['root'], '--val-list', demo['val'], '--class-names', demo['classes'],
            '--num-frames', '8', '--sampling', 'uniform', '--img-size', '48', '--num-clips', '2', '--num-crops', '3',
            '--batch-size', '3', '--workers', '0', '--results-file', str(out), '--max-unreadable', '0.1', *extra]
    if two_processes:
        proc = run_two_cpu_processes(ROOT / 'validate.py', *args, timeout=300)
    else:
        proc = subprocess.run([sys.executable, str(ROOT / 'validate.py'), *args], capture_output=True, text=True,
                              timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_validate_end_to_end_and_across_two_processes(demo, tmp_path):
    proc = run_validate(demo, tmp_path / 'one.json')
    one = json.loads((tmp_path / 'one.json').read_text())
    assert one['num_videos'] == 14 and one['unreadable'] == 1 and one['evaluated'] == 13
    assert one['views'] == 6 and one['num_clips'] == 2 and one['num_crops'] == 3
    assert 0 <= one['top1'] <= one['top5'] <= 100 and one['clips_per_s'] > 0
    assert 'top-1' in proc.stdout and 'does_not_exist.mp4' in proc.stderr

    run_validate(demo, tmp_path / 'two.csv', two_processes=True)  # 14 videos: 7 per rank, 6 views each, batches of 3
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
    assert bad.returncode == 2 and "unknown key 'num_frame' (did you mean 'num_frames'?)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1  # not the usage block


def test_predict_prints_top5_class_names(demo, tmp_path):
    torch.manual_seed(0)
    model = timm.create_model('tps_swin_tiny', num_classes=8)
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    names = Path(demo['classes']).read_text().split('\n')[:8]
    folder = convert(str(tmp_path / 'w.pth'), str(tmp_path / 'hub'), 'tps_swin_tiny', label_names=names,
                     pretrained_cfg=dict(num_frames=8, sampling='uniform', test_num_crops=1, input_size=(3, 48, 48)))
    video = os.path.join(demo['root'], 'videos', 'val_00000.mp4')
    proc = subprocess.run([sys.executable, '-m', 'tps_timm.predict', video, str(tmp_path / 'missing.mp4'),
                           '--model', f'local-dir:{folder}', '--pretrained', '--max-unreadable', '0.5'],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == video and len(lines) >= 8
    predicted = [line.split('%', 1)[1].strip() for line in lines[1:6]]
    assert len(predicted) == 5 and set(predicted) <= set(names)
    assert 'unreadable: no such file' in proc.stdout


def test_validate_rejects_a_label_out_of_range_before_the_pass(demo, tmp_path):
    bad = tmp_path / 'val.txt'
    bad.write_text(Path(demo['val']).read_text().splitlines()[0] + '\nvideos/val_00001.mp4 12\n')
    proc = subprocess.run([sys.executable, str(ROOT / 'validate.py'), *SMALL_MODEL, '--data-root', demo['root'],
                           '--val-list', str(bad), '--num-classes', '8', '--workers', '0'],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f'{bad}:2: label 12 of val_00001.mp4 is not a class of the model, which has 8' in proc.stderr
    assert 'Traceback' not in proc.stderr and 'validate:' not in proc.stderr  # before any video was read


def test_predict_with_a_model_folder_loads_its_weights(demo, tmp_path, capsys):
    torch.manual_seed(1)  # not the seed predict initialises with: only loaded weights give the same answers
    names = Path(demo['classes']).read_text().split('\n')[:8]
    model = timm.create_model('tps_swin_tiny', num_classes=8)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    folder = convert(str(tmp_path / 'w.pth'), str(tmp_path / 'hub'), 'tps_swin_tiny', label_names=names,
                     pretrained_cfg=dict(num_frames=8, sampling='uniform', test_num_crops=1, input_size=(3, 48, 48)))
    video = os.path.join(demo['root'], 'videos', 'val_00000.mp4')
    from tps_timm.predict import main as predict_main
    outputs = []
    for extra in ([], ['--pretrained'], ['--checkpoint', str(tmp_path / 'w.pth'), '--num-classes', '8']):
        model_name = f'local-dir:{folder}' if extra[:1] != ['--checkpoint'] else 'tps_swin_tiny'
        capsys.readouterr()
        predict_main([video, '--model', model_name, *extra, '--num-frames', '8', '--img-size', '48', '--num-crops',
                      '1', '--num-clips', '1', '--sampling', 'uniform'])
        outputs.append([line.split('%')[0] for line in capsys.readouterr().out.splitlines()[-5:]])  # probabilities
    assert outputs[0] == outputs[1] == outputs[2]  # the folder's weights, as the checkpoint gives them


def test_convert_takes_model_kwargs_for_a_custom_architecture(tmp_path):
    from tps_timm.convert import main as convert_main
    kwargs = ['embed_dim=32', 'depths=(2,2,2,2)', 'num_heads=(1,2,4,8)', 'patch_size=(1,4,4)']
    torch.manual_seed(0)
    model = timm.create_model('tps_swin_tiny', num_classes=8, **{k: eval(v) for k, v in
                                                                  (a.split('=') for a in kwargs)})
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    convert_main([str(tmp_path / 'w.pth'), str(tmp_path / 'out'), '--model-kwargs', *kwargs])
    loaded = timm.create_model(f'local-dir:{tmp_path / "out"}', pretrained=True).eval()
    clip = torch.randn(1, 3, 8, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(clip), model.eval()(clip))
    with pytest.raises(SystemExit):
        convert_main([str(tmp_path / 'w.pth'), str(tmp_path / 'bad'), '--model-kwargs', 'depth=3'])


def test_pretrained_load_fails_fast_when_the_hub_is_unreachable(tmp_path):
    """Without HF_HUB_OFFLINE and without a network, the error comes in seconds, not after ~50 s of retries."""
    env = {k: v for k, v in os.environ.items() if k != 'HF_HUB_OFFLINE'}
    env.update(HF_ENDPOINT='http://127.0.0.1:9', HF_HOME=str(tmp_path))  # nothing listens on port 9
    code = "import timm, tps_timm; timm.create_model('tps_swin_tiny.k400', pretrained=True)"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120)
    took = time.perf_counter() - start
    assert proc.returncode == 1 and 'unreachable' in proc.stderr and 'tps-timm/tps_swin_tiny.k400' in proc.stderr
    assert took < 30, took
