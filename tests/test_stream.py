"""predict --stream: a file played as a stream, a pipe, a stream that stalls or ends early, and a model too slow for
its source (windows skipped, the lag bounded)."""
import io
import json
import os
import threading
import time

import numpy as np
import pytest
import timm
import torch

import tps_timm  # noqa: F401
from tps_timm import predict
from tps_timm.clip import ClipConfig
from tps_timm.data import DEMO_CLASSES, render_actions, write_video
from tps_timm.stream import StreamEnded, classify_stream


@pytest.fixture(scope='module')
def streams(tmp_path_factory):
    """Two demo actions of 2 s (moving left to right, then rotating clockwise) at 12 fps, as an mp4 and as MPEG-TS
    bytes."""
    folder = tmp_path_factory.mktemp('streams')
    frames, _ = render_actions([0, 6], 24, 64, np.random.default_rng(2))
    write_video(folder / 'two.mp4', frames, fps=12)
    write_video(folder / 'two.ts', frames, fps=12)
    return dict(folder=folder, mp4=str(folder / 'two.mp4'), ts=(folder / 'two.ts').read_bytes())


@pytest.fixture(scope='module')
def demo(trained_demo):
    model = timm.create_model(f'local-dir:{trained_demo["model_dir"]}', pretrained=True).eval()
    return model, ClipConfig.from_pretrained_cfg(model.pretrained_cfg)


def _feed(path: str, data: bytes, seconds: float, stall_after: float = 1.0, hold: float = 0.0) -> threading.Thread:
    """Write ``data`` into the named pipe ``path`` over ``seconds`` (as a live source would), stopping after the
    ``stall_after`` fraction of it for ``hold`` seconds with the pipe still open."""
    def run():
        try:
            with open(path, 'wb') as pipe:
                chunks = np.array_split(np.frombuffer(data, np.uint8), 40)
                for i, chunk in enumerate(chunks):
                    pipe.write(chunk.tobytes())
                    pipe.flush()
                    time.sleep(seconds / len(chunks))
                    if i + 1 == round(stall_after * len(chunks)) and hold:
                        time.sleep(hold)  # open, silent: a stalled source
        except BrokenPipeError:  # the reader stopped reading (it gave up on the stalled stream)
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_file_played_as_a_stream_keeps_up_and_names_the_actions(demo, streams, tmp_path, capsys):
    model, clip = demo
    out = tmp_path / 'stream.jsonl'
    started = time.monotonic()
    summary = classify_stream(model, streams['mp4'], clip, list(DEMO_CLASSES), output=str(out), top_k=2)
    wall = time.monotonic() - started
    assert wall >= 3.5  # played at its frame rate: 4 s of video
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 5
    assert [r['end'] for r in records] == pytest.approx([4 / 3, 2, 8 / 3, 10 / 3, 4], abs=1e-3)
    assert records[0]['top'][0]['label'] == 'moving left to right'
    assert records[-1]['top'][0]['label'] == 'rotating clockwise'
    assert 'kept up' in summary and 'the stream ended' in summary and '5 windows from 48 frames' in summary, summary
    assert max(r['latency'] for r in records) < 1.0, records


def test_a_pipe_that_stalls_ends_cleanly_with_what_was_seen(demo, streams, tmp_path):
    model, clip = demo
    fifo = str(tmp_path / 'live')
    os.mkfifo(fifo)
    feeder = _feed(fifo, streams['ts'], 2.0, stall_after=0.75, hold=2.5)
    printed = io.StringIO()
    summary = classify_stream(model, fifo, clip, list(DEMO_CLASSES), timeout=1.5, out=printed)
    lines = printed.getvalue().splitlines()
    assert 'no frame for 1.5 s: the stream stalled' in summary, summary
    assert 1 <= len(lines) <= 4 and lines[0].endswith('moving left to right'), lines  # 1.5 of 2 s came
    feeder.join(10)


def test_predict_stream_reads_a_pipe_to_its_end(trained_demo, streams, tmp_path, capsys):
    fifo = str(tmp_path / 'live')
    os.mkfifo(fifo)
    feeder = _feed(fifo, streams['ts'], 4.0)
    predict.main(['--stream', fifo, '--model', trained_demo['model_dir']])
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) >= 3 and 'rotating clockwise' in captured.out.splitlines()[-1]
    assert 'the stream ended' in captured.err and f'--stream {fifo}:' in captured.err
    feeder.join(10)


def test_a_stream_shorter_than_a_window_gives_one_padded_window(demo, streams, tmp_path, caplog):
    model, clip = demo
    short = tmp_path / 'short.mp4'
    frames, _ = render_actions([0], 24, 64, np.random.default_rng(3))
    write_video(short, frames[:6], fps=12)
    printed = io.StringIO()
    summary = classify_stream(model, str(short), clip, list(DEMO_CLASSES), out=printed)
    assert len(printed.getvalue().splitlines()) == 1 and '1 windows from 6 frames' in summary
    assert 'fewer than a 1.33 s window (16 frames): one window, its frames repeated' in caplog.text
    with pytest.raises(StreamEnded, match='cannot open it'):
        classify_stream(model, str(tmp_path / 'missing.mp4'), clip, list(DEMO_CLASSES))


class _Slow(torch.nn.Module):
    """A model that takes ``seconds`` per forward."""

    def __init__(self, model: torch.nn.Module, seconds: float):
        super().__init__()
        self.model, self.seconds = model, seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return self.model(x)


def test_a_model_slower_than_the_stride_skips_windows_and_never_lags_more(demo, streams, tmp_path):
    model, clip = demo
    out = tmp_path / 'slow.jsonl'
    summary = classify_stream(_Slow(model, 0.3), streams['mp4'], clip, list(DEMO_CLASSES), stride=1 / 12,
                              output=str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert 'fell behind' in summary and 'windows were skipped' in summary, summary
    assert 5 <= len(records) <= 12  # 33 windows came due; about one per forward was answered
    assert max(r['latency'] for r in records) < 0.3 + 2 / 12 + 0.3  # a forward and a frame or two, never more
