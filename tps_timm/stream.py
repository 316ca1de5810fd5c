"""Live classification: ``python -m tps_timm.predict --stream SOURCE`` (a camera, an RTSP/HTTP URL, a pipe, a file).

A reader thread decodes the source with PyAV into a rolling buffer of one window; every stride, the newest window is
sampled as a test clip and classified. When the model takes longer than a stride, the windows that came due
meanwhile are skipped (counted and said), so the output never lags the source by more than one window and one
forward. A video file is played at its frame rate, as a stream would deliver it; other sources deliver their own
pace. The run ends cleanly when the source ends, stalls for ``timeout`` seconds, or on Ctrl-C, with what was seen.
"""
import collections
import json
import logging
import os
import sys
import threading
import time
from typing import IO, Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from .clip import ClipConfig
from .data import ClipEvalTransform, ClipSampler, WindowLayout, frame_to_rgb, normalize_clip, window_seconds
from .evaluate import model_device

__all__ = ['StreamEnded', 'classify_stream', 'open_source']

_logger = logging.getLogger(__name__)


class StreamEnded(RuntimeError):
    """A source that could not be opened, or gave no frame at all."""


def open_source(source: str, stream_format: Optional[str] = None, timeout: float = 10.0):
    """Open a live source with PyAV: ``-`` is standard input; ``timeout`` bounds opening and each network read."""
    import av
    target = 'pipe:0' if source == '-' else source
    try:
        return av.open(target, format=stream_format, timeout=(timeout, timeout))
    except Exception as e:
        raise StreamEnded(f'--stream {source}: cannot open it: {type(e).__name__}: {e}') from None


class _Reader(threading.Thread):
    """Decodes the source into a rolling buffer of the newest ``window_frames`` frames (the older ones are dropped),
    counting the frames and when the last one came."""

    def __init__(self, container, window_frames: int, pace: bool):
        super().__init__(daemon=True)  # a stalled read cannot keep the process alive
        self.container = container
        self.stream = container.streams.video[0]
        self.buffer: collections.deque = collections.deque(maxlen=window_frames)
        self.count = 0
        self.last_arrival = time.monotonic()
        self.finished = False
        self.error = ''
        self.pace = pace
        self.stop = threading.Event()
        self.changed = threading.Condition()

    def run(self) -> None:
        start = time.monotonic()
        rate = float(self.stream.average_rate or self.stream.guessed_rate or 0)
        first = None
        try:
            for frame in self.container.decode(self.stream):
                if self.stop.is_set():
                    break
                if self.pace:  # a file: deliver each frame when a stream would, from its first frame on
                    at = frame.time if frame.time is not None else self.count / rate
                    first = at if first is None else first
                    delay = start + at - first - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        break
                with self.changed:
                    self.buffer.append(frame)
                    self.count += 1
                    self.last_arrival = time.monotonic()
                    self.changed.notify_all()
        except Exception as e:  # a broken or closed stream: what came before stands
            self.error = f'{type(e).__name__}: {e}'
        finally:
            with self.changed:
                self.finished = True
                self.changed.notify_all()


def classify_stream(model: torch.nn.Module, source: str, clip: ClipConfig, class_names: Sequence[str],
                    window: Optional[float] = None, stride: Optional[float] = None,
                    stream_format: Optional[str] = None, timeout: float = 10.0, output: Optional[str] = None,
                    top_k: int = 1, pace: Optional[bool] = None, out: Optional[IO] = None) -> str:
    """Classify ``source`` as it plays; print (or write to ``output`` as JSON lines) each window's top classes, and
    return a summary: windows, frames, whether the model kept up (else by how much it fell behind and how many
    windows it skipped), and why the stream ended.

    Args:
        window: Window seconds (default :func:`~tps_timm.data.window_seconds` at the source's frame rate).
        stride: Seconds between windows (default half a window).
        timeout: Seconds without a frame after which the stream counts as stalled.
        pace: Deliver frames at the source's frame rate (default: for a regular file only).
        out: Where the windows are printed without ``output`` (default: standard output).
    """
    out = out or sys.stdout
    container = open_source(source, stream_format, timeout)
    if not container.streams.video:
        container.close()
        raise StreamEnded(f'--stream {source}: no video stream in it')
    video = container.streams.video[0]
    video.codec_context.thread_count = 1
    fps = float(video.average_rate or video.guessed_rate or 0)
    if not fps:
        container.close()
        raise StreamEnded(f'--stream {source}: no frame rate in the stream')
    seconds = window_seconds(clip, fps, window)
    layout = WindowLayout.from_seconds(seconds, stride or seconds / 2, fps)
    sampler = ClipSampler.for_clip(clip, 1)
    transform = ClipEvalTransform(clip.img_size, None, 1)
    reader = _Reader(container, layout.window_frames, os.path.isfile(source) if pace is None else pace)
    sink = None
    windows, skipped, compute, lags = 0, 0, [], []
    due = layout.window_frames  # the frame count at which the next window is complete
    ended = 'the stream ended'
    started = time.monotonic()
    try:
        sink = open(output, 'w', encoding='utf-8') if output else None
        model.eval()
        device = model_device(model)
        with torch.no_grad():  # the first forward's one-time costs, before the stream's clock starts
            model(torch.zeros(1, 3, clip.num_frames, clip.img_size, clip.img_size, device=device))
        started = reader.last_arrival = time.monotonic()  # the stall clock starts now, not at the warm-up
        reader.start()
        while True:
            with reader.changed:
                while reader.count < due and not reader.finished and \
                        time.monotonic() - reader.last_arrival < timeout:
                    reader.changed.wait(0.05)
                count, frames, finished = reader.count, list(reader.buffer), reader.finished
                arrival = reader.last_arrival
            if count < due:  # ended or stalled before the next window filled
                if not finished:
                    ended = f'no frame for {timeout:g} s: the stream stalled'
                elif reader.error:
                    ended = f'the stream broke off ({reader.error})'
                if windows == 0 and frames:  # a stream shorter than a window: what there is, repeated
                    _logger.warning(f'--stream {source}: {count} frames, fewer than a {seconds:.2f} s window '
                                    f'({layout.window_frames} frames): one window, its frames repeated')
                    windows += _classify(model, device, frames, layout, sampler, transform, clip, class_names,
                                         count, fps, top_k, sink, out, compute, lags, arrival)
                break
            windows_due = 1 + (count - due) // layout.stride_frames  # the newest complete window only
            skipped += windows_due - 1
            windows += _classify(model, device, frames, layout, sampler, transform, clip, class_names, count, fps,
                                 top_k, sink, out, compute, lags, arrival)
            due += windows_due * layout.stride_frames
    except KeyboardInterrupt:
        ended = 'stopped (Ctrl-C)'
    finally:
        reader.stop.set()
        if sink:
            sink.close()
        if reader.is_alive():
            reader.join(2.0)  # one blocked on a stalled source stays (a daemon); one that stopped lets go its input
        if not reader.is_alive():
            container.close()
    if windows == 0:
        raise StreamEnded(f'--stream {source}: {ended} before a single frame came')
    return _summary(source, windows, skipped, reader.count, fps, time.monotonic() - started, layout, compute, lags,
                    ended)


def _classify(model, device, frames: List, layout: WindowLayout, sampler: ClipSampler, transform, clip: ClipConfig,
              class_names: Sequence[str], count: int, fps: float, top_k: int, sink, out, compute: List[float],
              lags: List[float], arrival: float) -> int:
    """Classify the newest window (the last frames of ``frames``), print or write its top classes; returns 1."""
    start = time.monotonic()
    offsets = layout.clip_indices(sampler, min(len(frames), layout.window_frames))
    window = frames[-min(len(frames), layout.window_frames):]
    rgb = torch.from_numpy(np.stack([frame_to_rgb(window[i]) for i in offsets.tolist()])).permute(0, 3, 1, 2)
    view = transform(rgb).permute(0, 2, 1, 3, 4)  # (1, C, T, H, W)
    with torch.no_grad():
        probs = model(normalize_clip(view.to(device), clip.mean, clip.std)).float().softmax(-1)[0].cpu()
    top = probs.topk(min(top_k, probs.numel()))
    done = time.monotonic()
    compute.append(done - start)
    lags.append(done - arrival)  # from the window's last frame to its answer
    end_s = count / fps
    record: Dict[str, Any] = dict(start=round(max(0.0, end_s - len(window) / fps), 3), end=round(end_s, 3),
                                  top=[dict(label=class_names[i], probability=round(p, 6))
                                       for p, i in zip(top.values.tolist(), top.indices.tolist())],
                                  latency=round(lags[-1], 3))
    if sink:
        sink.write(json.dumps(record) + '\n')
        sink.flush()
    else:
        best = record['top'][0]
        print(f'{end_s:8.2f} s  {best["probability"]:7.2%}  {best["label"]}', file=out, flush=True)
    return 1


def _summary(source: str, windows: int, skipped: int, frames: int, fps: float, wall: float, layout: WindowLayout,
             compute: List[float], lags: List[float], ended: str) -> str:
    stride = layout.stride_frames / fps
    per_window = float(np.median(compute))
    if not skipped:
        pace = f'kept up: {per_window * 1e3:.0f} ms per window against a {stride:.2f} s stride'
    elif per_window > stride:
        pace = f'fell behind: {per_window * 1e3:.0f} ms per window against a {stride:.2f} s stride ' \
               f'({per_window / stride:.1f}x), so {skipped} of {windows + skipped} windows were skipped'
    elif frames / fps > 1.2 * wall:
        pace = f'the source came faster than real time ({frames / fps:.1f} s of video in {wall:.1f} s), so the ' \
               f'newest window was taken each time: {skipped} of {windows + skipped} windows were skipped ' \
               f'({per_window * 1e3:.0f} ms per window)'
    else:
        pace = f'fell behind at times: {per_window * 1e3:.0f} ms per window (the slowest ' \
               f'{max(compute) * 1e3:.0f} ms) against a {stride:.2f} s stride, so {skipped} of ' \
               f'{windows + skipped} windows were skipped'
    return (f'--stream {source}: {windows} windows from {frames} frames ({frames / fps:.1f} s at {fps:g} fps) in '
            f'{wall:.1f} s; {pace}; answers came {float(np.median(lags)):.2f} s after their last frame (median, '
            f'max {max(lags):.2f} s); {ended}')
