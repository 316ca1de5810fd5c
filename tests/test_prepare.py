import os

import av
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from tps_timm.data import load_clip, load_video_list, read_class_names, render_clip, write_video
from tps_timm.data.prepare import main, prepare_dataset

FRAMES = 24


def _clip(seed: int, height: int = 64, width: int = 96) -> np.ndarray:
    clip = render_clip(seed % 8, FRAMES, max(height, width), np.random.default_rng(seed))
    return np.ascontiguousarray(clip[:, :height, :width])


@pytest.fixture
def source(tmp_path):
    """SRC with an mp4, an avi, a webm, an mp4 smaller than the short side and a frame folder, and its list."""
    root = tmp_path / 'src'
    (root / 'a').mkdir(parents=True)
    (root / 'b').mkdir()
    write_video(root / 'a/x.mp4', _clip(0))
    write_video(root / 'b/y.avi', _clip(1), codec='mpeg4')
    write_video(root / 'z.webm', _clip(2, 96, 64), codec='libvpx')
    write_video(root / 'tiny.mp4', _clip(3, 32, 48))
    (root / 'frames/001').mkdir(parents=True)
    for i in range(2):
        Image.fromarray(_clip(4)[i]).save(root / f'frames/001/{i:05d}.jpg')
    (root / 'train.txt').write_text('a/x.mp4 0\nb/y.avi 1\nz.webm 2\ntiny.mp4 3\nframes/001 4\n')
    return root


def _keyframes(path) -> list:
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    return [i for i, p in enumerate(packets) if p.is_keyframe]


def _all_frames(path) -> np.ndarray:
    return load_clip(str(path), lambda n: np.arange(n), 'pyav')[0]


def test_outputs_are_resized_short_gop_mp4s_at_the_same_paths(source, tmp_path):
    dst = tmp_path / 'dst'
    videos = load_video_list(str(source / 'train.txt'), str(source))
    result = prepare_dataset(videos, str(source), str(dst), short_side=48, gop=8, workers=1, progress=False,
                             list_name='train.txt')
    assert sorted(os.path.relpath(p, source) for p in result['written']) == ['a/x.mp4', 'b/y.avi', 'tiny.mp4',
                                                                            'z.webm']
    assert result['skipped'] == [str(source / 'frames/001')] and not result['done_before'] + result['unreadable']
    listed = load_video_list(result['list'], str(dst))
    assert listed.samples == [(str(dst / rel), label) for rel, label in
                              (('a/x.mp4', 0), ('b/y.mp4', 1), ('z.mp4', 2), ('tiny.mp4', 3))]
    sizes = {'a/x.mp4': (48, 72), 'b/y.mp4': (48, 72), 'z.mp4': (72, 48), 'tiny.mp4': (32, 48)}  # tiny: not upscaled
    for rel, (height, width) in sizes.items():
        with av.open(str(dst / rel)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.format.name) == ('h264', 'yuv420p')
            assert (stream.height, stream.width, stream.average_rate) == (height, width, 12)
            assert not container.streams.audio
        keyframes = _keyframes(dst / rel)
        assert len(_all_frames(dst / rel)) == FRAMES and keyframes[0] == 0
        assert max(np.diff(keyframes + [FRAMES])) <= 8, (rel, keyframes)
    src = torch.from_numpy(_all_frames(source / 'a/x.mp4')).permute(0, 3, 1, 2)
    expected = TF.resize(src, [48, 72], antialias=True).permute(0, 2, 3, 1).numpy()
    assert np.abs(_all_frames(dst / 'a/x.mp4').astype(float) - expected).mean() < 6
    assert not list(dst.rglob('*.tmp-*'))


def test_a_second_run_resumes_and_ignores_interrupted_writes(source, tmp_path, capsys):
    dst = tmp_path / 'dst'
    args = ['--data-root', str(source), '--list', str(source / 'train.txt'), '--output', str(dst), '--short-side',
            '48', '--workers', '1', '--no-progress']
    assert main(args) == 0
    assert main(args) == 0
    assert 'written: 0, done before: 4, unreadable: 0, skipped: 1' in capsys.readouterr().out
    (dst / 'a/x.mp4').unlink()
    (dst / 'a/x.tmp-999.mp4').write_bytes(b'half an mp4')  # a run killed while writing x.mp4
    (dst / 'z.tmp-999.mp4').write_bytes(b'')  # z.mp4 was finished after it
    videos = load_video_list(str(source / 'train.txt'), str(source))
    result = prepare_dataset(videos, str(source), str(dst), short_side=48, workers=1, progress=False)
    assert result['written'] == [str(source / 'a/x.mp4')] and len(result['done_before']) == 3
    assert len(_all_frames(dst / 'a/x.mp4')) == FRAMES and not (dst / 'a/x.tmp-999.mp4').exists()
    with pytest.raises(SystemExit) as exit_info:  # resuming with other settings would mix two encodings
        main([*args, '--gop', '8'])
    assert exit_info.value.code == 2 and 'gop 16 -> 8' in capsys.readouterr().err


def test_unreadable_sources_are_reported_and_the_others_written(tmp_path, capsys):
    root, dst = tmp_path / 'src', tmp_path / 'dst'
    root.mkdir()
    write_video(root / 'good.mp4', _clip(5))
    (root / 'empty.mp4').write_bytes(b'')
    (root / 'garbage.mkv').write_bytes(np.random.default_rng(0).bytes(4000))
    with av.open(str(root / 'audio.m4a'), 'w') as container:
        stream = container.add_stream('aac', rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format='fltp', layout='mono')
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    (root / 'val.txt').write_text('good.mp4 0\nempty.mp4 1\ngarbage.mkv 1\nmissing.mp4 0\naudio.m4a 1\n')
    code = main(['--data-root', str(root), '--list', str(root / 'val.txt'), '--output', str(dst), '--workers', '2',
                 '--no-progress'])
    out = capsys.readouterr().out
    assert code == 1
    assert 'written: 1, done before: 0, unreadable: 4, skipped: 0' in out
    assert f'{root / "empty.mp4"}: empty file' in out and f'{root / "missing.mp4"}: no such file' in out
    assert f'{root / "audio.m4a"}: no video stream' in out
    assert str(root / 'garbage.mkv') in out
    assert f'--data-root {dst} --train-list {dst / "val.txt"} --dataset-format list' in out
    assert (dst / 'val.txt').read_text() == 'good.mp4 0\n'
    assert sorted(p.name for p in dst.iterdir()) == ['good.mp4', 'prepare.json', 'val.txt']


def test_class_names_of_the_annotation_format_are_written_with_the_list(tmp_path, capsys):
    root, dst = tmp_path / 'src', tmp_path / 'dst'
    (root / 'abseiling').mkdir(parents=True)
    write_video(root / 'abseiling/abc_000001_000011.mp4', _clip(6, 32, 32))
    (root / 'train.csv').write_text('label,youtube_id,time_start,time_end,split\nabseiling,abc,1,11,train\n')
    assert main(['--data-root', str(root), '--list', str(root / 'train.csv'), '--output', str(dst),
                 '--dataset-format', 'kinetics', '--workers', '1', '--no-progress']) == 0
    assert f'--class-names {dst / "train_classes.txt"}' in capsys.readouterr().out
    listed = load_video_list(str(dst / 'train.txt'), str(dst), class_names=str(dst / 'train_classes.txt'))
    assert listed.samples == [(str(dst / 'abseiling/abc_000001_000011.mp4'), 0)]
    assert read_class_names(str(dst / 'train_classes.txt')) == ['abseiling']


@pytest.mark.parametrize('change, message', [
    (dict(root='nowhere'), '--data-root'),
    (dict(list='nowhere.txt'), '--list'),
    (dict(output='src'), 'another folder than --data-root'),
    (dict(extra=['--gop', '0']), '--gop must be at least 1'),
    (dict(lines='../outside.mp4 0\n'), 'is not under the data root'),
    (dict(lines='a.mp4 0\na.webm 1\n'), 'would both be written to'),
])
def test_bad_arguments_exit_2_naming_the_problem(tmp_path, capsys, change, message):
    root = tmp_path / 'src'
    root.mkdir()
    (root / 'list.txt').write_text(change.get('lines', 'a.mp4 0\n'))
    args = ['--data-root', str(tmp_path / change.get('root', 'src')), '--list',
            str(root / change.get('list', 'list.txt')), '--output', str(tmp_path / change.get('output', 'dst')),
            *change.get('extra', [])]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_split_prepared_in_parts_merges_into_the_one_list(source, tmp_path, capsys):
    """Two runs take disjoint parts (as a SLURM job array would); --merge writes the list a single run writes."""
    dst = tmp_path / 'dst'
    args = ['--data-root', str(source), '--list', str(source / 'train.txt'), '--output', str(dst), '--short-side',
            '48', '--workers', '1', '--no-progress', '--num-shards', '2']
    assert main([*args, '--shard-index', '1']) == 0
    assert sorted(p.name for p in dst.rglob('*.mp4')) == ['tiny.mp4', 'y.mp4']  # every 2nd video from the 2nd
    assert not (dst / 'train.txt').exists() and 'once every part is done' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # part 0 has not run
        main([*args, '--merge'])
    assert exit_info.value.code == 2
    assert '1 of the 2 parts have not finished (no train.shard-00000-of-00002.json): run --shard-index 0' in \
        capsys.readouterr().err
    assert main([*args, '--shard-index', '0']) == 0
    assert sorted(p.name for p in dst.rglob('*.mp4')) == ['tiny.mp4', 'x.mp4', 'y.mp4', 'z.mp4']
    assert main([*args, '--merge']) == 0
    assert 'done before: 4, unreadable: 0, skipped: 1' in capsys.readouterr().out
    assert (dst / 'train.txt').read_text() == 'a/x.mp4 0\nb/y.mp4 1\nz.mp4 2\ntiny.mp4 3\n'  # the split's order
    for bad, message in ((['--shard-index', '2'], '--shard-index 2 must be below --num-shards 2'),
                         ([], '--num-shards 2: give this run\'s --shard-index (0..1), or --merge'),
                         (['--merge', '--shard-index', '0'], '--merge writes the list of all the parts')):
        with pytest.raises(SystemExit):
            main([*args, *bad])
        assert message in capsys.readouterr().err
