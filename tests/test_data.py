import csv
import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

import tps_timm.data.video_io as video_io
from tps_timm.clip import ClipConfig
from tps_timm.data import BACKENDS, DEMO_CLASSES, ClipEvalTransform, ClipRandomErasing, ClipSampler, \
    ClipTrainTransform, VideoDataset, VideoList, VideoReadError, available_backends, default_backend, dense_indices, \
    flip_label_map, load_clip, load_video_list, make_demo_dataset, render_clip, resolve_flip_pairs, uniform_indices, \
    write_video


@pytest.fixture(scope='session')
def demo(tmp_path_factory):
    return make_demo_dataset(str(tmp_path_factory.mktemp('demo')), num_train=16, num_val=8, progress=False)


@pytest.fixture
def video(tmp_path):
    frames = render_clip(0, 20, 48, np.random.default_rng(0))
    path = tmp_path / 'clip.mp4'
    write_video(path, frames)
    return str(path), frames


def needs_backend(name: str):
    return pytest.mark.skipif(name not in available_backends(), reason=f'{name}: {video_io._unavailable(name)}')


@pytest.mark.parametrize('backend', [pytest.param(b, marks=needs_backend(b)) for b in ('torchcodec', 'decord')])
@pytest.mark.parametrize('codec', ['libx264', 'mpeg4'])
def test_backends_decode_the_same_frames_as_pyav(tmp_path, codec, backend, monkeypatch):
    path = str(tmp_path / 'v.mp4')
    write_video(path, render_clip(6, 24, 64, np.random.default_rng(1)), codec=codec)
    sampler = ClipSampler(8, 2, 2, 'dense')
    for other in BACKENDS:  # no fallback: the frames must come from `backend` itself
        if other != backend:
            monkeypatch.setitem(video_io._READERS, other, None)
    a, ia = load_clip(path, lambda n: sampler(n), backend)
    monkeypatch.undo()
    b, ib = load_clip(path, lambda n: sampler(n), 'pyav')
    assert a.shape == b.shape == (2, 8, 64, 64, 3) and np.array_equal(ia, ib)
    assert np.abs(a.astype(int) - b).max() <= 1


@pytest.mark.parametrize('width', [48, 72])
def test_widths_decord_fails_on_are_read_correctly(tmp_path, width):
    """decord 0.6 cannot decode frames 48 or 72 wide (wrong row padding): such files come from the next backend."""
    frames = render_clip(1, 12, 48, np.random.default_rng(3))
    frames = np.concatenate([frames, frames], axis=2)[:, :, :width]
    path = str(tmp_path / f'w{width}.mp4')
    write_video(path, frames)
    ours, _ = load_clip(path, lambda n: np.arange(0, 12, 3)[None], 'decord')
    reference, _ = load_clip(path, lambda n: np.arange(0, 12, 3)[None], 'pyav')
    assert ours.shape == (1, 4, 48, width, 3) and np.abs(ours.astype(int) - reference).max() <= 1


def test_unavailable_backends_are_skipped_with_the_reason(video, monkeypatch):
    path, _ = video
    reasons = dict(torchcodec='needs FFmpeg 4-8 shared libraries', decord='not installed', pyav='')
    monkeypatch.setattr(video_io, '_unavailable', reasons.get)
    assert available_backends() == ['pyav'] and default_backend() == 'pyav'
    frames, _ = load_clip(path, lambda n: np.arange(4)[None], 'torchcodec')
    assert frames.shape == (1, 4, 48, 48, 3)
    monkeypatch.setitem(reasons, 'pyav', 'not installed')
    with pytest.raises(VideoReadError, match='torchcodec: needs FFmpeg.*decord: not installed'):
        load_clip(path, lambda n: np.arange(4)[None])


@pytest.mark.parametrize('backend', [pytest.param(b, marks=needs_backend(b)) for b in BACKENDS])
def test_a_video_in_memory_gives_the_frames_of_its_file(tmp_path, backend):
    """Bytes of a video file (a tar shard's member) decode in memory to the frames its file gives, by every backend;
    errors name the video as given."""
    path = str(tmp_path / 'v.mp4')
    write_video(path, render_clip(3, 20, 64, np.random.default_rng(0)))
    index_fn = lambda n: np.array([[0, 7, n - 1]])  # noqa: E731
    from_file, file_indices = load_clip(path, index_fn, backend)
    in_memory, indices = load_clip('shard-000.tar:v.mp4', index_fn, backend, data=open(path, 'rb').read())
    assert np.array_equal(indices, file_indices) and indices.tolist() == [[0, 7, 19]]
    assert np.array_equal(in_memory, from_file)
    # this backend itself (load_clip would fall back to the next one if it failed on the bytes)
    assert np.array_equal(video_io._READERS[backend](open(path, 'rb').read(), index_fn), from_file)
    with pytest.raises(VideoReadError, match='shard-000.tar:v.mp4: empty file'):
        load_clip('shard-000.tar:v.mp4', index_fn, backend, data=b'')
    with pytest.raises(VideoReadError, match='shard-000.tar:v.mp4: '):
        load_clip('shard-000.tar:v.mp4', index_fn, backend, data=b'not a video' * 100)


@pytest.mark.parametrize('num_crops', [1, 3])
def test_backends_give_the_same_clip_after_the_resize(tmp_path, num_crops):
    """A source larger than the recipe: both backends give the same resized views (they used to scale in their own
    decoders, and differed by up to 31 levels)."""
    rng = np.random.default_rng(2)
    frames = np.concatenate([render_clip(i, 16, 128, rng) for i in (0, 6)])
    path = str(tmp_path / 'large.mp4')
    write_video(path, np.concatenate([frames, frames[:, :, :64]], axis=2))  # 128 x 192
    videos = VideoList([(path, 0)])
    views = [VideoDataset(videos, ClipSampler(8, 2, 2, 'dense'), ClipEvalTransform(40, 48, num_crops),
                          backend=backend)[0]['video'] for backend in available_backends()]
    assert len(views) >= 2 and all(v.shape == (2 * num_crops, 3, 8, 40, 40) for v in views)
    assert all((v.int() - views[-1].int()).abs().max() <= 1 for v in views)


def test_backend_failure_falls_back_to_the_other(video, monkeypatch):
    path, _ = video

    def broken(*args):
        raise RuntimeError('decord mis-decoded this file')

    def wrong_shape(path, index_fn):
        return np.zeros((1, 2, 8, 8, 3), np.uint8)  # not the frames asked for

    for fake in (broken, wrong_shape):
        monkeypatch.setitem(video_io._READERS, 'decord', fake)
        frames, _ = load_clip(path, lambda n: np.arange(4)[None], 'decord')
        assert frames.shape == (1, 4, 48, 48, 3)


def test_unreadable_files_raise_with_path_and_reason(tmp_path, video):
    path, _ = video
    truncated = tmp_path / 'truncated.mp4'
    truncated.write_bytes(open(path, 'rb').read()[:200])
    (tmp_path / 'empty.mp4').write_bytes(b'')
    (tmp_path / 'garbage.mp4').write_bytes(b'not a video' * 100)
    for name, reason in (('missing.mp4', 'no such file'), ('empty.mp4', 'empty file'),
                         ('truncated.mp4', 'decord'), ('garbage.mp4', 'pyav')):
        with pytest.raises(VideoReadError, match=reason) as err:
            load_clip(str(tmp_path / name), lambda n: np.arange(4)[None])
        assert err.value.path.endswith(name)


def test_frame_folder(tmp_path):
    frames = render_clip(2, 10, 32, np.random.default_rng(0))
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f'{i + 1:05d}.png')  # lossless, so the comparison is exact
    out, idx = load_clip(str(tmp_path), lambda n: uniform_indices(n, 5))
    assert out.shape == (1, 5, 32, 32, 3) and idx.tolist() == [[1, 3, 5, 7, 9]]
    assert np.array_equal(out[0], frames[idx[0]])


def test_dense_sampling():
    test = dense_indices(100, 8, 2, num_clips=4)
    assert test.shape == (4, 8) and (np.diff(test, axis=1) == 2).all()
    assert np.array_equal(test, dense_indices(100, 8, 2, num_clips=4))  # deterministic
    assert test[0, 0] < test[1, 0] < test[2, 0] < test[3, 0] and test.max() < 100
    rng = np.random.default_rng(0)
    starts = {int(dense_indices(100, 8, 2, 1, True, rng)[0, 0]) for _ in range(50)}
    assert len(starts) > 10 and max(starts) <= 100 - 16


def test_uniform_sampling():
    test = uniform_indices(64, 8)
    assert test.tolist() == [[4, 12, 20, 28, 36, 44, 52, 60]]  # segment centres
    rng = np.random.default_rng(0)
    train = uniform_indices(64, 8, train=True, rng=rng)
    assert ((train // 8) == np.arange(8)).all()  # one frame from each segment
    two = uniform_indices(64, 8, num_clips=2)
    assert two.tolist() == [[2, 10, 18, 26, 34, 42, 50, 58], [6, 14, 22, 30, 38, 46, 54, 62]]


@pytest.mark.parametrize('mode', ['dense', 'uniform'])
def test_short_videos_repeat_frames_in_order(mode):
    sampler = ClipSampler(16, 2, 1, mode)
    for train in (False, True):
        idx = sampler(5, train, np.random.default_rng(0))[0]
        assert idx.shape == (16,) and idx.max() <= 4 and idx.min() >= 0
        assert (np.diff(idx) >= 0).all() and set(idx.tolist()) == set(range(5))
    assert np.array_equal(sampler(5), sampler(5))


def test_train_transform_is_one_crop_one_flip_for_every_frame():
    image = torch.randint(0, 256, (3, 80, 120), dtype=torch.uint8)
    clip = image.expand(6, -1, -1, -1).contiguous()
    transform = ClipTrainTransform(size=48, short_side=64, rand_augment='rand-m9-n3-mstd0.5-inc1')
    outs = {}
    for seed in range(6):
        out, _ = transform(clip, 0, __import__('random').Random(seed))
        assert out.shape == (6, 3, 48, 48) and out.dtype == torch.uint8
        assert all(torch.equal(out[0], frame) for frame in out)  # identical input frames stay identical
        outs[seed] = out[0]
    assert len({tuple(o.flatten()[:64].tolist()) for o in outs.values()}) > 3  # while the parameters do vary


SSV2_DIRECTIONAL = ['Pulling something from left to right', 'Pulling something from right to left',
                    'Pushing something from left to right', 'Pushing something from right to left',
                    'Turning the camera left while filming something',
                    'Turning the camera right while filming something']


def test_flip_swaps_direction_labels_by_class_name():
    """The swaps follow the names wherever the classes sit: here SSv2's direction classes in a shuffled order."""
    names = ['Moving something up', 'Moving something down', *SSV2_DIRECTIONAL, 'Opening something'][::-1]
    swaps = flip_label_map(resolve_flip_pairs('sthv2', names), names)
    clip = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    flip = ClipTrainTransform(size=4, short_side=4, scale=(1, 1), ratio=(1, 1), hflip=1.0, flip_label_map=swaps)
    pulling = names.index('Pulling something from left to right')
    out, label = flip(clip, pulling)
    assert names[label] == 'Pulling something from right to left' and torch.equal(out, clip.flip(-1))
    assert len(swaps) == 6 and flip(clip, names.index('Moving something up'))[1] == names.index('Moving something up')
    assert ClipTrainTransform(size=4, short_side=4, hflip=0.0, flip_label_map=swaps)(clip, pulling)[1] == pulling


def test_flip_pairs_auto_file_and_errors(tmp_path):
    names = ['spin_clockwise', 'spin-counter-clockwise', 'Moving something up', 'Moving something down', 'wave',
             'pan left', 'pan right', 'roll anticlockwise', 'roll clockwise', *SSV2_DIRECTIONAL]
    auto = resolve_flip_pairs('auto', names)
    assert sorted(auto) == sorted([('spin_clockwise', 'spin-counter-clockwise'), ('pan left', 'pan right'),
                                   ('roll anticlockwise', 'roll clockwise'), *zip(SSV2_DIRECTIONAL[::2],
                                                                                  SSV2_DIRECTIONAL[1::2])])
    vertical = resolve_flip_pairs('auto', names, vertical=True)
    assert ('Moving something up', 'Moving something down') in vertical and ('pan left', 'pan right') not in vertical
    assert resolve_flip_pairs('demo', list(DEMO_CLASSES)) == resolve_flip_pairs('auto', list(DEMO_CLASSES))
    (tmp_path / 'pairs.yaml').write_text('- [wave, pan left]\n')
    assert resolve_flip_pairs(str(tmp_path / 'pairs.yaml'), names) == [('wave', 'pan left')]
    (tmp_path / 'pairs.json').write_text('{"wave": "jump"}')
    with pytest.raises(ValueError, match=r"pairs.json name classes the dataset does not have: \['jump'\]"):
        resolve_flip_pairs(str(tmp_path / 'pairs.json'), names)
    with pytest.raises(ValueError, match='sthv2.*does not have'):
        resolve_flip_pairs('sthv2', names[:9])
    with pytest.raises(ValueError, match='no class names'):
        resolve_flip_pairs('sthv2', [])
    assert resolve_flip_pairs('auto', []) == []  # nothing to find
    with pytest.raises(ValueError, match='neither'):
        resolve_flip_pairs('sthv3', names)
    assert resolve_flip_pairs('none', []) == []


def test_random_erasing_one_box_per_clip():
    torch.manual_seed(0)
    clips = torch.zeros(4, 3, 5, 32, 32)
    erased = ClipRandomErasing(probability=1.0, mode='pixel')(clips.clone())
    for clip in erased:
        changed = (clip != 0).any(0)  # (T, H, W)
        assert changed[0].any() and all(torch.equal(changed[0], c) for c in changed)
        assert not torch.equal(clip[:, 0], clip[:, 1])  # pixel noise differs, the box does not


def test_eval_transform_three_crops_along_long_side():
    clip = torch.arange(96, dtype=torch.uint8).view(1, 1, 1, 96).expand(2, 3, 32, 96)
    views = ClipEvalTransform(size=32, short_side=32, num_crops=3)(clip)
    assert views.shape == (3, 2, 3, 32, 32)
    assert [int(v[0, 0, 0, 0]) for v in views] == [0, 32, 64]
    assert ClipEvalTransform(size=32, num_crops=1)(clip)[0, 0, 0, 0, 0] == 32


def test_annotation_formats(tmp_path):
    (tmp_path / 'list.txt').write_text('a/x.mp4 3\nb/y.mp4,1\nz.mp4 120 2\n\n')
    v = load_video_list(str(tmp_path / 'list.txt'), '/data')
    assert v.samples == [('/data/a/x.mp4', 3), ('/data/b/y.mp4', 1), ('/data/z.mp4', 2)] and v.num_classes == 4

    with open(tmp_path / 'k400.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split'])
        w.writerow(['riding a bike', 'abc', 10, 20, 'val'])
        w.writerow(['abseiling', 'def', 0, 10, 'val'])
    v = load_video_list(str(tmp_path / 'k400.csv'), 'root', 'kinetics')
    assert v.class_names == ['abseiling', 'riding a bike']
    assert v.samples == [('root/abc_000010_000020.mp4', 1), ('root/def_000000_000010.mp4', 0)]

    (tmp_path / 'labels.json').write_text(json.dumps({'Pushing something from left to right': '1',
                                                      'Approaching something with your camera': '0'}))
    (tmp_path / 'validation.json').write_text(json.dumps([
        {'id': '74225', 'label': 'pushing a pen from left to right',
         'template': 'Pushing [something] from left to right', 'placeholders': ['a pen']}]))
    v = load_video_list(str(tmp_path / 'validation.json'), 'v2', 'sthv2', str(tmp_path / 'labels.json'))
    assert v.samples == [('v2/74225.webm', 1)] and v.class_names[0] == 'Approaching something with your camera'

    (tmp_path / 'v1-labels.csv').write_text('Holding something\nPutting something on a surface\n')
    (tmp_path / 'v1-validation.csv').write_text('1420;Putting something on a surface\n9;Holding something\n')
    v = load_video_list(str(tmp_path / 'v1-validation.csv'), 'frames', 'sthv1', str(tmp_path / 'v1-labels.csv'))
    assert v.samples == [('frames/1420', 1), ('frames/9', 0)]

    (tmp_path / 'vocab.json').write_text(json.dumps([['Back', '15som', '05Twis', 'FREE'], ['Back', '15som', 'NoTwis',
                                                                                             'PIKE']]))
    (tmp_path / 'd48.json').write_text(json.dumps([{'vid_name': '-mmq0PT-u8k_00155', 'label': 1, 'start_frame': 0,
                                                    'end_frame': 184}]))
    v = load_video_list(str(tmp_path / 'd48.json'), 'rgb', 'diving48', str(tmp_path / 'vocab.json'))
    assert v.samples == [('rgb/-mmq0PT-u8k_00155.mp4', 1)] and v.class_names[1] == 'Back, 15som, NoTwis, PIKE'

    with pytest.raises(ValueError, match='needs its class-name file'):
        load_video_list(str(tmp_path / 'validation.json'), '', 'sthv2')
    (tmp_path / 'bad.txt').write_text('only_a_path.mp4\n')
    with pytest.raises(ValueError, match='bad.txt:1'):
        load_video_list(str(tmp_path / 'bad.txt'))


def test_labels_out_of_range_name_the_file_and_line(tmp_path):
    (tmp_path / 'val.txt').write_text('a.mp4 3\n\nb.mp4 12\n')
    videos = load_video_list(str(tmp_path / 'val.txt'))
    videos.check_labels(13)
    with pytest.raises(ValueError, match=r'val.txt:3: label 12 of b.mp4 is not a class of the model, which has 8'):
        videos.check_labels(8)
    (tmp_path / 'neg.txt').write_text('a.mp4 -1\n')
    with pytest.raises(ValueError, match='neg.txt:1: label -1'):
        load_video_list(str(tmp_path / 'neg.txt')).check_labels(8)


def test_dataset_counts_unreadable_in_eval_and_replaces_in_training(demo):
    good = load_video_list(demo['val'], demo['root']).samples[:3]
    videos = VideoList(good + [('/nonexistent/video.mp4', 0)], [])
    sampler = ClipSampler(8, 1, 2, 'uniform')
    evaluation = VideoDataset(videos, sampler, ClipEvalTransform(32, num_crops=3))
    items = [evaluation[i] for i in range(4)]
    assert [i['readable'] for i in items] == [True, True, True, False]
    assert items[0]['video'].shape == items[3]['video'].shape == (6, 3, 8, 32, 32)
    training = VideoDataset(videos, sampler.__class__(8, 1, 1, 'uniform'), ClipTrainTransform(32, 40), train=True)
    clip, label, replaced = training[3]  # the loop counts and reports what an item replaced
    assert clip.shape == (3, 8, 32, 32) and replaced.startswith('/nonexistent/video.mp4: ')
    assert 'no such file' in replaced
    assert training[0][2] == ''


def test_demo_dataset_is_balanced_decodable_and_cached(demo):
    lines = open(demo['train']).read().split('\n')
    labels = [int(line.split()[1]) for line in lines if line]
    assert len(labels) == 16 and np.bincount(labels).tolist() == [2] * 8
    assert open(demo['classes']).read().split('\n')[:2] == ['moving left to right', 'moving right to left']
    frames, _ = load_clip(f"{demo['root']}/{lines[0].split()[0]}", lambda n: np.arange(n)[None])
    assert frames.shape == (1, 16, 64, 64, 3)
    mtime = (lambda p: __import__('os').path.getmtime(p))(demo['train'])
    make_demo_dataset(demo['root'], num_train=16, num_val=8, progress=False)  # same settings: nothing rewritten
    assert __import__('os').path.getmtime(demo['train']) == mtime


def test_demo_classes_need_time():
    """A forward clip and its reversed twin hold the same set of frames: only the order tells them apart."""
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for forward in (0, 2, 4, 6):
        a, b = render_clip(forward, 16, 32, rng_a), render_clip(forward + 1, 16, 32, rng_b)
        assert np.abs(a.astype(int) - b[::-1]).mean() < 25  # same content backwards, up to the noise


def loader_kwargs(**changes):
    """The training loader's parameters of these tests: 4 clips of 4 x 24 px per batch, RandAugment in the workers."""
    return dict(dict(batch_size=4, aa='rand-m9-n2-mstd0.5-inc1'), **changes)


CLIP = ClipConfig(num_frames=4, frame_interval=1, sampling='uniform', img_size=24)


def one_epoch(loader, epoch: int):
    loader.sampler.set_epoch(epoch)  # as train.py does through Accelerate's prepared loader
    torch.manual_seed(epoch)  # and train.py's set_seed(seed + epoch): the workers' own seeds must not matter
    return [(clips.clone(), labels.clone()) for clips, labels, _ in loader]


def test_same_seed_same_clips_whatever_the_worker_count(demo):
    """Order, frames and augmentation come from seeds drawn in the main process: 0, 1 or 2 workers, same clips."""
    from tps_timm.data import build_train_loader
    videos = load_video_list(demo['train'], demo['root'])
    epochs = {}
    for workers in (0, 1, 2):
        loader = build_train_loader(videos, CLIP, **loader_kwargs(workers=workers))
        epochs[workers] = [one_epoch(loader, 7), one_epoch(loader, 8)]  # persistent workers: two epochs each
    for workers in (1, 2):
        for ours, reference in zip(epochs[workers], epochs[0]):
            assert len(ours) == len(reference) == 4
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ours, reference))
    assert not torch.equal(epochs[0][0][0][0], epochs[0][1][0][0])  # while epochs differ


def test_sampler_shards_across_processes_as_accelerate_prepares_it():
    """Every rank draws the same order and takes its own batches: no clip twice in an epoch, epochs differ."""
    from accelerate.data_loader import prepare_data_loader
    from tps_timm.data.loader import SeededRandomSampler

    class Pairs(torch.utils.data.Dataset):  # what VideoDataset receives: (index, seed)
        def __len__(self) -> int:
            return 22

        def __getitem__(self, item):
            return item

    def epoch_items(rank: int, epoch: int) -> list:
        loader = torch.utils.data.DataLoader(Pairs(), batch_size=3, drop_last=True,
                                             sampler=SeededRandomSampler(22, seed=5))
        shard = prepare_data_loader(loader, num_processes=2, process_index=rank, put_on_device=False)
        shard.set_epoch(epoch)
        return [tuple(pair) for index, seed in shard for pair in zip(index.tolist(), seed.tolist())]

    for epoch in (0, 1):
        first, second = epoch_items(0, epoch), epoch_items(1, epoch)
        assert len(first) == len(second) == 9  # 7 batches of 3: 3 per rank, the odd one dropped
        assert len({index for index, _ in first + second}) == 18
        assert epoch_items(0, epoch) == first  # set_epoch reaches the sampler through Accelerate's shard
    assert epoch_items(0, 0) != epoch_items(0, 1)


def test_repeated_aug_decodes_once_for_n_clips_and_keeps_the_epoch(demo, monkeypatch):
    from tps_timm.data import build_train_loader
    videos = load_video_list(demo['train'], demo['root'])
    decoded = []
    real_decode = VideoDataset.decode
    monkeypatch.setattr(VideoDataset, 'decode', lambda self, *a: decoded.append(a[0]) or real_decode(self, *a))
    plain = build_train_loader(videos, CLIP, **loader_kwargs())
    repeated = build_train_loader(videos, CLIP, **loader_kwargs(repeated_aug=2))
    assert len(repeated) == len(plain) == 4  # steps per epoch (16 videos, 4 clips per step)
    batches = one_epoch(repeated, 0)
    assert len(decoded) == 8 and len(set(decoded)) == 8  # half the videos, each decoded once
    for clips, labels in batches:
        assert clips.shape == (4, 3, 4, 24, 24) and labels.shape == (4,)
        for pair in ((clips[0], clips[1]), (clips[2], clips[3])):
            assert not torch.equal(*pair)  # two augmentations of one decoded clip
    first = VideoDataset(videos, ClipSampler(4, 1, 1, 'uniform'), ClipTrainTransform(24, 24, hflip=0.0),
                         train=True, repeated_aug=3)[(0, 123)]
    assert [c.shape for c in first[0]] == [(3, 4, 24, 24)] * 3 and first[1].tolist() == [videos.samples[0][1]] * 3
    with pytest.raises(ValueError, match='--repeated-aug must be at least 1, got 0'):  # the flag refuses 0 too
        build_train_loader(videos, CLIP, **loader_kwargs(repeated_aug=0))
    with pytest.raises(ValueError, match='multiple of --repeated-aug 3'):
        build_train_loader(videos, CLIP, **loader_kwargs(repeated_aug=3))
    with pytest.raises(ValueError, match='16 training videos make no full batch of --batch-size 32'):
        build_train_loader(videos, CLIP, **loader_kwargs(batch_size=32))


def test_default_workers_share_the_cpus_between_processes(monkeypatch):
    from tps_timm.data import default_workers
    monkeypatch.setattr(os, 'sched_getaffinity', lambda _: set(range(16)), raising=False)
    assert default_workers(1) == 15 and default_workers(8) == 1 and default_workers(32) == 1
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')
    assert default_workers() == 3


def test_throughput_tool_measures_the_training_loader(demo, tmp_path, capsys):
    from tps_timm.throughput import main
    out = tmp_path / 'loader.json'
    listed = tmp_path / 'train.txt'  # with a missing video: the loader replaces it, the split leaves it out
    listed.write_text(open(demo['train']).read() + 'videos/missing.mp4 0\n' * 16)
    base = ['--train-list', str(listed), '--data-root', demo['root'], '--model', 'tps_swin_tiny', '--num-frames',
            '4', '--img-size', '32', '--batch-size', '4', '--no-progress']
    result = main([*base, '--workers', '0', '--clips', '8', '--split-clips', '8', '--repeated-aug', '2', '--aa',
                   'rand-m9-n2-mstd0.5-inc1', '--aa-on-batch', '--json', str(out)])
    saved = json.loads(out.read_text())
    assert saved == pytest.approx(result) and saved['clips'] >= 8 and saved['clips_per_s'] > 0
    assert saved['repeated_aug'] == 2 and saved['aa_on_batch'] and saved['aa_on_batch_ms_cpu'] > 0
    assert min(saved['decode_ms'], saved['augment_ms'], saved['collate_ms']) > 0 and saved['split_unreadable'] > 0
    printed = capsys.readouterr().out
    assert 'clips/s' in printed and 'decode' in printed and 'H100' in printed
    with pytest.raises(SystemExit) as err:
        main([*base, '--clips', '0'])
    assert err.value.code == 2 and '--clips' in capsys.readouterr().err


def test_a_video_shorter_than_a_clip_is_said_once(tmp_path, caplog):
    """Its frames repeat to fill the clip, and the log says so, once (not for every short video)."""
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f'short{i}.mp4'))
        write_video(paths[-1], np.zeros((2, 32, 32, 3), np.uint8), fps=8)
    dataset = VideoDataset(VideoList([(p, 0) for p in paths]), ClipSampler(8, 1, 1, 'uniform'), ClipEvalTransform(32))
    with caplog.at_level(logging.WARNING):
        items = [dataset[i] for i in range(2)]
    assert all(item['readable'] for item in items) and items[0]['video'].shape == (1, 3, 8, 32, 32)
    notes = [r.getMessage() for r in caplog.records if 'fewer than' in r.getMessage()]
    assert notes == [f'{paths[0]} has 2 frames, fewer than the 8 of a clip: its frames are repeated (said once)']
