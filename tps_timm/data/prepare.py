"""Re-encode a video dataset once: ``python -m tps_timm.data.prepare --data-root SRC --list LIST --output DST``.

Every video of the split is decoded with PyAV and written as an h264 mp4 (libx264, yuv420p) with its short side
scaled down to ``--short-side`` and a keyframe every ``--gop`` frames, at the source's frame rate and without audio,
as mmaction users do with their resized Kinetics: decoding a small, short-GOP file is far cheaper than decoding the
original in every epoch. Outputs keep their path relative to SRC (``.mp4`` for every container), and a list of them
in the ``list`` format is written to ``DST/<list stem>.txt``. A run can be interrupted and started again: finished
files are skipped and unfinished ones never sit under their final name; the settings are kept in
``DST/prepare.json``, and a run with other settings into the same folder is refused.

``--shard-index i --num-shards n`` prepares every n-th video from the i-th (n machines, e.g. a SLURM job array, each
take a disjoint part into the same DST) and records what it did in ``DST/<list stem>.shard-i-of-n.json``; once every
part is done, ``--merge --num-shards n`` writes the one list (in the order of LIST) from those records.
"""
import glob
import json
import logging
import math
import multiprocessing
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..cli import ArgumentParser, non_negative_int, positive_int
from .annotations import DATASET_FORMATS, VideoList, load_video_list
from .loader import available_cpus
from .shards import write_info, write_json_atomic
from .video_io import VideoReadError, decoded_frames, short_side_size

__all__ = ['encode_video', 'output_paths', 'prepare_dataset', 'merge_shards', 'shard_record_path', 'prepare_tar_shards',
           'merge_tar_shards', 'tar_shard_names', 'main']

_logger = logging.getLogger(__name__)

X264_PRESETS = ('ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow')
X264_TUNES = ('fastdecode', 'film', 'animation', 'grain', 'stillimage', 'zerolatency', 'none')
_SHOWN_UNREADABLE = 10


def _even(size: int) -> int:
    """yuv420p needs even sizes; rounding down keeps "never upscale" true for odd sources."""
    return max(2, size // 2 * 2)


def _output_size(height: int, width: int, short_side: int) -> Tuple[int, int]:
    if min(height, width) > short_side:  # never upscale
        height, width = short_side_size(height, width, short_side)
    return _even(height), _even(width)


def encode_video(src: str, dst: str, short_side: int = 256, gop: int = 16, crf: int = 23,
                 preset: str = 'veryfast', tune: Optional[str] = 'fastdecode') -> int:
    """Re-encode the video stream of ``src`` as an h264 mp4 at ``dst``, written atomically.

    Frames are kept one for one at the source's average frame rate, the short side scaled down to ``short_side``
    (never up), with a keyframe at least every ``gop`` frames. ``tune='fastdecode'`` (libx264: no CABAC, no
    deblocking filter) makes files a little larger that decode markedly faster in every epoch.

    Returns:
        The number of frames written.

    Raises:
        VideoReadError: ``src`` is missing, empty, not a video or undecodable (``dst`` is then left untouched).
    """
    folder, name = os.path.split(dst)
    stem = os.path.splitext(name)[0]
    os.makedirs(folder or '.', exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(stem) + '.tmp-*.mp4')):
        os.remove(stale)  # left by an interrupted run
    tmp = os.path.join(folder, f'{stem}.tmp-{os.getpid()}.mp4')
    try:
        with decoded_frames(src) as (rate, _, frames):  # one process per CPU already: one decoder thread
            count = _encode_frames(frames, tmp, rate, short_side, gop, crf, preset, tune)
        if not count:
            raise VideoReadError(src, 'no frames decoded')
        os.replace(tmp, dst)
        return count
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _encode_frames(frames: Iterator, path: str, rate: Fraction, short_side: int, gop: int, crf: int,
                   preset: str, tune: Optional[str]) -> int:
    """Write ``frames`` to ``path``; the output stream is opened at the first frame, which gives the size."""
    import av
    count = 0
    with av.open(path, 'w', format='mp4') as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream('libx264', rate=rate)
                stream.height, stream.width = _output_size(frame.height, frame.width, short_side)
                stream.pix_fmt = 'yuv420p'
                stream.codec_context.time_base = 1 / rate
                stream.codec_context.thread_count = 1
                stream.codec_context.gop_size = gop  # libx264's keyint; scene cuts may add keyframes in between
                stream.options = {'crf': str(crf), 'preset': preset, **({'tune': tune} if tune else {})}
            # bicubic, ffmpeg's default scaler (what mmaction's ffmpeg resize gives); swscale widens it to downscale
            out = frame.reformat(stream.width, stream.height, 'yuv420p', interpolation='BICUBIC')
            out.pts, out.time_base = count, 1 / rate  # a constant rate: frame i at i / rate
            container.mux(stream.encode(out))
            count += 1
        if stream is not None:
            container.mux(stream.encode())
    return count


SETTINGS_FILE = 'prepare.json'


def _encoding_settings(short_side: int, gop: int, crf: int, preset: str, tune: Optional[str],
                       shard_size: Optional[int] = None, copy: bool = False) -> Dict:
    """What ``prepare.json`` records (tar shards: their size and ``copy`` too), which a resumed run must repeat."""
    settings = dict(short_side=short_side, gop=gop, crf=crf, preset=preset, tune=tune)
    return settings if shard_size is None else dict(format='wds', shard_size=shard_size, copy=copy, **settings)


def _record_settings(output: str, settings: Dict, name: str = SETTINGS_FILE) -> None:
    """Write the encoding settings to ``output/prepare.json`` (tar shards: ``output/.prepare/SPLIT.json``, so that
    the splits in one folder may differ), or check them against a previous run's: a resumed run must not mix files
    of two encodings under one list."""
    path = os.path.join(output, name)
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            before = json.load(f)
        if before != settings:
            changed = ', '.join(f'{k} {before.get(k)} -> {v}' for k, v in settings.items() if before.get(k) != v)
            raise ValueError(f'{output} holds videos encoded with other settings ({changed}); resume with the same '
                             f'settings, or write to another --output')
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_atomic(path, settings)  # the parts of a sharded run may all start at once


def output_paths(videos: VideoList, data_root: str, output: str) -> Dict[str, str]:
    """Source -> output path (same path relative to the root, ``.mp4`` extension), each source once.

    Raises:
        ValueError: A sample is outside ``data_root``, or two samples would be written to the same output.
    """
    targets: Dict[str, str] = {}
    owners: Dict[str, str] = {}
    for src, _ in videos.samples:
        rel = os.path.relpath(src, data_root)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
            raise ValueError(f'{src} is not under the data root {data_root}')
        dst = os.path.join(output, os.path.splitext(rel)[0] + '.mp4')
        if owners.setdefault(dst, src) != src:
            raise ValueError(f'{owners[dst]} and {src} would both be written to {dst}; rename one of them')
        targets[src] = dst
    return targets


def _work(job: Tuple[str, str, int, int, int, str, Optional[str]]) -> Tuple[str, str, str]:
    """One video in a worker: ``(status, source, reason)``; logging is left to the parent, which sees the order."""
    src, dst, short_side, gop, crf, preset, tune = job
    try:
        encode_video(src, dst, short_side, gop, crf, preset, tune)
    except VideoReadError as e:
        return 'unreadable', src, e.reason
    return 'written', src, ''


def prepare_dataset(
        videos: VideoList,
        data_root: str,
        output: str,
        short_side: int = 256,
        gop: int = 16,
        workers: Optional[int] = None,
        progress: bool = True,
        crf: int = 23,
        preset: str = 'veryfast',
        list_name: str = 'list.txt',
        tune: Optional[str] = 'fastdecode',
        shard_index: int = 0,
        num_shards: int = 1,
) -> Dict:
    """Re-encode the videos of ``videos`` (paths under ``data_root``) to the same relative paths under ``output``.

    Args:
        videos: The split, e.g. from :func:`load_video_list` with the same ``data_root``.
        data_root: The dataset folder the sample paths are under.
        output: Destination folder (created).
        short_side: Short side of the outputs; smaller sources keep their size.
        gop: Largest distance between keyframes, in frames.
        workers: Encoding processes (default: the CPU count).
        progress: Show a progress bar.
        crf: libx264 quality (0-51, lower is better and bigger).
        preset: libx264 speed preset.
        tune: libx264 tuning (None: none); ``fastdecode`` by default, for files decoded many times.
        list_name: File name of the list of the outputs written under ``output``.
        shard_index: With ``num_shards`` > 1, this run's part: the videos at positions ``shard_index``,
            ``shard_index + num_shards``, ... of the split. It writes no list but the record of its part
            (``shard_record_path``), which :func:`merge_shards` reads once every part is done.
        num_shards: The number of parts the split is prepared in.

    Returns:
        ``written``, ``done_before`` and ``skipped`` (frame folders) source paths, ``unreadable`` ``(path, reason)``
        pairs, and ``list`` / ``class_names``: the written list (None when no video is ready: nothing is written,
        and with ``num_shards`` > 1) and class-name file (None without class names); with ``num_shards`` > 1,
        ``shard_record`` names the part's record.

    Raises:
        ValueError: See :func:`output_paths`.
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f'shard_index must be in 0..{num_shards - 1}, got {shard_index}')
    targets = output_paths(videos, data_root, output)  # all of them: clashes across parts are found by every part
    part = {src: dst for i, (src, dst) in enumerate(targets.items()) if i % num_shards == shard_index}
    _record_settings(output, _encoding_settings(short_side, gop, crf, preset, tune))
    result: Dict = dict(written=[], done_before=[], skipped=[], unreadable=[])
    jobs = []
    for src, dst in part.items():
        if os.path.isdir(src):
            result['skipped'].append(src)
            _logger.debug('%s: frame folder: nothing to re-encode', src)
        elif os.path.exists(dst):
            result['done_before'].append(src)
        else:
            jobs.append((src, dst, short_side, gop, crf, preset, tune))
    workers = min(workers or available_cpus(), max(1, len(jobs)))
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm
    pool = multiprocessing.Pool(workers) if workers > 1 else None  # started before tqdm's monitor thread
    try:
        done = pool.imap_unordered(_work, jobs) if pool else map(_work, jobs)
        with logging_redirect_tqdm():  # warnings above the bar, not through it
            for status, src, reason in tqdm(done, total=len(jobs), desc='re-encoding', unit='video',
                                            disable=not progress):
                if status == 'unreadable':
                    _logger.warning('unreadable: %s: %s', src, reason)
                    result['unreadable'].append((src, reason))
                else:
                    result['written'].append(src)
    finally:
        if pool:
            pool.terminate()
    order = {src: i for i, src in enumerate(targets)}  # the list's order, not the workers' finishing order
    result['written'].sort(key=order.get)
    result['unreadable'].sort(key=lambda item: order[item[0]])
    if num_shards > 1:
        result.update(list=None, class_names=None,
                      shard_record=_write_shard_record(output, list_name, shard_index, num_shards, result))
        return result
    return _write_list(videos, targets, output, list_name, result)


def shard_record_path(output: str, list_name: str, shard_index: int, num_shards: int) -> str:
    """Where part ``shard_index`` of ``num_shards`` records the sources it made ready, skipped or found unreadable."""
    return os.path.join(output, f'{Path(list_name).stem}.shard-{shard_index:05d}-of-{num_shards:05d}.json')


def _write_shard_record(output: str, list_name: str, shard_index: int, num_shards: int, result: Dict) -> str:
    path = shard_record_path(output, list_name, shard_index, num_shards)
    record = dict(ready=result['written'] + result['done_before'], skipped=result['skipped'],
                  unreadable=result['unreadable'])
    write_json_atomic(path, record)  # a record is there whole or not at all: merge reads only finished parts
    return path


def merge_shards(videos: VideoList, data_root: str, output: str, num_shards: int,
                 list_name: str = 'list.txt') -> Dict:
    """The list of a split prepared in ``num_shards`` parts (``prepare_dataset(..., shard_index=i,
    num_shards=n)``), in the split's order, from the parts' records; returns what :func:`prepare_dataset` returns,
    the parts' ready videos as ``done_before``.

    Raises:
        ValueError: A part has not finished (its record is missing), or the records do not match the split.
    """
    targets = output_paths(videos, data_root, output)
    paths = [shard_record_path(output, list_name, i, num_shards) for i in range(num_shards)]
    missing = [i for i, path in enumerate(paths) if not os.path.isfile(path)]
    if missing:
        shown = ', '.join(map(str, missing[:10])) + (f' and {len(missing) - 10} more' if len(missing) > 10 else '')
        raise ValueError(f'{len(missing)} of the {num_shards} parts have not finished (no '
                         f'{Path(paths[missing[0]]).name}{" ..." if len(missing) > 1 else ""}): run --shard-index '
                         f'{shown} --num-shards {num_shards} first')
    result: Dict = dict(written=[], done_before=[], skipped=[], unreadable=[])
    for path in paths:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
        result['done_before'] += record['ready']
        result['skipped'] += record['skipped']
        result['unreadable'] += [tuple(item) for item in record['unreadable']]
    unknown = [src for src in result['done_before'] if src not in targets]
    if unknown:
        raise ValueError(f'the part records name {len(unknown)} videos that are not in this split (e.g. '
                         f'{unknown[0]}): merge with the --list and --data-root the parts were prepared from')
    order = {src: i for i, src in enumerate(targets)}
    for key in ('done_before', 'skipped', 'unreadable'):
        result[key].sort(key=lambda item: order[item[0] if isinstance(item, tuple) else item])
    return _write_list(videos, targets, output, list_name, result)


def _write_list(videos: VideoList, targets: Dict[str, str], output: str, list_name: str, result: Dict) -> Dict:
    """The list of the ready outputs (in the split's order) and the class names, into ``result``."""
    ready = set(result['written'] + result['done_before'])
    result['list'] = os.path.join(output, list_name) if ready else None  # no list of nothing to train with
    result['class_names'] = None
    if not ready:
        return result
    os.makedirs(output, exist_ok=True)
    with open(result['list'], 'w', encoding='utf-8') as f:
        f.writelines(f'{os.path.relpath(targets[src], output)} {label}\n' for src, label in videos.samples
                     if src in ready)
    if videos.class_names:
        result['class_names'] = os.path.join(output, os.path.splitext(list_name)[0] + '_classes.txt')
        Path(result['class_names']).write_text(''.join(f'{name}\n' for name in videos.class_names), encoding='utf-8')
    return result


def _tar_key(rel: str) -> str:
    """The sample key of a video at ``rel`` (relative to the root): its path without the extension, ``/``-separated;
    WebDataset cuts a member name at the first dot of its file name, so the stem's other dots become ``_``."""
    folder, name = os.path.split(os.path.splitext(rel)[0])
    return '/'.join([*(p for p in folder.split(os.sep) if p), name.replace('.', '_')])


def tar_shard_names(prefix: str, num_videos: int, shard_size: int) -> List[str]:
    """The file names of the tar shards a split of ``num_videos`` is written in: ``PREFIX-000000.tar``, ..."""
    return [f'{prefix}-{j:06d}.tar' for j in range(max(1, math.ceil(num_videos / shard_size)))]


def _split_settings_file(split: str) -> str:
    return os.path.join('.prepare', f'{split}.json')


def _tar_record_path(output: str, shard: str) -> str:
    """Where the record of a finished tar shard is kept (its samples and unreadable sources): the shard is done
    only when its record is there, written after it."""
    return os.path.join(output, '.prepare', shard + '.json')


def _video_bytes(job: Tuple) -> Tuple[str, str, str, bytes, str]:
    """One video for a tar shard, in a worker: ``(status, source, reason, bytes, suffix)``."""
    src, copy, tmp_dir, short_side, gop, crf, preset, tune = job
    if copy:
        if not os.path.isfile(src) or os.path.getsize(src) == 0:
            return 'unreadable', src, 'no such file' if not os.path.isfile(src) else 'empty file', b'', ''
        return 'written', src, '', Path(src).read_bytes(), os.path.splitext(src)[1][1:].lower()
    tmp = os.path.join(tmp_dir, f'{os.getpid()}-{abs(hash(src))}.mp4')
    try:
        encode_video(src, tmp, short_side, gop, crf, preset, tune)
        return 'written', src, '', Path(tmp).read_bytes(), 'mp4'
    except VideoReadError as e:
        return 'unreadable', src, e.reason, b'', ''
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def prepare_tar_shards(
        videos: VideoList,
        data_root: str,
        output: str,
        shard_size: int = 1000,
        split: str = 'train',
        copy: bool = False,
        short_side: int = 256,
        gop: int = 16,
        workers: Optional[int] = None,
        progress: bool = True,
        crf: int = 23,
        preset: str = 'veryfast',
        tune: Optional[str] = 'fastdecode',
        shard_index: int = 0,
        num_shards: int = 1,
) -> Dict:
    """Write the videos of ``videos`` into WebDataset tar shards ``output/SPLIT-000000.tar``, ... of ``shard_size``
    videos each (in the split's order), re-encoded as :func:`prepare_dataset` does or, with ``copy``, as they are,
    and ``output/_info.json`` (timm's layout, with the class names).

    Each sample is ``KEY.mp4`` (the source's extension with ``copy``) and ``KEY.cls`` (the label), KEY being the
    source's path relative to ``data_root`` without its extension (no more members: each costs a header to read).
    A shard is written under a temporary name and renamed whole, and a rerun skips the shards that are done. With
    ``num_shards`` > 1 this run writes the tar shards ``j`` with ``j % num_shards == shard_index`` and no
    ``_info.json``: :func:`merge_tar_shards` writes it once every part is done.

    Returns:
        What :func:`prepare_dataset` returns, with ``shards`` (the tar shards this run wrote), ``info`` (the
        ``_info.json`` written, or None) and ``pattern`` (the shards' brace pattern, with ``info``).
    """
    from webdataset import TarWriter
    if not 0 <= shard_index < num_shards:
        raise ValueError(f'shard_index must be in 0..{num_shards - 1}, got {shard_index}')
    if shard_size < 1:
        raise ValueError(f'shard_size must be at least 1, got {shard_size}')
    targets = output_paths(videos, data_root, output)  # checks the sources are under the root and do not clash
    keys = {src: _tar_key(os.path.relpath(dst, output)) for src, dst in targets.items()}
    _record_settings(output, _encoding_settings(short_side, gop, crf, preset, tune, shard_size, copy),
                     _split_settings_file(split))
    samples = [s for s in videos.samples if not os.path.isdir(s[0])]
    names = tar_shard_names(split, len(samples), shard_size)
    result: Dict = dict(written=[], done_before=[], skipped=[s for s, _ in videos.samples if os.path.isdir(s)],
                        unreadable=[], shards=[])
    mine = [j for j in range(len(names)) if j % num_shards == shard_index]
    todo = [j for j in mine if not os.path.isfile(_tar_record_path(output, names[j]))]
    for j in set(mine) - set(todo):
        record = _read_record(_tar_record_path(output, names[j]))
        result['done_before'] += record['written']
        result['unreadable'] += [tuple(item) for item in record['unreadable']]
    os.makedirs(os.path.join(output, '.prepare'), exist_ok=True)
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm
    workers = min(workers or available_cpus(), max(1, shard_size))
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        with logging_redirect_tqdm(), tqdm(total=sum(len(samples[j * shard_size:(j + 1) * shard_size])
                                                     for j in todo), desc='writing shards', unit='video',
                                           disable=not progress) as bar:
            for j in todo:
                chunk = samples[j * shard_size:(j + 1) * shard_size]
                jobs = [(src, copy, os.path.join(output, '.prepare'), short_side, gop, crf, preset, tune)
                        for src, _ in chunk]
                tar_path = os.path.join(output, names[j])
                for stale in glob.glob(glob.escape(tar_path) + '.tmp-*'):
                    os.remove(stale)  # left by an interrupted run
                tmp = f'{tar_path}.tmp-{os.getpid()}'
                record: Dict = dict(samples=0, written=[], unreadable=[])
                with open(tmp, 'wb') as f, TarWriter(f, encoder=False) as writer:
                    done = pool.imap(_video_bytes, jobs) if pool else map(_video_bytes, jobs)
                    for (src, label), (status, _, reason, data, suffix) in zip(chunk, done):
                        bar.update(1)
                        if status == 'unreadable':
                            _logger.warning('unreadable: %s: %s', src, reason)
                            record['unreadable'].append((src, reason))
                            continue
                        writer.write({'__key__': keys[src], suffix: data, 'cls': str(label).encode()})
                        record['written'].append(src)
                record['samples'] = len(record['written'])
                os.replace(tmp, tar_path)
                write_json_atomic(_tar_record_path(output, names[j]), record)
                result['written'] += record['written']
                result['unreadable'] += [tuple(item) for item in record['unreadable']]
                result['shards'].append(tar_path)
    finally:
        if pool:
            pool.terminate()
    if num_shards == 1:
        merged = merge_tar_shards(videos, output, shard_size, split)
        result.update(info=merged['info'], pattern=merged['pattern'])
    else:
        result['info'] = None
    result.update(list=None, class_names=None)
    return result


def _read_record(path: str) -> Dict:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def merge_tar_shards(videos: VideoList, output: str, shard_size: int, split: str = 'train',
                     num_shards: int = 1) -> Dict:
    """``output/_info.json`` for the tar shards of a split (written by :func:`prepare_tar_shards`, in one run or in
    ``num_shards`` parts), from the shards' records.

    Raises:
        ValueError: A tar shard is not finished (its part is named).
    """
    samples = [s for s in videos.samples if not os.path.isdir(s[0])]
    names = tar_shard_names(split, len(samples), shard_size)
    missing = [j for j, name in enumerate(names) if not os.path.isfile(_tar_record_path(output, name))]
    if missing:
        parts = sorted({j % num_shards for j in missing})
        raise ValueError(f'{len(missing)} of the {len(names)} tar shards are not finished (e.g. {names[missing[0]]}):'
                         f' run --shard-index {", ".join(map(str, parts[:10]))} --num-shards {num_shards} first')
    result: Dict = dict(written=[], done_before=[], skipped=[s for s, _ in videos.samples if os.path.isdir(s)],
                        unreadable=[], shards=[], list=None, class_names=None)
    lengths = {}
    for name in names:  # every shard, empty ones too (all their sources unreadable): the pattern names them all
        record = _read_record(_tar_record_path(output, name))
        result['done_before'] += record['written']
        result['unreadable'] += [tuple(item) for item in record['unreadable']]
        lengths[name] = record['samples']
    result['info'] = write_info(output, split, lengths, videos.class_names) if any(lengths.values()) else None
    result['shards'] = [os.path.join(output, name) for name in lengths]
    result['pattern'] = os.path.join(output, f'{split}-{{000000..{len(names) - 1:06d}}}.tar' if len(names) > 1
                                     else names[0])
    return result


def _summary(result: Dict, output: str) -> str:
    lines = [f"written: {len(result['written'])}, done before: {len(result['done_before'])}, "
             f"unreadable: {len(result['unreadable'])}, skipped: {len(result['skipped'])} (frame folders: nothing "
             f"to re-encode)"]
    if result['unreadable']:
        lines.append('unreadable sources (left out of the list):')
        lines += [f'  {path}: {reason}' for path, reason in result['unreadable'][:_SHOWN_UNREADABLE]]
        if len(result['unreadable']) > _SHOWN_UNREADABLE:
            lines.append(f"  ... and {len(result['unreadable']) - _SHOWN_UNREADABLE} more (see the warnings above)")
    if result['skipped']:
        lines.append(f"frame folders are not in the list: read them from the data root, e.g. {result['skipped'][0]}")
    if 'shards' in result:  # tar shards
        if result['info'] is None:
            lines.append('this part\'s tar shards are written; once every part is done, write _info.json with the '
                         'same command and --merge in place of --shard-index' if result.get('part') else
                         'no video could be read or re-encoded: no shards were written')
            return '\n'.join(lines)
        lines.append(f"tar shards: {result['pattern']}, described by {result['info']}")
        lines.append(f"train with: --dataset wds/{result['pattern']} (--val-dataset for the validation split)")
        return '\n'.join(lines)
    if result.get('shard_record'):
        lines.append(f"this part is recorded in {result['shard_record']}; once every part is done, write the list "
                     f"with the same command and --merge in place of --shard-index")
        return '\n'.join(lines)
    if result['list'] is None:
        lines.append('no video could be read or re-encoded: no list was written')
        return '\n'.join(lines)
    names = f" --class-names {result['class_names']}" if result['class_names'] else ''
    lines.append(f"list: {result['list']}")
    lines.append(f"train with: --data-root {output} --train-list {result['list']} --dataset-format list{names} "
                 f"(the same for --val-list with the list of the validation split)")
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = ArgumentParser(
        prog='python -m tps_timm.data.prepare', description=__doc__.split('\n\n')[1],
        epilog='Exit status: 0 when every readable source is done, 1 when some sources were unreadable (reported, '
               'left out of the list; the others are still written), 2 for bad arguments.')
    parser.add_argument('--data-root', required=True, metavar='SRC', help='the dataset folder (source videos)')
    parser.add_argument('--list', required=True, help='annotation file of the split to re-encode')
    parser.add_argument('--output', required=True, metavar='DST', help='destination folder')
    parser.add_argument('--dataset-format', default='list', choices=DATASET_FORMATS,
                        help='annotation format of --list')
    parser.add_argument('--class-names', default=None,
                        help='class names: names file (list/kinetics), labels.json (sthv2), labels CSV (sthv1), '
                             'vocab JSON (diving48)')
    parser.add_argument('--short-side', type=int, default=256, help='short side of the outputs (never upscaled)')
    parser.add_argument('--gop', type=int, default=16, help='a keyframe at least every N frames')
    parser.add_argument('--workers', type=int, default=available_cpus(), help='encoding processes (default: the CPUs)')
    parser.add_argument('--crf', type=int, default=23, help='libx264 quality, 0-51 (lower: better and bigger)')
    parser.add_argument('--preset', default='veryfast', choices=X264_PRESETS, help='libx264 speed preset')
    parser.add_argument('--tune', default='fastdecode', choices=X264_TUNES,
                        help="libx264 tuning ('none': none); fastdecode: ~1.3x faster decoding, ~15%% larger files")
    parser.add_argument('--shard-index', type=non_negative_int, default=None, metavar='I',
                        help='prepare only part I of --num-shards (every N-th video from the I-th), e.g. '
                             '$SLURM_ARRAY_TASK_ID')
    parser.add_argument('--num-shards', type=positive_int, default=1, metavar='N',
                        help='the number of parts the split is prepared in (by as many runs, on any machines)')
    parser.add_argument('--merge', action='store_true',
                        help='write the list of a split whose --num-shards parts are all done (encodes nothing)')
    parser.add_argument('--format', default='files', choices=('files', 'wds'),
                        help='files: one video file per source and a list; wds: WebDataset tar shards and _info.json')
    parser.add_argument('--shard-size', type=positive_int, default=1000, metavar='N',
                        help='videos per tar shard (--format wds; ~1000 re-encoded Kinetics videos make ~1 GB)')
    parser.add_argument('--split', default=None, metavar='NAME',
                        help='--format wds: the split name in _info.json and the shards\' prefix (default: the stem '
                             'of --list)')
    parser.add_argument('--copy', action='store_true',
                        help='--format wds: put the sources in the shards as they are (no re-encoding)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    tune = None if args.tune == 'none' else args.tune
    for flag, value, low in (('--short-side', args.short_side, 2), ('--gop', args.gop, 1),
                             ('--workers', args.workers, 1)):
        if value < low:
            parser.error(f'{flag} must be at least {low}, got {value}')
    if not 0 <= args.crf <= 51:
        parser.error(f'--crf must be in 0..51, got {args.crf}')
    if not os.path.isdir(args.data_root):
        parser.error(f'--data-root {args.data_root}: no such folder')
    if not os.path.isfile(args.list):
        parser.error(f'--list {args.list}: no such file')
    if os.path.realpath(args.output) == os.path.realpath(args.data_root):
        parser.error('--output must be another folder than --data-root (the sources would be overwritten)')
    if args.merge and args.shard_index is not None:
        parser.error('--merge writes the list of all the parts: leave out --shard-index')
    if args.merge and args.num_shards < 2:
        parser.error('--merge needs the --num-shards N the parts were prepared with (N >= 2)')
    if args.shard_index is not None and args.shard_index >= args.num_shards:
        parser.error(f'--shard-index {args.shard_index} must be below --num-shards {args.num_shards}')
    if args.shard_index is None and args.num_shards > 1 and not args.merge:
        parser.error(f'--num-shards {args.num_shards}: give this run\'s --shard-index (0..{args.num_shards - 1}), '
                     f'or --merge')
    try:
        videos = load_video_list(args.list, args.data_root, args.dataset_format, args.class_names)
        output_paths(videos, args.data_root, args.output)
    except (OSError, ValueError, KeyError) as e:  # unreadable or malformed annotations, clashing outputs
        parser.error(f'{args.list}: {type(e).__name__}: {e}')
    if not any(os.path.exists(path) for path, _ in videos.samples):  # prepare reads them all: check them all
        parser.error(f'--list {args.list}: none of its {len(videos.samples)} videos exists under --data-root '
                     f'{args.data_root} (e.g. {videos.samples[0][0]})')
    if args.copy and args.format != 'wds':
        parser.error('--copy puts the sources into tar shards as they are: it needs --format wds')
    list_name = Path(args.list).stem + '.txt'
    split = args.split or Path(args.list).stem
    wds = args.format == 'wds'
    try:
        _record_settings(args.output, _encoding_settings(args.short_side, args.gop, args.crf, args.preset, tune,
                                                         args.shard_size if wds else None, args.copy),
                         _split_settings_file(split) if wds else SETTINGS_FILE)
        if args.merge:
            result = merge_tar_shards(videos, args.output, args.shard_size, split, args.num_shards) if wds else \
                merge_shards(videos, args.data_root, args.output, args.num_shards, list_name)
    except ValueError as e:
        parser.error(str(e))
    if not args.merge and wds:
        result = prepare_tar_shards(videos, args.data_root, args.output, args.shard_size, split, args.copy,
                                    args.short_side, args.gop, args.workers, not args.no_progress, args.crf,
                                    args.preset, tune, args.shard_index or 0, args.num_shards)
        result['part'] = args.num_shards > 1
    elif not args.merge:
        result = prepare_dataset(videos, args.data_root, args.output, args.short_side, args.gop, args.workers,
                                 not args.no_progress, args.crf, args.preset, list_name, tune,
                                 args.shard_index or 0, args.num_shards)
    print(_summary(result, args.output))
    return 1 if result['unreadable'] else 0


if __name__ == '__main__':
    sys.exit(main())
