"""python -m tps_timm.probe: a linear probe and k-NN on embed outputs, its head and the model folder made of it."""
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from tps_timm.data import read_class_names
from tps_timm.embed import main as embed_main, read_embeddings, write_embeddings
from tps_timm.hub import save_hub_folder
from tps_timm.probe import fit_linear_probe, head_logits, load_split, main as probe_main, read_head


@pytest.fixture(scope='module')
def embedded(trained_demo, tmp_path_factory):
    """Half the demo training videos (``demo['train']``: the first half of the list, every class in it) and the
    validation videos, embedded (one file each model) by the trained demo model and by a randomly initialised model
    of the same architecture and clip settings."""
    out = tmp_path_factory.mktemp('probe')
    trained = trained_demo['model_dir']
    lines = Path(trained_demo['demo']['train']).read_text().splitlines()
    (out / 'train.txt').write_text('\n'.join(lines[:len(lines) // 2]) + '\n')
    demo = dict(trained_demo['demo'], train=str(out / 'train.txt'))
    config = json.loads((Path(trained) / 'config.json').read_text())
    torch.manual_seed(0)
    untrained = timm.create_model(config['architecture'], pretrained_cfg_overlay=config['pretrained_cfg'],
                                  **config['model_args'])
    save_hub_folder(untrained, str(out / 'random_model'), config['label_names'])
    files = {}
    for name, folder in (('trained', trained), ('random', str(out / 'random_model'))):
        files[name] = str(out / f'{name}.npy')
        embed_main(['--model', folder, '--input', demo['train'], demo['val'], '--data-root', demo['root'],
                    '--output', files[name], '--batch-size', '16', '--no-progress'])
    return dict(out=out, demo=demo, model_dir=trained, **files)


def probe_args(embedded, embeddings: str, *extra: str, val_embeddings=None, val_list=None, data_root=None,
               class_names: bool = True):
    """The probe's flags for the demo lists and ``embeddings`` (both splits' rows are in each file)."""
    demo = embedded['demo']
    return ['--train-embeddings', embeddings, '--train-list', demo['train'],
            '--val-embeddings', val_embeddings or embeddings, '--val-list', val_list or demo['val'],
            '--data-root', data_root or demo['root'], *(['--class-names', demo['classes']] if class_names else []),
            *extra]


def _count_lines(path: str) -> int:
    return sum(1 for line in Path(path).read_text().splitlines() if line.strip())


@pytest.fixture(scope='module')
def trained_probe(embedded):
    """The probe of the trained model's features, with its head file, model folder and results file."""
    out = embedded['out']
    paths = dict(head=str(out / 'head.safetensors'), model=str(out / 'probe_model'),
                 results_file=str(out / 'probe.json'))
    results = probe_main(probe_args(embedded, embedded['trained'], '--output', paths['head'], '--model',
                                    embedded['model_dir'], '--output-model', paths['model'], '--results-file',
                                    paths['results_file']))
    return dict(results=results, **paths)


def test_probe_separates_trained_features_not_random_ones(embedded, trained_probe):
    """Trained features: the linear probe and the k-NN reach >= 90% top-1; a random model's stay far lower."""
    trained = trained_probe['results']
    assert json.loads(Path(trained_probe['results_file']).read_text()) == trained
    demo = embedded['demo']
    assert (trained['train_videos'], trained['val_videos'], trained['num_classes'], trained['num_features']) == \
        (_count_lines(demo['train']), _count_lines(demo['val']), 8, 256)
    random = probe_main(probe_args(embedded, embedded['random']))
    print(f"linear top-1 trained {trained['linear']['top1']:.2f} random {random['linear']['top1']:.2f}; "
          f"k-NN top-1 trained {trained['knn']['top1']:.2f} random {random['knn']['top1']:.2f}")
    assert trained['linear']['top1'] >= 90, trained
    assert trained['knn']['top1'] >= 90, trained
    assert random['linear']['top1'] <= trained['linear']['top1'] - 30, (random, trained)
    assert random['knn']['top1'] <= trained['knn']['top1'] - 30, (random, trained)


def test_probe_is_deterministic(embedded):
    """The same rows, settings and seed give the same head, bit for bit."""
    demo = embedded['demo']
    train = load_split(embedded['trained'], demo['train'], demo['root'], 8)
    first, second = (fit_linear_probe(train.features, train.labels, 8, seed=3) for _ in range(2))
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)


def test_probe_model_folder_classifies_as_the_probe(embedded, trained_probe, tmp_path):
    """The head file and the written model folder (the folded head on the backbone, with its clip settings) give the
    probe's logits, so its predictions and top-1."""
    from tps_timm.clip import ClipConfig
    from tps_timm.evaluate import video_outputs
    demo = embedded['demo']
    train = load_split(embedded['trained'], demo['train'], demo['root'], 8)
    val = load_split(embedded['trained'], demo['val'], demo['root'], 8)
    logits = fit_linear_probe(train.features, train.labels, 8).logits(val.features)  # the CLI's defaults
    expected = logits.argmax(1)
    weight, bias, names = read_head(trained_probe['head'])
    assert names == read_class_names(demo['classes']) and weight.shape == (8, 256)
    torch.testing.assert_close(head_logits(weight.double(), bias.double(), val.features), logits, rtol=1e-4,
                               atol=1e-3)

    model = timm.create_model(f"local-dir:{trained_probe['model']}", pretrained=True).eval()
    assert list(model.pretrained_cfg['label_names']) == names
    clip = ClipConfig.from_pretrained_cfg(model.pretrained_cfg)
    assert (clip.num_frames, clip.img_size, clip.sampling) == (8, 48, 'uniform')  # the backbone folder's
    x = torch.randn(2, 3, 8, 48, 48)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model(x), pooled @ weight.T + bias, rtol=1e-4, atol=1e-4)
    outputs = {name: p for name, p, _, _ in video_outputs(model, val.paths, clip, batch_size=16, progress=False)}
    probs = torch.stack([outputs[path] for path in val.paths])
    torch.testing.assert_close(probs, logits.float().softmax(1), rtol=1e-3, atol=1e-4)
    predicted = probs.argmax(1)
    assert (predicted != expected).sum() <= 1, (predicted != expected).sum()
    model_top1 = 100 * (predicted == torch.as_tensor(val.labels)).double().mean().item()
    assert abs(model_top1 - trained_probe['results']['linear']['top1']) <= 100 / len(val.labels) + 1e-9

    # without class names: classes numbered by label, none of the backbone's names
    probe_main(probe_args(embedded, embedded['trained'], '--model', embedded['model_dir'], '--output-model',
                          str(tmp_path / 'unnamed'), class_names=False))
    config = json.loads((tmp_path / 'unnamed' / 'config.json').read_text())
    assert config['num_classes'] == 8 and 'label_names' not in config and 'label_names' not in config['pretrained_cfg']


def _one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        probe_main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('python -m tps_timm.probe: error: '), err
    return err


def test_probe_errors_are_one_line(embedded, tmp_path, capsys):
    """A list video without a row, normalised embeddings for a model head, and other mismatches: one-line errors."""
    demo = embedded['demo']
    val_list = tmp_path / 'val.txt'
    val_list.write_text(Path(demo['val']).read_text() + 'videos/not_embedded.mp4 3\n')
    err = _one_line_error(capsys, probe_args(embedded, embedded['trained'], val_list=str(val_list)))
    assert f"1 of the {_count_lines(demo['val']) + 1} videos" in err and 'not_embedded.mp4' in err, err
    allowed = probe_main(probe_args(embedded, embedded['trained'], '--max-missing', '0.01', val_list=str(val_list)))
    assert allowed['val_videos'] == _count_lines(demo['val'])  # left out

    rows = read_embeddings(embedded['trained'])
    normalized = str(tmp_path / 'normalized.npy')  # as embed --normalize writes them
    write_embeddings(normalized, {p: e / np.linalg.norm(e) for p, e in rows.items()})
    err = _one_line_error(capsys, probe_args(embedded, normalized, '--model', embedded['model_dir'],
                                             '--output-model', str(tmp_path / 'model')))
    assert 'embed without --normalize' in err, err
    assert not (tmp_path / 'model').exists()
    err = _one_line_error(capsys, probe_args(embedded, embedded['trained'], '--model', embedded['model_dir'],
                                             '--output-model', str(tmp_path)))  # holds val.txt: never removed
    assert 'is not a model folder' in err and val_list.exists(), err

    narrow = str(tmp_path / 'narrow.npy')
    write_embeddings(narrow, {p: e[:100] for p, e in rows.items()})
    err = _one_line_error(capsys, probe_args(embedded, embedded['trained'], val_embeddings=narrow))
    assert '256 features' in err and 'of 100' in err, err
    err = _one_line_error(capsys, probe_args(embedded, narrow, '--model', embedded['model_dir'], '--output-model',
                                             str(tmp_path / 'model')))
    assert 'gives 256 features' in err, err

    lines = Path(demo['val']).read_text().splitlines()
    bad_label = tmp_path / 'bad_label.txt'
    bad_label.write_text('\n'.join(lines[:5] + [lines[5].split()[0] + ' 8']) + '\n')
    err = _one_line_error(capsys, probe_args(embedded, embedded['trained'], val_list=str(bad_label)))
    assert 'bad_label.txt:6: label 8' in err and 'the 8 classes' in err, err

    err = _one_line_error(capsys, probe_args(embedded, embedded['trained'], data_root=str(tmp_path)))
    assert f"none of the {_count_lines(demo['train'])} videos" in err and '--data-root' in err, err
