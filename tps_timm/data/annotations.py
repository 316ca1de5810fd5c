"""Annotation readers: the authors' list files and the formats the datasets are downloaded in.

Every reader returns a :class:`VideoList`: ``(path, label)`` samples plus the class names, which travel with the
data into checkpoints and Hub configs.
"""
import csv
import json
import os
import random
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

__all__ = ['VideoList', 'DATASET_FORMATS', 'VIDEO_EXTENSIONS', 'find_videos', 'load_video_list', 'missing_videos',
           'read_list_file',
           'read_class_names', 'read_kinetics_csv', 'read_sthv2', 'read_sthv1', 'read_diving48']


@dataclass
class VideoList:
    """``(path, label)`` samples, the class names, and where each sample was read (``file:line``) for errors."""
    samples: List[Tuple[str, int]]
    class_names: List[str] = field(default_factory=list)
    origins: List[str] = field(default_factory=list)

    @property
    def num_videos(self) -> int:
        return len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def video(self, index: int) -> Tuple[str, Optional[bytes], int]:
        """``(path, None, label)``: what a video table gives a dataset (a Hugging Face table may give bytes)."""
        path, label = self.samples[index]
        return path, None, label

    def name(self, index: int) -> str:
        return self.samples[index][0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 1 + max((label for _, label in self.samples), default=-1)

    def check_labels(self, num_classes: int) -> None:
        """Raise a ValueError naming the first sample (file and line) whose label is not a class of the model."""
        for i, (path, label) in enumerate(self.samples):
            if not 0 <= label < num_classes:
                where = self.origins[i] if i < len(self.origins) else path
                raise ValueError(f'{where}: label {label} of {os.path.basename(path)} is not a class of the model, '
                                 f'which has {num_classes} classes (labels 0..{num_classes - 1})')


def read_class_names(path: str) -> List[str]:
    """One class name per line (blank lines skipped)."""
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def read_list_file(path: str, data_root: str = '', class_names: Optional[Sequence[str]] = None) -> VideoList:
    """``relative/path label`` per line, space or comma separated (``path num_frames label`` also accepted)."""
    samples, origins = [], []
    with open(path, encoding='utf-8') as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = [p for p in re.split(r'[,\s]+', line) if p]
            if len(parts) < 2 or not parts[-1].lstrip('-').isdigit():
                raise ValueError(f'{path}:{line_no}: expected "path label", got {line!r}')
            samples.append((os.path.join(data_root, parts[0]), int(parts[-1])))
            origins.append(f'{path}:{line_no}')
    return VideoList(samples, list(class_names or []), origins)


def read_kinetics_csv(path: str, data_root: str = '', class_names: Optional[Sequence[str]] = None,
                      ext: str = '.mp4') -> VideoList:
    """Kinetics CSV (``label,youtube_id,time_start,time_end,split``) -> ``{id}_{start:06d}_{end:06d}.mp4`` files.

    Classes are the sorted label names of the file unless ``class_names`` (e.g. from the train split) is given.
    """
    with open(path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    if rows and not {'label', 'youtube_id', 'time_start', 'time_end'} <= rows[0].keys():
        raise ValueError(f'{path}: not a Kinetics CSV (columns {list(rows[0])})')
    names = list(class_names) if class_names else sorted({r['label'] for r in rows})
    index = {name: i for i, name in enumerate(names)}
    samples = []
    for r in rows:
        if r['label'] not in index:
            raise ValueError(f'{path}: label {r["label"]!r} is not among the {len(names)} class names')
        file = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}{ext}"
        label_dir = r['label'] if os.path.isdir(os.path.join(data_root, r['label'])) else ''
        samples.append((os.path.join(data_root, label_dir, file), index[r['label']]))
    return VideoList(samples, names, [f'{path}:{i + 2}' for i in range(len(rows))])  # after the header line


def _strip_brackets(template: str) -> str:
    return template.replace('[', '').replace(']', '')


def read_sthv2(labels_json: str, split_json: str, data_root: str = '', ext: str = '.webm') -> VideoList:
    """Something-Something v2: ``labels.json`` ({name: index}) and ``train.json`` / ``validation.json``.

    A video's class is its template with the brackets stripped ("Putting [something] on [something]").
    """
    with open(labels_json, encoding='utf-8') as f:
        label_index = {name: int(i) for name, i in json.load(f).items()}
    names = [name for name, _ in sorted(label_index.items(), key=lambda kv: kv[1])]
    with open(split_json, encoding='utf-8') as f:
        entries = json.load(f)
    samples = []
    for e in entries:
        name = _strip_brackets(e['template'])
        if name not in label_index:
            raise ValueError(f'{split_json}: template {e["template"]!r} of video {e["id"]} is not in {labels_json}')
        samples.append((os.path.join(data_root, f"{e['id']}{ext}"), label_index[name]))
    return VideoList(samples, names, [f'{split_json} entry {i}' for i in range(len(entries))])


def read_sthv1(labels_csv: str, split_csv: str, data_root: str = '') -> VideoList:
    """Something-Something v1: class names one per line, splits as ``id;class name``; videos are frame folders."""
    names = read_class_names(labels_csv)
    index = {name: i for i, name in enumerate(names)}
    samples, origins = [], []
    with open(split_csv, encoding='utf-8') as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            video_id, _, name = line.strip().partition(';')
            if name not in index:
                raise ValueError(f'{split_csv}:{line_no}: class {name!r} is not in {labels_csv}')
            samples.append((os.path.join(data_root, video_id), index[name]))
            origins.append(f'{split_csv}:{line_no}')
    return VideoList(samples, names, origins)


def read_diving48(split_json: str, data_root: str = '', vocab_json: Optional[str] = None,
                  ext: str = '.mp4') -> VideoList:
    """Diving-48: ``[{"vid_name", "label", ...}]`` splits; class names from ``Diving48_vocab.json`` if given."""
    with open(split_json, encoding='utf-8') as f:
        entries = json.load(f)
    names = []
    if vocab_json:
        with open(vocab_json, encoding='utf-8') as f:
            names = [', '.join(v) if isinstance(v, list) else str(v) for v in json.load(f)]
    samples = [(os.path.join(data_root, f"{e['vid_name']}{ext}"), int(e['label'])) for e in entries]
    return VideoList(samples, names, [f'{split_json} entry {i}' for i in range(len(entries))])


DATASET_FORMATS = ('list', 'kinetics', 'sthv2', 'sthv1', 'diving48')
VIDEO_EXTENSIONS = ('.mp4', '.webm', '.mkv', '.avi', '.mov', '.m4v', '.mpg', '.mpeg', '.flv', '.ts')
LIST_EXTENSIONS = ('.txt', '.csv', '.lst')


def find_videos(inputs: Sequence[str], data_root: str = '') -> List[str]:
    """Video paths from files, folders (searched recursively, sorted) and list files (a path per line, an optional
    label after it, relative to ``data_root``); the order given, each path once."""
    found: List[str] = []
    for item in inputs:
        if os.path.isdir(item) and not _is_frame_folder(item):
            found += sorted(os.path.join(d, f) for d, _, files in os.walk(item) for f in files
                            if f.lower().endswith(VIDEO_EXTENSIONS))
        elif item.lower().endswith(LIST_EXTENSIONS) and os.path.isfile(item):
            try:
                with open(item, encoding='utf-8') as f:
                    found += [os.path.join(data_root, re.split(r'[,\s]+', line.strip())[0]) for line in f
                              if line.strip()]
            except UnicodeDecodeError as e:
                raise ValueError(f'{item}: not a text list of videos ({e.reason} at byte {e.start})') from e
        else:
            found.append(item)  # a video file or a frame folder; a missing one is reported when it is read
    return list(dict.fromkeys(found))


def _is_frame_folder(path: str) -> bool:
    return any(f.lower().endswith(('.jpg', '.jpeg', '.png')) for f in os.listdir(path))


def load_video_list(annotation: str, data_root: str = '', dataset_format: str = 'list',
                    class_names: Optional[str] = None) -> VideoList:
    """Read a split in any supported format.

    Args:
        annotation: The split file: list file, Kinetics CSV, SSv2 ``train.json``/``validation.json``, SSv1 split CSV
            or Diving-48 split JSON.
        data_root: Folder the video paths are relative to.
        dataset_format: One of ``DATASET_FORMATS``.
        class_names: Class-name source: a names file (list, kinetics), ``labels.json`` (sthv2, required), the labels
            CSV (sthv1, required) or ``Diving48_vocab.json`` (diving48).
    """
    if dataset_format not in DATASET_FORMATS:
        raise ValueError(f'dataset format must be one of {DATASET_FORMATS}, got {dataset_format!r}')
    if not os.path.isfile(annotation):
        raise FileNotFoundError(f'annotation file not found: {annotation}')
    if dataset_format in ('sthv2', 'sthv1') and not class_names:
        raise ValueError(f'{dataset_format} needs its class-name file (--class-names)')
    if class_names and not os.path.isfile(class_names):
        raise FileNotFoundError(f'class names file not found: {class_names}')
    try:
        if dataset_format == 'list':
            videos = read_list_file(annotation, data_root, read_class_names(class_names) if class_names else None)
        elif dataset_format == 'kinetics':
            videos = read_kinetics_csv(annotation, data_root, read_class_names(class_names) if class_names else None)
        elif dataset_format == 'sthv2':
            videos = read_sthv2(class_names, annotation, data_root)
        elif dataset_format == 'sthv1':
            videos = read_sthv1(class_names, annotation, data_root)
        else:
            videos = read_diving48(annotation, data_root, class_names)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError) as e:  # another format
        raise ValueError(f'{annotation}: not a {dataset_format} annotation file ({type(e).__name__}: {e}); '
                         f'see --dataset-format') from e
    if not videos.samples:
        raise ValueError(f'{annotation}: no videos in it')
    return videos


def missing_videos(videos: VideoList, sample: int = 64, seed: int = 0) -> Optional[str]:
    """The error to stop on when none of up to ``sample`` videos drawn from ``videos`` exists, else None: a wrong
    ``--data-root`` is found before any work (a seeded sample: a full check would stat every file of a large
    set on network storage)."""
    rng = random.Random(seed)
    drawn = videos.samples if len(videos.samples) <= sample else rng.sample(videos.samples, sample)
    if any(os.path.exists(path) for path, _ in drawn):
        return None
    scope = f'none of its {len(drawn)} videos' if len(drawn) == len(videos.samples) else \
        f'none of {len(drawn)} of its videos drawn at random'
    return f'{scope} exists (e.g. {drawn[0][0]}): check --data-root'

