"""WebDataset shards (--dataset wds/...): prepare --format wds, the training and evaluation streams, the scripts on
shards against the same videos as a list, and what bad shards give."""
import hashlib
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import train
import validate
from conftest import run_two_cpu_processes
from tps_timm.clip import ClipConfig
from tps_timm.data import ClipItems, ClipSampler, ClipTrainTransform, ShardedTrainClips, build_train_loader, \
    load_clip, load_video_list, make_demo_dataset, open_shards
from tps_timm.data.prepare import main as prepare_main, prepare_dataset, prepare_tar_shards
from tps_timm.data.shards import INFO_FILE

webdataset = pytest.importorskip('webdataset')

ROOT = Path(__file__).resolve().parents[1]
CLIP = ClipConfig(num_frames=8, frame_interval=1, sampling='uniform', img_size=48, short_side=48)
SMALL_MODEL = ['--model', 'tps_swin_tiny', '--model-kwargs', 'embed_dim=32', 'depths=(1,1,1,1)',
               'num_heads=(1,2,4,8)', '--num-frames', '8', '--sampling', 'uniform', '--img-size', '48']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """The demo set (20 training, 10 validation videos) and copies of it as shards: 4 training shards of 5, and 3
    validation shards of 4, 4 and 2."""
    tmp = tmp_path_factory.mktemp('shards')
    demo = make_demo_dataset(str(tmp / 'demo'), num_train=20, num_val=10, progress=False)
    out = tmp / 'wds'
    for split, size in (('train', 5), ('val', 4)):
        videos = load_video_list(demo[split], demo['root'], class_names=demo['classes'])
        prepare_tar_shards(videos, demo['root'], str(out), size, split, copy=True, workers=1, progress=False)
    return dict(demo, wds=out, train_shards=f'wds/{out}/train-{{000000..000003}}.tar',
                val_shards=f'wds/{out}/val-{{000000..000002}}.tar')


def _members(path) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_prepare_writes_shards_and_info_and_resumes_per_shard(data, tmp_path):
    info = json.loads((data['wds'] / INFO_FILE).read_text())
    assert info['splits']['train'] == dict(name='train', filenames=[f'train-{j:06d}.tar' for j in range(4)],
                                           shard_lengths=[5] * 4, num_samples=20)
    assert info['splits']['val']['shard_lengths'] == [4, 4, 2] and info['class_names'][0] == 'moving left to right'
    members = _members(data['wds'] / 'train-000001.tar')
    videos = load_video_list(data['train'], data['root'])
    assert sorted(members) == sorted(f'videos/train_{i:05d}.{ext}' for i in range(5, 10) for ext in ('mp4', 'cls'))
    path, label = videos.samples[5]
    assert members['videos/train_00005.mp4'] == Path(path).read_bytes()  # --copy: the file as it is
    assert members['videos/train_00005.cls'] == str(label).encode()

    # a rerun skips the finished shards; a shard without its record (interrupted) is written again
    args = ['--data-root', data['root'], '--list', data['train'], '--class-names', data['classes'], '--output',
            str(tmp_path), '--format', 'wds', '--shard-size', '5', '--copy', '--workers', '1', '--no-progress']
    assert prepare_main(args) == 0
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob('*.tar')}
    (tmp_path / '.prepare' / 'train-000002.tar.json').unlink()
    assert prepare_main(args) == 0
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob('*.tar')}
    assert [name for name in mtimes if after[name] != mtimes[name]] == ['train-000002.tar']
    assert json.loads((tmp_path / INFO_FILE).read_text())['splits']['train'] == info['splits']['train']
    with pytest.raises(SystemExit):  # another shard size into the same folder would mix two layouts
        prepare_main([*args[:-5], '4', *args[-4:]])


def test_reencoded_shards_decode_to_the_loose_prepared_frames(data, tmp_path):
    """Without --copy a shard holds what prepare writes as loose files, and its bytes decode to the same frames."""
    videos = load_video_list(data['val'], data['root'])
    videos.samples = videos.samples[:2]
    prepare_dataset(videos, data['root'], str(tmp_path / 'loose'), short_side=32, workers=1, progress=False)
    prepare_tar_shards(videos, data['root'], str(tmp_path / 'wds'), 2, 'val', short_side=32, workers=1,
                       progress=False)
    members = _members(tmp_path / 'wds' / 'val-000000.tar')
    for i in range(2):
        data_bytes = members[f'videos/val_{i:05d}.mp4']
        from_shard, _ = load_clip(f'val-000000.tar:videos/val_{i:05d}', lambda n: np.arange(n), 'pyav',
                                  data=data_bytes)
        from_file, _ = load_clip(str(tmp_path / 'loose' / 'videos' / f'val_{i:05d}.mp4'), lambda n: np.arange(n),
                                 'pyav')
        assert from_shard.shape[1] == 32 and np.array_equal(from_shard, from_file)


def test_parts_merge_into_the_info_of_one_run(data, tmp_path, capsys):
    args = ['--data-root', data['root'], '--list', data['train'], '--class-names', data['classes'], '--output',
            str(tmp_path), '--format', 'wds', '--shard-size', '5', '--copy', '--workers', '1', '--no-progress',
            '--num-shards', '2']
    assert prepare_main([*args, '--shard-index', '1']) == 0
    assert sorted(p.name for p in tmp_path.glob('*.tar')) == ['train-000001.tar', 'train-000003.tar']
    assert not (tmp_path / INFO_FILE).exists()
    with pytest.raises(SystemExit):
        prepare_main([*args, '--merge'])
    assert '2 of the 4 tar shards are not finished (e.g. train-000000.tar): run --shard-index 0' in \
        capsys.readouterr().err
    assert prepare_main([*args, '--shard-index', '0']) == 0
    assert prepare_main([*args, '--merge']) == 0
    assert 'done before: 20' in capsys.readouterr().out
    ours = json.loads((tmp_path / INFO_FILE).read_text())
    assert ours == json.loads((data['wds'] / INFO_FILE).read_text()) | {'splits': {'train': ours['splits']['train']}}
    assert ours['splits']['train']['num_samples'] == 20


def _epoch_clips(datasets, epoch: int, workers: int = 0) -> list:
    """Every clip the ranks' loaders give in one epoch, as (hash, label), and the batches per rank."""
    clips, batches = [], []
    for dataset in datasets:
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=dataset.videos_per_batch, num_workers=workers)
        count = 0
        for clip, label, unreadable, _ in loader:
            count += 1
            assert not any(unreadable)
            clips += [(hashlib.sha1(c.numpy().tobytes()).hexdigest(), int(y)) for c, y in zip(clip, label)]
        batches.append(count)
    return sorted(clips), batches


def _train_stream(data, rank=0, world_size=1, shuffle=4):
    items = ClipItems(ClipSampler.for_clip(CLIP), ClipTrainTransform(48, 48, (0.5, 1.0)), train=True)
    return ShardedTrainClips(open_shards(data['train_shards']), items, 2, seed=3, rank=rank, world_size=world_size,
                             shuffle_buffer=shuffle)


def test_training_clips_depend_on_seed_epoch_and_key_not_on_workers_or_ranks(data):
    one, batches = _epoch_clips([_train_stream(data)], epoch=1)
    assert batches == [10] and len(set(one)) == 20  # every sample once per epoch
    assert _epoch_clips([_train_stream(data)], epoch=1, workers=2)[0] == one
    two_ranks, batches = _epoch_clips([_train_stream(data, rank, 2) for rank in range(2)], epoch=1)
    assert two_ranks == one and batches == [5, 5]
    assert _epoch_clips([_train_stream(data, shuffle=0)], epoch=1)[0] == one  # the buffer changes order only
    stream = _train_stream(data)  # a key's seed is its own: the same key in two shards (or streams) draws apart
    assert stream.sample_seed(1, 'a-000000.tar:0') != stream.sample_seed(1, 'a-000001.tar:0')
    assert set(_epoch_clips([_train_stream(data)], epoch=2)[0]).isdisjoint(one)  # a new epoch, new augmentations
    # 4 shards over 3 ranks: the ranks still take the same number of steps (no rank waits at the epoch's end)
    _, batches = _epoch_clips([_train_stream(data, rank, 3) for rank in range(3)], epoch=0, workers=2)
    assert batches == [3, 3, 3] and len(_train_stream(data, 0, 3)) == 6
    # 3 workers for a rank's 2 shards: they share its 10 samples (4 + 3 + 3) in batches of 2, so one sample per
    # rank is drawn twice and one left, the fewest possible; each worker reads the rank's shards, no other
    clips, _ = _epoch_clips([_train_stream(data, rank, 2) for rank in range(2)], epoch=0, workers=3)
    assert len(clips) == 20 and len(set(clips)) == 18
    # persistent workers follow set_epoch (through shared memory): epoch 2 after epoch 1 gives epoch 2's clips
    stream = _train_stream(data)
    loader = torch.utils.data.DataLoader(stream, batch_size=2, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in (1, 2):
        stream.set_epoch(epoch)
        epochs.append(sorted((hashlib.sha1(c.numpy().tobytes()).hexdigest(), int(y)) for b in loader
                             for c, y in zip(b[0], b[1])))
    assert epochs[0] == one and epochs[1] == _epoch_clips([_train_stream(data)], epoch=2)[0]


def test_a_shard_epoch_resumed_from_a_recovery_checkpoint_gives_every_sample_once(data, tmp_path):
    """Stopped after 3 of 10 batches (two workers, a shuffle buffer, batches prefetched past the stop), saved,
    loaded and resumed: the batches still to come hold exactly the samples the first 3 did not."""
    from accelerate import Accelerator

    from tps_timm.training import Recovery, TrainState, prepare_loader
    full, _ = _epoch_clips([_train_stream(data)], epoch=1, workers=2)
    accelerator = Accelerator(cpu=True)
    state = TrainState(epoch=0, step=3)
    accelerator.register_for_checkpointing(state)

    def epoch_clips(stop_after=None):
        loader = prepare_loader(accelerator, torch.utils.data.DataLoader(_train_stream(data), batch_size=2,
                                                                         num_workers=2))
        loader.set_epoch(1)  # as train.py does
        recovery = Recovery(accelerator, str(tmp_path), state, 0, 2)
        loader, start = recovery.epoch_loader(loader, 1)
        clips = []
        for index, (clip, label, _, position) in enumerate(loader, start):
            clips += [(hashlib.sha1(c.cpu().numpy().tobytes()).hexdigest(), int(y)) for c, y in zip(clip, label)]
            recovery.after_batch(index, 0.0, position, last=False)
            if index + 1 == stop_after:
                return clips, recovery.save(stop_after), start
        return clips, None, start

    first, checkpoint, _ = epoch_clips(stop_after=3)
    assert len(first) == 6 and state.batch == 0
    accelerator.load_state(checkpoint)
    assert state.batch == 3 and len(state.ranks) == 1
    rest, _, start = epoch_clips()
    assert start == 3 and len(rest) == 14 and sorted(first + rest) == full


def test_train_and_validate_on_shards_match_the_lists(data, tmp_path):
    common = ['--hparams', str(ROOT / 'hparams' / 'demo.yaml'), '--no-progress', '--epochs', '1',
              '--batch-size', '4', '--class-names', data['classes']]
    result = train.main([*common, '--dataset', data['train_shards'], '--val-dataset', data['val_shards'],
                         '--workers', '2', '--output', str(tmp_path / 'train')])
    assert result['step'] == 5 and result['val_num_videos'] == 10 and result['val_unreadable'] == 0
    config = json.loads((Path(result['model_dir']) / 'config.json').read_text())
    assert config['num_classes'] == 8 and config['label_names'][0] == 'moving left to right'

    model = ['--model', result['model_dir'], '--batch-size', '3', '--workers', '2']
    from_list = validate.main([*model, '--data-root', data['root'], '--val-list', data['val'], '--class-names',
                               data['classes'], '--results-file', str(tmp_path / 'list.json')])
    from_shards = validate.main([*model, '--dataset', data['val_shards'], '--results-file',
                                 str(tmp_path / 'shards.json')])
    two = run_two_cpu_processes(ROOT / 'validate.py', *model, '--dataset', data['val_shards'], '--results-file',
                                str(tmp_path / 'two.json'), timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    two = json.loads((tmp_path / 'two.json').read_text())
    for metrics in (from_shards, two):
        assert (metrics['num_videos'], metrics['evaluated']) == (from_list['num_videos'], from_list['evaluated']) \
            == (10, 10)
        for key in ('top1', 'top5', 'mean_class_acc', 'loss'):
            assert abs(metrics[key] - from_list[key]) < 1e-4, key


def test_embed_and_predict_on_shards_in_two_processes_write_what_one_writes(data, tmp_path, capsys):
    from tps_timm.embed import main as embed_main, read_embeddings
    from tps_timm.predict import main as predict_main
    args = [*SMALL_MODEL, '--dataset', data['val_shards'], '--batch-size', '3']
    embed_main([*args, '--output', str(tmp_path / 'one.npy'), '--no-progress'])
    predict_main([*args, '--output', str(tmp_path / 'one.json')])
    for module, out in (('tps_timm.embed', 'two.npy'), ('tps_timm.predict', 'two.json')):
        proc = run_two_cpu_processes('-m', module, *args, '--output', str(tmp_path / out),
                                     *(['--no-progress', '--save-every', '2'] if out.endswith('.npy') else []))
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_embeddings(str(tmp_path / 'one.npy')), read_embeddings(str(tmp_path / 'two.npy'))
    assert list(one) == list(two) == [f'val-{j // 4:06d}.tar:videos/val_{j:05d}' for j in range(10)]
    assert all(np.allclose(one[k], two[k], atol=1e-5) for k in one)
    first, second = (json.loads((tmp_path / f).read_text()) for f in ('one.json', 'two.json'))
    assert list(first) == list(second) == list(one)
    assert all([r['label'] for r in first[k]] == [r['label'] for r in second[k]] for k in first)
    from tps_timm.throughput import main as throughput_main
    measured = throughput_main(['--hparams', str(ROOT / 'hparams' / 'demo.yaml'), '--dataset', data['train_shards'],
                                '--workers', '1', '--clips', '8', '--split-clips', '2', '--no-progress'])
    assert measured['clips'] >= 8 and measured['decode_ms'] > 0 and measured['split_unreadable'] == 0
    # a rerun finds every row there and decodes nothing
    embed_main([*args, '--output', str(tmp_path / 'one.npy'), '--no-progress'])
    assert '(0 embedded now, 10 already there, 0 unreadable)' in capsys.readouterr().out
    assert list(read_embeddings(str(tmp_path / 'one.npy'))) == list(one)


def test_timeline_on_shards_equals_the_lists(data, tmp_path):
    from tps_timm.predict import main as predict_main
    args = [*SMALL_MODEL, '--timeline', '--window', '0.5', '--stride', '0.25', '--batch-size', '5']
    predict_main([*args, '--dataset', data['val_shards'], '--workers', '2', '--output', str(tmp_path / 'wds.json')])
    predict_main([*args, data['val'], '--data-root', data['root'], '--class-names', data['classes'], '--output',
                  str(tmp_path / 'list.json')])
    shards, lists = (json.loads((tmp_path / f).read_text()) for f in ('wds.json', 'list.json'))
    assert [r['video'] for r in shards] == [f'val-{j // 4:06d}.tar:videos/val_{j:05d}' for j in range(10)]
    assert [Path(r['video']).stem for r in lists] == [f'val_{j:05d}' for j in range(10)]
    for a, b in zip(shards, lists):
        assert len(a['windows']) == len(b['windows']) == 5  # 16 frames: 6-frame windows at 0, 3, 6, 9 and the tail
        assert a['windows'] == b['windows'] and a['segments'] == b['segments']


def _write_shard(path, samples):
    from webdataset import TarWriter
    with open(path, 'wb') as f, TarWriter(f, encoder=False) as writer:
        for sample in samples:
            writer.write(sample)


def test_bad_shards_give_one_clear_line_each_counted(data, tmp_path, capsys, caplog):
    good = _members(data['wds'] / 'val-000000.tar')
    video, second = good['videos/val_00000.mp4'], good['videos/val_00001.mp4']
    bad = tmp_path / 'bad'
    bad.mkdir()
    _write_shard(bad / 'bad-000000.tar', [
        {'__key__': 'good', 'mp4': video, 'cls': b'2'},
        {'__key__': 'corrupt', 'mp4': b'not a video', 'cls': b'1'},
        {'__key__': 'unlabelled', 'mp4': video},
        {'__key__': 'out_of_range', 'mp4': video, 'cls': b'99'},
        {'__key__': 'named', 'mp4': second, 'json': json.dumps({'label_name': 'no such class'}).encode()},
    ])
    whole = (bad / 'bad-000000.tar').read_bytes()
    (bad / 'bad-000001.tar').write_bytes(whole[:len(whole) // 2])  # truncated: a copy cut short
    model = [*SMALL_MODEL, '--num-classes', '8', '--batch-size', '2', '--max-unreadable', '0.9', '--workers', '0']
    metrics = validate.main([*model, '--dataset', f'wds/{bad}/bad-{{000000..000001}}.tar'])
    names = ' '.join(metrics['unreadable_videos'])
    for key, reason in (('corrupt', 'pyav: '), ('unlabelled', 'no label (KEY.cls or KEY.json)'),
                        ('out_of_range', 'label 99 is not a class of the model (0..7)'),
                        ('named', "label_name 'no such class' is not among")):
        assert f'bad-000000.tar:{key}' in names
        assert any(f'bad-000000.tar:{key}' in r.message and reason in r.message for r in caplog.records), key
    assert 'bad-000001.tar' in names  # the truncated shard, named
    assert metrics['evaluated'] >= 2 and metrics['unreadable'] == metrics['num_videos'] - metrics['evaluated'] >= 5

    # no _info.json: training counts the samples from the tar headers, and says how long that took
    assert open_shards(f'wds/{bad}/bad-000000.tar', scan=True).num_samples == 5
    assert any('no _info.json: counted 5 samples in 1 shards' in r.message for r in caplog.records)
    # a missing shard stops before any work, naming it
    with pytest.raises(SystemExit) as exit_info:
        validate.main([*model, '--dataset', f'wds/{bad}/bad-{{000000..000002}}.tar'])
    assert exit_info.value.code == 2
    assert f'1 of its 3 shards do not exist: {bad}/bad-000002.tar' in capsys.readouterr().err
    # an _info.json that does not list the shards, and one whose counts disagree with them
    (bad / INFO_FILE).write_text(json.dumps({'splits': {'val': {'filenames': ['x.tar'], 'shard_lengths': [1],
                                                                 'num_samples': 1}}}))
    with pytest.raises(SystemExit):
        validate.main([*model, '--dataset', f'wds/{bad}/bad-000000.tar'])
    assert 'no split lists all 1 shards (not listed: bad-000000.tar)' in capsys.readouterr().err
    (bad / INFO_FILE).write_text(json.dumps({'splits': {'val': {'filenames': ['bad-000000.tar'],
                                                                 'shard_lengths': [7], 'num_samples': 7}}}))
    caplog.clear()
    validate.main([*model, '--dataset', f'wds/{bad}/bad-000000.tar'])
    assert any('holds 5 samples, _info.json says 7' in r.message for r in caplog.records)
    assert any('5 samples read, but' in r.message and 'gives 7' in r.message for r in caplog.records)

    # training: the unusable samples are named in the items that replace them, for the loop to count
    loader = build_train_loader(open_shards(f'wds/{bad}/bad-000000.tar', num_samples=4), CLIP, 2, num_classes=8)
    named = [line for _, _, unreadable, _ in loader for item in unreadable for line in item.split('\n') if line]
    assert {line.split(': ')[0] for line in named} <= {f'bad-000000.tar:{k}' for k in
                                                       ('corrupt', 'unlabelled', 'out_of_range', 'named')}
    assert named and all(': ' in line for line in named)


def test_list_and_shards_together_are_refused(data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(['--hparams', str(ROOT / 'hparams' / 'demo.yaml'), '--train-list', data['train'], '--dataset',
                    data['train_shards'], '--output', str(tmp_path)])
    assert '--train-list and --dataset: give one source of the train videos' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validate.main([*SMALL_MODEL, '--dataset', 'wds' + os.sep + 'nowhere' + os.sep + 'x-{0..1}.tar'])
    assert 'shards do not exist' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validate.main([*SMALL_MODEL, '--dataset', data['val']])
    assert 'expected wds/PATTERN' in capsys.readouterr().err


@pytest.fixture(scope='module')
def hf_data(data, tmp_path_factory):
    """The demo splits as a Hugging Face DatasetDict saved to disk: a Video feature and a ClassLabel; and the
    validation videos as a plain table of bytes with other column names."""
    datasets = pytest.importorskip('datasets')
    tmp = tmp_path_factory.mktemp('hf')
    names = [line for line in Path(data['classes']).read_text().splitlines() if line]

    def split(name: str):
        videos = load_video_list(data[name], data['root'])
        return datasets.Dataset.from_dict(
            {'video': [p for p, _ in videos.samples], 'label': [y for _, y in videos.samples]},
            features=datasets.Features(video=datasets.Video(), label=datasets.ClassLabel(names=names)))
    datasets.DatasetDict(train=split('train'), validation=split('val')).save_to_disk(str(tmp / 'dict'))
    videos = load_video_list(data['val'], data['root'])
    datasets.Dataset.from_dict({'clip': [Path(p).read_bytes() for p, _ in videos.samples],
                                'y': [y for _, y in videos.samples]}).save_to_disk(str(tmp / 'bytes'))
    return dict(dict=tmp / 'dict', bytes=tmp / 'bytes', names=names)


def test_hf_datasets_give_the_lists_clips_and_results(data, hf_data, monkeypatch, capsys):
    """hfds/ (map-style) and hfids/ (streaming) read the same videos through the same sampling and transforms."""
    from tps_timm.data import VideoDataset, open_hf_dataset
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    table = open_hf_dataset(f'hfds/{hf_data["dict"]}', 'train')
    assert table.class_names == hf_data['names'] and len(table) == 20
    videos = load_video_list(data['train'], data['root'])
    transform = ClipTrainTransform(48, 48, (0.5, 1.0))
    from_list = VideoDataset(videos, ClipSampler.for_clip(CLIP), transform, train=True)
    from_table = VideoDataset(table, ClipSampler.for_clip(CLIP), transform, train=True)
    for index, seed in ((0, 1), (7, 2)):
        (a, la, _), (b, lb, _) = from_list[(index, seed)], from_table[(index, seed)]
        assert torch.equal(a, b) and la == lb
    stream = open_hf_dataset(f'hfids/{hf_data["dict"]}', 'train')
    assert stream.num_samples == 20 and stream.num_shards > 1
    items = ClipItems(ClipSampler.for_clip(CLIP), transform, train=True)
    clips, batches = _epoch_clips([ShardedTrainClips(stream, items, 2, seed=3, rank=r, world_size=2)
                                   for r in range(2)], epoch=0)
    assert batches == [5, 5] and len(set(clips)) == 20

    model = [*SMALL_MODEL, '--num-classes', '8', '--batch-size', '3', '--workers', '2']
    expected = validate.main([*model, '--data-root', data['root'], '--val-list', data['val']])
    for spec, extra in ((f'hfds/{hf_data["dict"]}', []), (f'hfids/{hf_data["dict"]}', []),
                        (f'hfds/{hf_data["bytes"]}', ['--input-key', 'clip', '--target-key', 'y'])):
        metrics = validate.main([*model, '--dataset', spec, *extra])
        assert metrics['num_videos'] == 10 and abs(metrics['loss'] - expected['loss']) < 1e-4, spec
    for extra, message in (([], "no column 'video' (--input-key); the columns are clip, y"),
                           (['--input-key', 'clip', '--target-key', 'label'], "no column 'label' (--target-key)")):
        with pytest.raises(SystemExit):
            validate.main([*model, '--dataset', f'hfds/{hf_data["bytes"]}', *extra])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validate.main([*model, '--dataset', f'hfds/{hf_data["dict"]}', '--split', 'test'])
    assert "no split 'test' (it has train, validation)" in capsys.readouterr().err


def test_recipe_sources_and_command_line_sources(data, tmp_path):
    """A recipe's validation source is what validate.py evaluates (never its training source); a source on the
    command line replaces the recipe's source of the same role."""
    import yaml
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text(yaml.safe_dump(dict(dataset=data['train_shards'], val_dataset=data['val_shards'],
                                          train_list=None, epochs=1)))
    metrics = validate.main([*SMALL_MODEL, '--hparams', str(recipe), '--num-classes', '8', '--workers', '0'])
    assert metrics['num_videos'] == 10
    k400_like = tmp_path / 'lists.yaml'
    k400_like.write_text(yaml.safe_dump(dict(data_root=data['root'], train_list=data['train'], val_list=data['val'],
                                             class_names=data['classes'])))
    parser, args = train.parse_args(['--hparams', str(k400_like), '--dataset', data['train_shards']])
    train_videos, val_videos = train.load_splits(parser, args)
    assert train_videos.num_samples == 20 and val_videos.num_videos == 10 and args.train_list is None


def test_shard_info_describes_existing_shards_as_prepare_does(data, tmp_path, capsys):
    import shutil

    from tps_timm.data.shard_info import main as shard_info_main
    for shard in data['wds'].glob('val-*.tar'):
        shutil.copy(shard, tmp_path)
    assert shard_info_main([f'wds/{tmp_path}/val-{{000000..000002}}.tar', '--split', 'val', '--class-names',
                            data['classes']]) == 0
    assert '3 shards, 10 samples' in capsys.readouterr().out
    ours, prepared = (json.loads((folder / INFO_FILE).read_text()) for folder in (tmp_path, data['wds']))
    assert ours['splits']['val'] == prepared['splits']['val'] and ours['class_names'] == prepared['class_names']
    assert open_shards(f'wds/{tmp_path}').num_samples == 10
