"""Built-in demo data: short mp4 clips of moving shapes whose class is only visible across frames.

Classes come in pairs that differ only in the direction of time (left -> right vs right -> left, growing vs
shrinking, appearing vs disappearing, clockwise vs counter-clockwise), with random colours, sizes, positions, speeds
and background noise, so no single frame reveals the class. Written as real mp4 files plus list files and class
names, in the generic list format the training and evaluation scripts read.
"""
import json
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['DEMO_CLASSES', 'render_clip', 'render_actions', 'write_video', 'make_demo_dataset']

DEMO_CLASSES = ('moving left to right', 'moving right to left', 'growing', 'shrinking', 'appearing',
                'disappearing', 'rotating clockwise', 'rotating counter-clockwise')


def _time_course(label: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """0 -> 1 progress for the forward class of each pair, 1 -> 0 for its reverse."""
    start = rng.uniform(0.0, 0.25)
    end = rng.uniform(0.75, 1.0)
    course = np.linspace(start, end, frames)
    return course if label % 2 == 0 else course[::-1]


def render_clip(label: int, frames: int = 16, size: int = 64, rng: Optional[np.random.Generator] = None,
                return_masks: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """One clip of class ``label`` as uint8 ``(frames, size, size, 3)``; with ``return_masks`` also where the shape
    is in each frame, bool ``(frames, size, size)`` (what a saliency map should find)."""
    rng = rng or np.random.default_rng()
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    background = rng.integers(0, 256, 3)
    colour = (background + rng.integers(112, 145, 3)) % 256  # random, but always far from the background
    course = _time_course(label, frames, rng)
    radius = rng.uniform(0.14, 0.22) * size
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    travel = rng.uniform(0.5, 0.8) * size
    clip = np.empty((frames, size, size, 3), np.float32)
    masks = np.zeros((frames, size, size), bool)
    for t, p in enumerate(course):
        alpha = np.zeros((size, size), np.float32)
        kind = label // 2
        if kind == 0:  # horizontal motion
            x = (size - travel) / 2 + p * travel
            alpha[(ys - cy) ** 2 + (xs - x) ** 2 <= radius ** 2] = 1
        elif kind == 1:  # size change
            r = size * (0.06 + 0.3 * p)
            alpha[(np.abs(ys - cy) <= r) & (np.abs(xs - cx) <= r)] = 1
        elif kind == 2:  # fade in / out
            alpha[(ys - cy) ** 2 + (xs - cx) ** 2 <= (1.4 * radius) ** 2] = p
        else:  # a bar turning about the centre
            angle = p * math.pi * 0.9
            dy, dx = ys - size / 2, xs - size / 2
            along = dx * math.cos(angle) + dy * math.sin(angle)
            across = -dx * math.sin(angle) + dy * math.cos(angle)
            alpha[(np.abs(along) <= size * 0.38) & (np.abs(across) <= size * 0.07)] = 1
        clip[t] = background * (1 - alpha[..., None]) + colour * alpha[..., None]
        masks[t] = alpha > 0
    clip += rng.normal(0, 6, clip.shape)
    clip = np.clip(clip, 0, 255).astype(np.uint8)
    return (clip, masks) if return_masks else clip


def render_actions(labels: Sequence[int], frames_each: int = 24, size: int = 64,
                   rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, List[Tuple[int, int, int]]]:
    """A long video of demo actions back to back, each ``frames_each`` frames (in a scene of its own): uint8
    ``(frames, size, size, 3)`` and the truth, ``(label, first frame, end frame)`` per action."""
    rng = rng or np.random.default_rng()
    clips, truth = [], []
    for i, label in enumerate(labels):
        clips.append(render_clip(label, frames_each, size, rng))
        truth.append((label, i * frames_each, (i + 1) * frames_each))
    return np.concatenate(clips), truth


def write_video(path: str, frames: np.ndarray, fps: int = 12, codec: str = 'libx264', gop: Optional[int] = None,
                options: Optional[Dict[str, str]] = None) -> None:
    """Write uint8 RGB ``(T, H, W, 3)`` frames as a video file with PyAV.

    ``gop``: a keyframe every ``gop`` frames (default: the codec's); ``options``: encoder options (default for
    libx264: near-lossless and fast, for test data).
    """
    import av
    with av.open(str(path), 'w') as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = 'yuv420p'
        if gop:
            stream.codec_context.gop_size = gop
        if options is not None:
            stream.options = dict(options)
        elif codec == 'libx264':
            stream.options = {'crf': '10', 'preset': 'ultrafast'}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_demo_dataset(
        root: str,
        num_train: int = 320,
        num_val: int = 160,
        frames: int = 16,
        size: int = 64,
        seed: int = 0,
        progress: bool = True,
) -> Dict[str, str]:
    """Generate the demo set under ``root`` (skipped if it is already there with the same settings).

    Returns the paths of ``train.txt``, ``val.txt`` (``relative/path label`` lines), ``classes.txt`` and the root.
    Every file is written whole and renamed into place, ``done.json`` last: the processes of a distributed run may
    all generate the set at once (they write the same files) and never read half a file.
    """
    root_path = Path(root)
    settings = dict(num_train=num_train, num_val=num_val, frames=frames, size=size, seed=seed,
                    classes=list(DEMO_CLASSES))
    out = {'root': str(root_path), 'train': str(root_path / 'train.txt'), 'val': str(root_path / 'val.txt'),
           'classes': str(root_path / 'classes.txt')}
    done = root_path / 'done.json'
    if done.is_file() and json.loads(done.read_text()) == settings:
        return out
    from tqdm import tqdm
    rng = np.random.default_rng(seed)
    (root_path / 'videos').mkdir(parents=True, exist_ok=True)
    splits: Tuple[Tuple[str, int], ...] = (('train', num_train), ('val', num_val))
    bar = tqdm(total=num_train + num_val, desc='generating demo videos', disable=not progress)
    for split, count in splits:
        lines = []
        for i in range(count):
            label = i % len(DEMO_CLASSES)
            rel = f'videos/{split}_{i:05d}.mp4'
            tmp = root_path / f'{rel[:-4]}.{os.getpid()}.tmp.mp4'  # the container is chosen by the suffix
            write_video(tmp, render_clip(label, frames, size, rng))
            os.replace(tmp, root_path / rel)
            lines.append(f'{rel} {label}\n')
            bar.update()
        _write_text(Path(out[split]), ''.join(lines))
    bar.close()
    _write_text(Path(out['classes']), ''.join(f'{name}\n' for name in DEMO_CLASSES))
    _write_text(done, json.dumps(settings))
    return out


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)
