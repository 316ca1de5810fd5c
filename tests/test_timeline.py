"""predict --timeline: windows decoded in one pass equal to each window decoded on its own, the segments, and the
trained demo model finding every action of a long video with its boundaries."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tps_timm import predict
from tps_timm.clip import ClipConfig
from tps_timm.data import ClipSampler, WindowItems, WindowLayout, load_clip, render_actions, sliding_windows, \
    window_seconds, write_video
from tps_timm.timeline import timeline_segments

UNIFORM = ClipConfig(num_frames=8, frame_interval=1, sampling='uniform', img_size=48, train_video_seconds=16 / 12)


@pytest.mark.parametrize('video_frames, window, stride', [(40, 16, 8), (30, 16, 8), (16, 16, 8), (5, 16, 8),
                                                          (50, 8, 12)])
def test_sliding_windows_cover_the_video_once_through(video_frames, window, stride):
    layout = WindowLayout(window, stride)
    sampler = ClipSampler(8, 1, 1, 'uniform')
    converted = []
    windows = list(sliding_windows(range(video_frames), layout, sampler, lambda f: converted.append(f) or f))
    assert len(converted) == len(set(converted))  # each frame converted once, however many windows take it
    if video_frames < window:  # one window of the whole video, its frames repeated
        assert [(w.start, w.end, w.padded) for w in windows] == [(0, video_frames, True)]
        assert windows[0].frames == (sampler(video_frames)[0]).tolist()
        return
    assert windows[-1].end == video_frames and all(w.end - w.start == window for w in windows)
    starts = [w.start for w in windows]
    expected = list(range(0, video_frames - window + 1, stride))
    assert starts[:len(expected)] == expected and len(starts) - len(expected) in (0, 1)
    for w in windows:  # the clip of a window: the test clip of its frames, as a video of that length gives it
        assert w.frames == (w.start + layout.clip_indices(sampler)).tolist()


@pytest.fixture(scope='module')
def long_video(tmp_path_factory):
    """Eight demo actions back to back at 12 fps (one of each class), each as long as a training video (16 frames,
    1.33 s: the speed the model learnt), and the truth."""
    folder = tmp_path_factory.mktemp('long')
    frames, truth = render_actions([0, 3, 6, 1, 4, 7, 2, 5], 16, 64, np.random.default_rng(5))
    path = folder / 'actions.mp4'
    write_video(path, frames, fps=12, gop=30)
    short = folder / 'short.mp4'
    write_video(short, frames[:9], fps=12)
    return dict(path=str(path), short=str(short), truth=[(label, start / 12, end / 12) for label, start, end in truth])


def test_one_pass_windows_equal_each_window_decoded_by_itself(long_video):
    items = WindowItems(UNIFORM, stride=0.5)
    got = list(items.eval_items(long_video['path'], 0, 0))
    assert len(got) == 20 and all(item['readable'] for item in got)
    sampler = ClipSampler.for_clip(UNIFORM)
    for item in got[::5] + got[-1:]:
        start = round(item['start'] * 12)
        frames, _ = load_clip(long_video['path'], lambda n: start + sampler(16)[:1], backend='pyav')
        expected = items.transform(torch.from_numpy(frames[0]).permute(0, 3, 1, 2))  # (1, T, C, H, W)
        assert torch.equal(item['video'], expected.permute(0, 2, 1, 3, 4))
        assert item['end'] - item['start'] == pytest.approx(16 / 12)


def test_window_seconds_dense_uniform_and_unknown():
    assert window_seconds(ClipConfig(num_frames=16, frame_interval=4), 25.0) == pytest.approx(64 / 25)
    assert window_seconds(UNIFORM, 30.0) == pytest.approx(16 / 12)
    assert window_seconds(UNIFORM, 30.0, window=3) == 3
    with pytest.raises(ValueError, match='give --window SECONDS'):
        window_seconds(ClipConfig(sampling='uniform'), 30.0)


def test_segments_tile_the_video_with_background_and_short_runs_given_away():
    def probs(labels):
        return torch.nn.functional.one_hot(torch.tensor(labels), 3).float() * 0.9 + 0.1 / 3
    starts = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    ends = [s + 2 for s in starts]  # windows of 2 s every 1 s: centres at 1..6, the video ends at 7
    segments = timeline_segments(starts, ends, probs([0, 0, 1, 0, 2, 2]))
    assert [(s['start'], s['end'], s['class_index']) for s in segments] == [
        (0.0, 2.5, 0), (2.5, 3.5, 1), (3.5, 4.5, 0), (4.5, 7.0, 2)]
    assert segments[0]['probability'] == pytest.approx(0.9 + 0.1 / 3)
    joined = timeline_segments(starts, ends, probs([0, 0, 1, 0, 2, 2]), min_segment=1.5)
    assert [(s['start'], s['end'], s['class_index']) for s in joined] == [(0.0, 4.5, 0), (4.5, 7.0, 2)]
    low = probs([0, 0, 1, 0, 2, 2])
    low[4:] = 1 / 3  # no class stands out: background
    assert [s['class_index'] for s in timeline_segments(starts, ends, low, min_prob=0.5)] == [0, 1, 0]


def test_a_video_of_no_frames_is_unreadable_not_left_out(monkeypatch):
    import contextlib

    import tps_timm.data.windows as windows
    monkeypatch.setattr(windows, 'decoded_frames', lambda name, data: contextlib.nullcontext((12, 0, iter(()))))
    items = list(WindowItems(UNIFORM).eval_items('empty.mp4', 0, 3))
    assert [(i['readable'], i['error'], i['index']) for i in items] == [(False, 'no frames decoded', 3)]


def test_the_demo_model_finds_every_action_of_a_long_video(trained_demo, long_video, tmp_path, capsys):
    import importlib.util
    plotting = importlib.util.find_spec('matplotlib') is not None  # the plot extra ("tps-timm[plot]", in dev)
    model = trained_demo['model_dir']
    config = json.loads((Path(model) / 'config.json').read_text())
    assert config['pretrained_cfg']['train_video_seconds'] == pytest.approx(16 / 12)  # recorded by train.py
    out = tmp_path / 'timeline.json'
    predict.main([long_video['path'], long_video['short'], '--model', model, '--timeline', '--output', str(out),
                  *(['--plot', str(tmp_path / 'plots')] if plotting else [])])
    records = json.loads(out.read_text())
    record = records[0]
    assert (record['window'], record['stride'], record['duration']) == (1.333, 0.667, 10.667)
    segments = record['segments']
    assert segments[0]['start'] == 0 and segments[-1]['end'] == record['duration']
    assert all(a['end'] == b['start'] for a, b in zip(segments, segments[1:]))  # they tile the video
    names = config['label_names']
    for label, start, end in long_video['truth']:  # every action found: its class where it is
        middle = (start + end) / 2
        assert next(s['label'] for s in segments if s['start'] <= middle < s['end']) == names[label], segments
    boundaries = [s['end'] for s in segments[:-1]]
    for _, _, end in long_video['truth'][:-1]:  # and each change of action within a window of the truth
        assert min(abs(b - end) for b in boundaries) <= record['window'], (end, boundaries)
    assert records[1]['note'].startswith('0.75 s long, shorter than a 1.33 s window: one window')
    assert len(records[1]['windows']) == 1
    if plotting:
        assert sorted(p.name for p in (tmp_path / 'plots').iterdir()) == ['actions.png', 'short.png']
    captured = capsys.readouterr()
    assert 'wrote the timelines of 2 videos (16 windows, 0 unreadable)' in captured.out

    csv_out = tmp_path / 'timeline.csv'  # the same as CSV, printed without --output
    predict.main([long_video['path'], '--model', model, '--timeline', '--output', str(csv_out)])
    rows = csv_out.read_text().splitlines()
    assert rows[0] == 'video,kind,start,end,rank,label,probability,note'
    assert sum(',segment,' in row for row in rows) == len(segments) and sum(',window,' in row for row in rows) == 15 * 5
    predict.main([long_video['short'], '--model', model, '--timeline'])
    assert 'shorter than a 1.33 s window' in capsys.readouterr().out


def test_timeline_errors_are_one_line(trained_demo, long_video, tmp_path, capsys, monkeypatch):
    folder = tmp_path / 'old'  # a model folder of before the duration was recorded
    folder.mkdir()
    for name in ('model.safetensors', 'config.json'):
        (folder / name).write_bytes((Path(trained_demo['model_dir']) / name).read_bytes())
    config = json.loads((folder / 'config.json').read_text())
    del config['pretrained_cfg']['train_video_seconds']
    (folder / 'config.json').write_text(json.dumps(config))
    for argv, message in (
            ([long_video['path'], '--model', str(folder), '--timeline'], 'give --window SECONDS'),
            ([long_video['path'], '--model', str(folder), '--plot', 'x.png'], '--plot goes with --timeline'),
            ([long_video['path'], '--model', str(folder), '--timeline', '--stride', '0'], 'must be a number above 0'),
    ):
        with pytest.raises(SystemExit) as exit_info:
            predict.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    missing = str(tmp_path / 'missing.mp4')  # an unreadable video is listed, counted and named
    out = tmp_path / 'with_missing.json'
    predict.main([missing, long_video['short'], '--model', str(folder), '--timeline', '--window', '1', '--output',
                  str(out), '--max-unreadable', '0.5'])
    records = json.loads(out.read_text())
    assert records[0] == dict(video=missing, error='no such file') and len(records[1]['windows']) == 1
    assert 'wrote the timelines of 2 videos (1 windows, 1 unreadable)' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        predict.main([missing, long_video['short'], '--model', str(folder), '--timeline', '--window', '1'])
    assert '1 of 2 videos (50.0%) were unreadable' in str(exit_info.value) and missing in str(exit_info.value)
    import tps_timm.plot
    monkeypatch.setattr(tps_timm.plot, 'check_plotting', lambda: 'drawing a plot needs matplotlib: pip install x')
    with pytest.raises(SystemExit):
        predict.main([long_video['path'], '--model', str(folder), '--timeline', '--window', '1', '--plot', 'x.png'])
    assert 'needs matplotlib' in capsys.readouterr().err
