"""Deployment: ONNX / torch.export with parity against eager PyTorch, exported models in predict and validate,
per-video embeddings, batched prediction over folders and lists."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from tps_timm.convert import convert
from tps_timm.data import make_demo_dataset

from conftest import randomize_, small_model

pytest.importorskip('onnxruntime', reason='the export extra is not installed: pip install "tps-timm[export]"')
pytest.importorskip('onnxscript', reason='the export extra is not installed: pip install "tps-timm[export]"')

ROOT = Path(__file__).resolve().parents[1]
DEMO_ARGS = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), patch_size=(1, 4, 4))


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    paths = make_demo_dataset(str(root), num_train=8, num_val=16, progress=False)
    val = Path(paths['val'])
    val.write_text(val.read_text() + 'videos/does_not_exist.mp4 3\n')
    return paths


@pytest.fixture(scope='module')
def demo_model(demo, tmp_path_factory):
    """A demo-sized model as a Hub-ready folder (random weights, 8 classes with the demo's names)."""
    tmp = tmp_path_factory.mktemp('model')
    torch.manual_seed(0)
    model = randomize_(timm.create_model('tps_swin_tiny', num_classes=8, **DEMO_ARGS))
    torch.save(model.state_dict(), tmp / 'w.pth')
    names = Path(demo['classes']).read_text().split('\n')[:8]
    return convert(str(tmp / 'w.pth'), str(tmp / 'model'), 'tps_swin_tiny', label_names=names,
                   model_args={k: list(v) if isinstance(v, tuple) else v for k, v in DEMO_ARGS.items()},
                   pretrained_cfg=dict(num_frames=8, frame_interval=1, sampling='uniform', test_num_crops=1,
                                       test_num_clips=2, input_size=(3, 48, 48)))


@pytest.fixture(scope='module')
def demo_onnx(demo_model, tmp_path_factory):
    """The demo model exported by the CLI (dynamic batch), which checks its own parity; with what it printed."""
    out = tmp_path_factory.mktemp('onnx') / 'demo.onnx'
    proc = run_module('tps_timm.export', demo_model, '--format', 'onnx', '--dynamic-batch', '--output', out)
    return out, proc.stdout


def run_module(module, *args, timeout=600):
    proc = subprocess.run([sys.executable, '-m', module, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_onnx_export_with_dynamic_batch_matches_pytorch(demo_model, demo_onnx):
    """The CLI exports, checks parity itself and says so; the file then serves batch 1 and 3 alike."""
    out, printed = demo_onnx
    assert 'parity: max |diff|' in printed and 'onnxruntime (CPU) takes' in printed
    from tps_timm.onnx_model import load_exported_model
    exported = load_exported_model(str(out))
    model = timm.create_model(f'local-dir:{demo_model}', pretrained=True).eval()
    assert exported.pretrained_cfg['label_names'][7] == 'rotating counter-clockwise'
    assert exported.pretrained_cfg['num_frames'] == 8 and exported.fixed_batch is None
    for batch in (1, 3):
        clip = torch.randn(batch, 3, 8, 48, 48)
        with torch.no_grad():
            assert (exported(clip) - model(clip)).abs().max() <= 1e-4
    with pytest.raises(ValueError, match=r'takes clips \(B, 3, 8, 48, 48\)'):
        exported(torch.randn(1, 3, 4, 48, 48))


def test_exported_program_and_fixed_batch_onnx(tmp_path):
    """The channel shift in both forms exports ('channel' mixing: folded into unshifted partitions, standing alone in
    shifted-window blocks; the patch shift is in the demo model's export above); a fixed-batch file still takes any
    number of clips, one batch at a time."""
    from tps_timm.export import check_parity, export_model
    model = randomize_(small_model(temporal_mixing='channel'))
    for fmt, suffix in (('exported-program', 'pt2'), ('onnx', 'onnx')):
        path, meta = export_model(model, str(tmp_path / f'm.{suffix}'), fmt, frames=6, img_size=40)
        assert meta['num_frames'] == 6 and meta['output'] == 'logits'
        parity = check_parity(path, model, fmt, features=False, batch_sizes=(1, 3))
        assert parity['max_abs_diff'] <= 1e-4


def test_exported_graph_has_no_custom_ops(tmp_path):
    """The shifts and the window layout export as plain gathers and slices: no tps_timm op, no autograd function."""
    from tps_timm.export import _exported_program
    model = randomize_(small_model(img_size=40, num_frames=6))
    program = _exported_program(model.eval(), torch.randn(1, 3, 6, 40, 40), dynamic_batch=False)
    targets = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
    assert not [t for t in targets if 'tps_timm' in t or 'autograd' in t.lower()], targets
    assert 'aten.index_select.default' in targets or 'aten.index.Tensor' in targets


def test_features_export_and_embeddings(demo, demo_model, tmp_path, capsys):
    """Embeddings: equal across runs and batch sizes, exported or not; a second run resumes; unreadable listed."""
    from tps_timm.embed import main as embed_main, read_embeddings
    from tps_timm.export import main as export_main
    onnx_path = tmp_path / 'features.onnx'
    export_main([str(demo_model), '--features', '--dynamic-batch', '--output', str(onnx_path)])
    runs = {}
    for name, model, batch, out in (('pytorch b1', demo_model, 1, 'a.npy'), ('pytorch b3', demo_model, 3, 'b.npy'),
                                    ('onnx b2', onnx_path, 2, 'c.parquet')):
        capsys.readouterr()
        embed_main(['--model', str(model), '--input', demo['val'], '--data-root', demo['root'], '--output',
                    str(tmp_path / out), '--batch-size', str(batch), '--normalize', '--no-progress',
                    '--max-unreadable', '0.1'])  # 1 of 17
        printed = capsys.readouterr()
        assert '1 unreadable' in printed.out and 'does_not_exist.mp4' in printed.err
        runs[name] = read_embeddings(str(tmp_path / out))
    assert len(runs['pytorch b1']) == 16
    for name, rows in runs.items():
        assert rows.keys() == runs['pytorch b1'].keys(), name
        for path, embedding in rows.items():
            assert np.abs(embedding - runs['pytorch b1'][path]).max() <= 1e-5, name
            assert abs(np.linalg.norm(embedding) - 1) < 1e-5
    embed_main(['--model', str(demo_model), '--input', demo['val'], '--data-root', demo['root'], '--output',
                str(tmp_path / 'a.npy'), '--no-progress', '--max-unreadable', '0.1'])
    assert '0 embedded now, 16 already there' in capsys.readouterr().out
    assert (tmp_path / 'a.npy.unreadable.txt').read_text().startswith(str(Path(demo['root']) / 'videos'))


def test_predict_over_a_folder_and_a_list_writes_csv_and_json(demo, demo_model, tmp_path):
    from tps_timm.predict import main as predict_main
    videos = Path(demo['root']) / 'videos'
    predict_main([str(videos), '--model', str(demo_model), '--batch-size', '4', '--output', str(tmp_path / 'p.csv')])
    rows = list(csv.DictReader(open(tmp_path / 'p.csv')))
    assert len(rows) == 5 * 24 and rows[0]['rank'] == '1'  # every video of the folder, top 5
    assert len({r['video'] for r in rows}) == 24
    predict_main([demo['val'], '--data-root', demo['root'], '--model', str(demo_model), '--top-k', '2', '--output',
                  str(tmp_path / 'p.json'), '--max-unreadable', '0.1'])
    result = json.loads((tmp_path / 'p.json').read_text())
    assert len(result) == 17 and isinstance(result[str(videos / 'does_not_exist.mp4')], str)
    first = result[str(videos / 'val_00000.mp4')]
    assert len(first) == 2 and first[0]['probability'] >= first[1]['probability']
    by_csv = {r['video']: r['label'] for r in rows if r['rank'] == '1'}
    assert by_csv[str(videos / 'val_00000.mp4')] == first[0]['label']  # batch 4 and batch 1 agree


def test_validate_with_the_onnx_model_gives_the_pytorch_numbers(demo, demo_model, demo_onnx):
    out, _ = demo_onnx
    import validate
    results = {}
    for name, model in (('pytorch', demo_model), ('onnx', out)):
        results[name] = validate.main(['--model', str(model), '--data-root', demo['root'], '--val-list', demo['val'],
                                       '--class-names', demo['classes'], '--batch-size', '3', '--workers', '0',
                                       '--max-unreadable', '0.1'])
    for key in ('top1', 'top5', 'num_videos', 'unreadable', 'views'):
        assert results['onnx'][key] == results['pytorch'][key], key
    assert abs(results['onnx']['loss'] - results['pytorch']['loss']) < 1e-4


def test_an_interrupted_embedding_run_resumes_from_its_shards(demo, demo_model, tmp_path, monkeypatch):
    """Rows go to shards while running: a run killed after 7 videos keeps 5 (one shard); the next run embeds the
    rest and merges everything into one file."""
    import tps_timm.evaluate
    from tps_timm.clip import ClipConfig
    from tps_timm.data import find_videos
    from tps_timm.embed import embed_videos, read_embeddings
    model = timm.create_model(f'local-dir:{demo_model}', pretrained=True)
    clip = ClipConfig.from_pretrained_cfg(model.pretrained_cfg).replace(num_crops=1)
    paths = find_videos([demo['val']], demo['root'])[:12]
    output = str(tmp_path / 'e.npy')
    original = tps_timm.evaluate.video_outputs

    def killed_after_seven(*args, **kwargs):
        for i, row in enumerate(original(*args, **kwargs)):
            if i == 7:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(tps_timm.evaluate, 'video_outputs', killed_after_seven)
    with pytest.raises(KeyboardInterrupt):
        embed_videos(model, paths, clip, output, save_every=5, progress=False)
    assert not Path(output).exists() and len(read_embeddings(output)) == 5
    monkeypatch.setattr(tps_timm.evaluate, 'video_outputs', original)
    result = embed_videos(model, paths, clip, output, save_every=5, progress=False)
    assert (result['skipped'], result['embedded'], result['rows']) == (5, 7, 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['e.npy'] and list(read_embeddings(output)) == paths


def test_timeline_with_the_onnx_model_gives_the_pytorch_timeline(demo, demo_model, demo_onnx, tmp_path, capsys):
    from tps_timm.data import render_actions, write_video
    from tps_timm.predict import main as predict_main
    out, _ = demo_onnx
    frames, _ = render_actions([0, 2, 5], 16, 64, np.random.default_rng(0))
    video = tmp_path / 'long.mp4'
    write_video(video, frames, fps=12)
    timelines = {}
    for name, model in (('pytorch', demo_model), ('onnx', out)):
        predict_main([str(video), '--model', str(model), '--timeline', '--window', '1', '--stride', '0.5',
                      '--batch-size', '3', '--output', str(tmp_path / f'{name}.json')])
        timelines[name] = json.loads((tmp_path / f'{name}.json').read_text())[0]
    assert len(timelines['onnx']['windows']) == len(timelines['pytorch']['windows']) == 7
    for a, b in zip(timelines['onnx']['windows'], timelines['pytorch']['windows']):
        assert (a['start'], a['end']) == (b['start'], b['end'])
        assert [t['label'] for t in a['top']] == [t['label'] for t in b['top']]
        assert all(abs(s['probability'] - t['probability']) < 1e-4 for s, t in zip(a['top'], b['top']))
    with pytest.raises(SystemExit):  # uniform clips and no recorded duration: asks for the window
        predict_main([str(video), '--model', str(out), '--timeline'])
    assert 'give --window SECONDS' in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no gradients in an exported file
        predict_main([str(video), '--model', str(out), '--explain', str(tmp_path / 'x.gif')])
    assert 'is an exported file; give the model folder it was exported from' in capsys.readouterr().err
