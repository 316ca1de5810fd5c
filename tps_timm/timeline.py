"""Action timelines of whole videos: class probabilities per window, and the windows merged into segments.

``python -m tps_timm.predict VIDEO --timeline`` runs this: every video is decoded once, front to back; its windows
(:func:`tps_timm.data.sampling.sliding_windows`) go through the model in batches with those of other videos; then
each window's top classes are listed and runs of windows with the same top class become segments.
"""
import csv
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .clip import ClipConfig
from .data import ShardSource, VideoList, VideoWindows, WindowItems, collate_eval_items, is_sharded, normalize_clip
from .evaluate import model_device
from .data.shards import ShardedEvalClips

__all__ = ['VideoTimeline', 'timeline_outputs', 'window_edges', 'timeline_segments', 'timeline_record',
           'write_timelines', 'report_timelines']

_logger = logging.getLogger(__name__)
THUMBNAIL_SIZE = 96  # the key frames kept for a plot, at most this many pixels a side


@dataclass
class VideoTimeline:
    """One video's windows: ``starts`` / ``ends`` (seconds) and ``probs`` (windows x classes); ``thumbnails`` the
    middle frame of each window (uint8 ``(H, W, 3)``) when asked for; ``error`` why it could not be read (whole)."""
    name: str
    index: int
    fps: float = 0.0
    window: float = 0.0
    stride: float = 0.0
    padded: bool = False
    starts: List[float] = field(default_factory=list)
    ends: List[float] = field(default_factory=list)
    probs: List[torch.Tensor] = field(default_factory=list)
    thumbnails: List[np.ndarray] = field(default_factory=list)
    error: str = ''

    @property
    def duration(self) -> float:
        return max(self.ends, default=0.0)

    @property
    def note(self) -> str:
        """What a reader should know about this timeline ('' when nothing)."""
        if self.padded:
            return (f'{self.duration:.2f} s long, shorter than a {self.window:.2f} s window: one window, its frames '
                    f'repeated to fill the clip')
        return ''


@torch.no_grad()
def timeline_outputs(model: torch.nn.Module, videos: Union[Sequence[str], ShardSource], clip: ClipConfig,
                     window: Optional[float] = None, stride: Optional[float] = None, batch_size: int = 8,
                     workers: int = 0, progress: bool = False, rank: int = 0, world_size: int = 1,
                     thumbnails: bool = False) -> List[VideoTimeline]:
    """The timeline of every video (paths, or shards of which rank ``rank`` of ``world_size`` reads its share), in
    order: windows of ``window`` seconds (default: :func:`~tps_timm.data.window_seconds`) every ``stride`` (default:
    half a window), batched ``batch_size`` windows at a time across videos. ``model`` may be an exported one."""
    from tqdm import tqdm
    items = WindowItems(clip, window, stride)
    sharded = is_sharded(videos)
    if not sharded and not videos:
        return []
    dataset = ShardedEvalClips(videos, items, rank, world_size) if sharded else \
        VideoWindows(VideoList([(path, 0) for path in videos]), items)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_eval_items)
    model.eval()
    device = model_device(model)
    timelines: Dict[int, VideoTimeline] = {}
    batches = iter(tqdm(loader, desc='timeline', unit='batch', disable=not progress, leave=False))
    for batch in batches:
        if 'video' not in batch:
            continue
        video = batch['video']  # (windows, 1, C, T, H, W) uint8
        readable = batch['readable'].bool()
        probs = torch.zeros(len(video), 0)
        if readable.any():
            clips = normalize_clip(video[readable].flatten(0, 1).to(device), clip.mean, clip.std)
            probs = model(clips).float().softmax(-1).cpu()
        kept = iter(range(len(probs)))
        for i, (name, index) in enumerate(zip(batch['name'], batch['index'].tolist())):
            timeline = timelines.setdefault(index, VideoTimeline(name, index))
            if not readable[i]:
                timeline.error = batch['error'][i]
                continue
            timeline.fps, timeline.window = float(batch['fps'][i]), float(batch['seconds'][i])
            timeline.stride = float(batch['stride'][i])
            timeline.padded = bool(batch['padded'][i])
            timeline.starts.append(float(batch['start'][i]))
            timeline.ends.append(float(batch['end'][i]))
            timeline.probs.append(probs[next(kept)])
            if thumbnails:
                timeline.thumbnails.append(_thumbnail(video[i, 0]))
    for timeline in timelines.values():  # windows in time order (workers may interleave nothing, but be sure)
        order = np.argsort(timeline.starts, kind='stable')
        for attr in ('starts', 'ends', 'probs', 'thumbnails'):
            values = getattr(timeline, attr)
            if values:
                setattr(timeline, attr, [values[i] for i in order])
        if timeline.note:
            _logger.warning(f'{timeline.name}: {timeline.note}')
    return [timelines[index] for index in sorted(timelines)]


def _thumbnail(clip: torch.Tensor) -> np.ndarray:
    """The middle frame of a uint8 clip ``(C, T, H, W)`` as ``(h, w, 3)``, at most ``THUMBNAIL_SIZE`` a side."""
    frame = clip[:, clip.shape[1] // 2].float()[None]
    scale = min(1.0, THUMBNAIL_SIZE / max(frame.shape[-2:]))
    if scale < 1:
        frame = torch.nn.functional.interpolate(frame, scale_factor=scale, mode='bilinear', antialias=True)
    return frame[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def window_edges(starts: Sequence[float], ends: Sequence[float]) -> np.ndarray:
    """The time each window stands for: from the midpoint between its centre and the previous one's (0 for the
    first) to the midpoint with the next one's (the video's end for the last); ``len(starts) + 1`` edges."""
    centres = (np.asarray(starts, dtype=np.float64) + np.asarray(ends, dtype=np.float64)) / 2
    return np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [max(ends)]])


def timeline_segments(starts: Sequence[float], ends: Sequence[float], probs: torch.Tensor, min_prob: float = 0.0,
                      min_segment: float = 0.0) -> List[Dict[str, Any]]:
    """Runs of windows with the same top class as segments ``{start, end, class_index, probability}``.

    Each window stands for the time closer to its centre than to its neighbours' (the first from 0, the last to
    the video's end), so segments tile the video without overlapping. A window whose top probability is below
    ``min_prob`` is background, in no segment. Runs shorter than ``min_segment`` seconds (background ones too) are
    given to their neighbours, and neighbours of one class then join. ``probability`` is the mean probability of
    the segment's class over its windows.
    """
    if not len(starts):
        return []
    edges = window_edges(starts, ends)
    top_prob, top_class = probs.max(1)
    labels = [int(c) if p >= min_prob else None for p, c in zip(top_prob.tolist(), top_class.tolist())]
    runs: List[Dict[str, Any]] = []
    for i, label in enumerate(labels):
        if runs and runs[-1]['label'] == label:
            runs[-1]['windows'].append(i)
            runs[-1]['end'] = edges[i + 1]
        else:
            runs.append(dict(label=label, windows=[i], start=edges[i], end=edges[i + 1]))
    while len(runs) > 1:  # the shortest run under min_segment goes to its neighbours, until none is left
        shortest = min(range(len(runs)), key=lambda r: runs[r]['end'] - runs[r]['start'])
        run = runs[shortest]
        if run['end'] - run['start'] >= min_segment:
            break
        before = runs[shortest - 1] if shortest > 0 else None
        after = runs[shortest + 1] if shortest + 1 < len(runs) else None
        middle = (run['start'] + run['end']) / 2
        if before is not None:
            before['end'] = middle if after is not None else run['end']
        if after is not None:
            after['start'] = middle if before is not None else run['start']
        del runs[shortest]
        if before is not None and after is not None and before['label'] == after['label']:
            before['windows'] += after['windows']
            before['end'] = after['end']
            runs.remove(after)
    return [dict(start=float(run['start']), end=float(run['end']), class_index=run['label'],
                 probability=float(probs[run['windows'], run['label']].mean()))
            for run in runs if run['label'] is not None]


def timeline_record(timeline: VideoTimeline, class_names: Sequence[str], top_k: int = 5, min_prob: float = 0.0,
                    min_segment: float = 0.0) -> Dict[str, Any]:
    """A timeline as written out: the video, its windows with their top-k classes, its segments, and any note."""
    record: Dict[str, Any] = dict(video=timeline.name)
    if timeline.error and not timeline.probs:
        return dict(record, error=timeline.error)
    probs = torch.stack(timeline.probs)
    windows = []
    for start, end, p in zip(timeline.starts, timeline.ends, probs):
        top = p.topk(min(top_k, p.numel()))
        windows.append(dict(start=round(start, 3), end=round(end, 3), top=[
            dict(label=class_names[i], probability=round(v, 6)) for v, i in zip(top.values.tolist(),
                                                                                 top.indices.tolist())]))
    segments = [dict(start=round(s['start'], 3), end=round(s['end'], 3), label=class_names[s['class_index']],
                     probability=round(s['probability'], 6))
                for s in timeline_segments(timeline.starts, timeline.ends, probs, min_prob, min_segment)]
    record.update(fps=timeline.fps, duration=round(timeline.duration, 3), window=round(timeline.window, 3),
                  stride=round(timeline.stride, 3), windows=windows, segments=segments)
    if timeline.note:
        record['note'] = timeline.note
    if timeline.error:  # it stopped decoding midway: the windows before stand
        record['error'] = timeline.error
    return record


def write_timelines(path: str, records: List[Dict[str, Any]]) -> None:
    """Timelines as JSON (a list of :func:`timeline_record`) or CSV (a row per window rank and per segment:
    ``video, kind, start, end, rank, label, probability, note``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith('.json'):
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(records, f, indent=2)
        return
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['video', 'kind', 'start', 'end', 'rank', 'label', 'probability', 'note'])
        for record in records:
            if 'windows' not in record:
                writer.writerow([record['video'], 'error', '', '', '', '', '', record['error']])
                continue
            for window in record['windows']:
                for rank, top in enumerate(window['top'], 1):
                    writer.writerow([record['video'], 'window', window['start'], window['end'], rank, top['label'],
                                     top['probability'], ''])
            for segment in record['segments']:
                writer.writerow([record['video'], 'segment', segment['start'], segment['end'], '', segment['label'],
                                 segment['probability'], ''])
            for kind in ('note', 'error'):
                if record.get(kind):
                    writer.writerow([record['video'], kind, '', '', '', '', '', record[kind]])


def report_timelines(rows: List[Tuple[Dict[str, Any], Optional[np.ndarray], List[np.ndarray]]],
                     class_names: Sequence[str], seconds: float, output: Optional[str] = None,
                     plot: Optional[str] = None) -> List[str]:
    """Print every video's timeline (``(record, window probabilities, key frames)`` rows), or write them to
    ``output``; draw them to ``plot`` (a PNG for one video, else a folder of ``<video name>.png``); returns the
    unreadable videos."""
    records = [record for record, _, _ in rows]
    failed = [r['video'] for r in records if 'windows' not in r]
    if plot:
        from .plot import plot_timeline
        folder = None if len(records) == 1 and plot.lower().endswith('.png') else plot
        if folder:
            os.makedirs(folder, exist_ok=True)
        taken: Dict[str, int] = {}
        for record, probs, thumbnails in rows:
            if probs is not None:
                stem = _stem(record['video'])
                taken[stem] = taken.get(stem, 0) + 1
                stem = stem if taken[stem] == 1 else f'{stem}-{taken[stem] - 1}'  # videos of one name in two folders
                path = os.path.join(folder, f'{stem}.png') if folder else plot
                plot_timeline(path, record, probs, class_names, thumbnails)
        print(f'drew {len(records) - len(failed)} timeline{"s" if len(records) - len(failed) != 1 else ""} to '
              f'{folder or plot}', file=sys.stderr)
    windows = sum(len(r.get('windows', [])) for r in records)
    if output:
        write_timelines(output, records)
        print(f'wrote the timelines of {len(records)} videos ({windows} windows, {len(failed)} unreadable) to '
              f'{output} in {seconds:.1f} s ({windows / max(seconds, 1e-9):.1f} windows/s)')
        return failed
    for record in records:
        print(record['video'])
        if 'windows' not in record:
            print(f'  unreadable: {record["error"]}')
            continue
        print(f'  {record["duration"]:.2f} s, {len(record["windows"])} windows of {record["window"]:.2f} s every '
              f'{record["stride"]:.2f} s' + (f'; {record["note"]}' if record.get('note') else ''))
        for segment in record['segments']:
            print(f'  {segment["start"]:8.2f} - {segment["end"]:8.2f} s  {segment["probability"]:7.2%}  '
                  f'{segment["label"]}')
        if record.get('error'):
            print(f'  stopped: {record["error"]}')
    return failed


def _stem(name: str) -> str:
    """A file name for a video's plot: its base name without the extension (a shard sample's key)."""
    base = os.path.basename(name.rstrip('/')).split(':')[-1]
    return os.path.splitext(base)[0] or 'video'

