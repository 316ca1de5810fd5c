"""Decode selected frames of a video as uint8 RGB ``(T, H, W, 3)``: torchcodec, decord, PyAV, in that order.

torchcodec (optional: ``pip install torchcodec`` with FFmpeg 4-8 shared libraries on the system, e.g.
``apt install ffmpeg`` or ``conda install ffmpeg``) decodes fastest; decord 0.6 comes next but is unmaintained and
fails on some valid files (frame widths 16, 24, 48, 72); PyAV (bundled FFmpeg) reads everything. A failure with one
backend (an error, or frames of the wrong shape) is retried with the next before a file is declared unreadable.
All three give the same frames, at the source's size: the clip transforms make the one resize, so a clip is the same
whichever backend read it. Folders of JPEG frames (Something-Something v1) are read directly. A video can also be
decoded from its bytes in memory (e.g. a member of a tar shard), with the same frames as from its file.
"""
import contextlib
import functools
import io
import os
import sys
from importlib.util import find_spec
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['BACKENDS', 'VideoReadError', 'available_backends', 'default_backend', 'load_clip', 'short_side_size',
           'decoded_frames', 'frame_to_rgb', 'video_seconds']

BACKENDS = ('torchcodec', 'decord', 'pyav')  # the default order: fastest first
_IMAGE_EXTS = ('.jpg', '.jpeg', '.png')
IndexFn = Callable[[int], np.ndarray]  # number of frames -> frame indices (any shape)
Source = Union[str, bytes]  # a file path, or a whole video file's bytes


class VideoReadError(RuntimeError):
    """A video that no backend could read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f'{path}: {reason}')
        self.path = path
        self.reason = reason


@functools.lru_cache(maxsize=None)
def _unavailable(backend: str) -> str:
    """Why ``backend`` cannot decode here ('' when it can); asked once per process."""
    if find_spec({'pyav': 'av'}.get(backend, backend)) is None:
        return 'not installed'
    if backend == 'torchcodec':
        try:
            from torchcodec._core import ops
        except Exception as e:  # e.g. a torchcodec built for another torch
            return f'does not load: {type(e).__name__}: {e}'
        if not getattr(ops, '_FFMPEG_AVAILABLE', True):
            return 'needs FFmpeg 4-8 shared libraries (apt install ffmpeg, or conda install ffmpeg)'
    return ''


def available_backends() -> List[str]:
    """The backends that can decode in this environment, in the default order."""
    return [b for b in BACKENDS if not _unavailable(b)]


def default_backend() -> str:
    """The first backend that can decode here (PyAV when none can: its reason is then reported)."""
    return (available_backends() or ['pyav'])[0]


def short_side_size(height: int, width: int, short_side: int) -> Tuple[int, int]:
    """(height, width) scaled so that the short side is ``short_side``, keeping the aspect ratio."""
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def _opened(source: Source):
    """A path as it is, bytes as a file object (what decord and PyAV read from memory)."""
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _read_torchcodec(path: Source, index_fn: IndexFn) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder  # takes a path or the bytes themselves
    # approximate seeking trusts the container's frame count and timestamps instead of scanning the whole file; a
    # container without a count (WebM, MKV) would give duration x rate, which can miss: scan those
    decoder = VideoDecoder(path, num_ffmpeg_threads=1, dimension_order='NHWC', seek_mode='approximate')
    if decoder.metadata.num_frames_from_header is None:
        decoder = VideoDecoder(path, num_ffmpeg_threads=1, dimension_order='NHWC', seek_mode='exact')
    indices = index_fn(decoder.metadata.num_frames)
    frames = decoder.get_frames_at(indices.reshape(-1).tolist()).data.numpy()
    return frames.reshape(*indices.shape, *frames.shape[1:])


@contextlib.contextmanager
def _native_stderr_muted():
    """Silence what native code writes to file descriptor 2 (decord logs a failed open there itself, in lines that
    our error message repeats; the next backend then tries the file), Python's own stderr included, briefly."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2: nothing to mute
        yield
        return
    with open(os.devnull, 'w') as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.lru_cache(maxsize=None)
def _quiet_decord():
    import decord
    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's messages: our errors say what failed
    return decord


def _read_decord(path: Source, index_fn: IndexFn) -> np.ndarray:
    decord = _quiet_decord()
    with _native_stderr_muted():  # only the open: decoding errors are raised, not logged
        reader = decord.VideoReader(_opened(path), num_threads=1)
    indices = index_fn(len(reader))
    frames = reader.get_batch(indices.reshape(-1).tolist()).asnumpy()
    return frames.reshape(*indices.shape, *frames.shape[1:])


def _read_pyav(path: Source, index_fn: IndexFn) -> np.ndarray:
    import av
    with av.open(_opened(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # one thread per loader worker
        total = stream.frames
        if total <= 0:  # no count in the header: count by demuxing
            total = sum(1 for packet in container.demux(stream) if packet.size)
            container.seek(0)
        indices = index_fn(total)
        wanted = set(indices.reshape(-1).tolist())
        decoded = {}
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                decoded[i] = frame.to_ndarray(format='rgb24')
            if i >= max(wanted):
                break
    missing = wanted - decoded.keys()
    if missing:
        raise ValueError(f'decoded {len(decoded)} of the frames asked for; missing e.g. frame {min(missing)}')
    frames = np.stack([decoded[i] for i in indices.reshape(-1).tolist()])
    return frames.reshape(*indices.shape, *frames.shape[1:])


def _read_frame_folder(path: str, index_fn: IndexFn) -> np.ndarray:
    from PIL import Image
    files = sorted(f for f in os.listdir(path) if f.lower().endswith(_IMAGE_EXTS))
    if not files:
        raise ValueError('frame folder has no images')
    indices = index_fn(len(files))
    frames = []
    for i in indices.reshape(-1).tolist():
        with Image.open(os.path.join(path, files[i])) as img:
            frames.append(np.asarray(img.convert('RGB')))
    frames = np.stack(frames)
    return frames.reshape(*indices.shape, *frames.shape[1:])


_READERS = {'torchcodec': _read_torchcodec, 'decord': _read_decord, 'pyav': _read_pyav}


def _check_frames(frames: np.ndarray, indices_shape: Sequence[int]) -> None:
    if frames.dtype != np.uint8 or frames.ndim != len(indices_shape) + 3 or frames.shape[-1] != 3 \
            or tuple(frames.shape[:len(indices_shape)]) != tuple(indices_shape) or 0 in frames.shape:
        raise ValueError(f'decoded frames have shape {frames.shape} / {frames.dtype}, expected '
                         f'{tuple(indices_shape)} + (H, W, 3) uint8')


def load_clip(path: str, index_fn: IndexFn, backend: Optional[str] = None,
              data: Optional[bytes] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Decode the frames ``index_fn(video_frames)`` of ``path``, or of the video file whose bytes are ``data``.

    Args:
        path: A video file, or a folder of JPEG/PNG frames; with ``data``, the name errors give the video (e.g.
            ``shard.tar:key.mp4``).
        index_fn: Maps the video's frame count to the frame indices to decode (any shape, e.g. clips x frames).
        backend: The backend to try first (default: the first of ``BACKENDS`` that can decode here); the others are
            tried if it fails.
        data: The bytes of a whole video file, decoded in memory (no temporary file).

    Returns:
        ``(frames, indices)``: uint8 RGB frames of shape ``indices.shape + (H, W, 3)`` and the indices used.

    Raises:
        VideoReadError: The file is missing, empty or undecodable by every backend.
    """
    if data is None and not os.path.exists(path):
        raise VideoReadError(path, 'no such file')
    indices_seen = []

    def tracking_index_fn(video_frames: int) -> np.ndarray:
        if video_frames <= 0:
            raise ValueError('video has no frames')
        indices = np.asarray(index_fn(video_frames), dtype=np.int64)
        indices_seen.append(indices)
        return indices

    if data is None and os.path.isdir(path):
        readers: List[Tuple[str, Callable]] = [('frames', _read_frame_folder)]
    else:
        if (len(data) if data is not None else os.path.getsize(path)) == 0:
            raise VideoReadError(path, 'empty file')
        first = backend or default_backend()
        if first not in _READERS:
            raise ValueError(f'unknown video backend {first!r}, choose from {BACKENDS}')
        readers = [(name, _READERS[name]) for name in (first, *(b for b in BACKENDS if b != first))]
    reasons = []
    for name, reader in readers:
        if name in _READERS and (unavailable := _unavailable(name)):
            reasons.append(f'{name}: {unavailable}')
            continue
        try:
            frames = reader(path if data is None else data, tracking_index_fn)
            _check_frames(frames, indices_seen[-1].shape)
            return frames, indices_seen[-1]
        except ImportError as e:
            reasons.append(f'{name}: not installed ({e})')
        except Exception as e:  # any decoder failure: try the next backend
            reasons.append(f'{name}: {type(e).__name__}: {e}'.strip())
    raise VideoReadError(path, '; '.join(reasons))


def frame_to_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame as uint8 RGB ``(H, W, 3)``: the pixels every backend gives for it."""
    return frame.to_ndarray(format='rgb24')


@contextlib.contextmanager
def decoded_frames(path: str, data: Optional[bytes] = None, threads: int = 1):
    """One pass over a video's frames in order, without seeking (PyAV): ``(frame rate (a Fraction), frames the
    header counts or None, an iterator of PyAV frames)``; :func:`frame_to_rgb` converts the ones wanted.

    Raises:
        VideoReadError: The file is missing, empty, has no video stream or no frame rate, or fails to decode
            (also while iterating).
    """
    import av
    if data is None and not os.path.isfile(path):
        raise VideoReadError(path, 'a folder of frames has no frame rate: give a video file' if os.path.isdir(path)
                             else 'no such file')
    if (len(data) if data is not None else os.path.getsize(path)) == 0:
        raise VideoReadError(path, 'empty file')
    try:
        container = av.open(_opened(path if data is None else data))
    except Exception as e:
        raise VideoReadError(path, f'pyav: {type(e).__name__}: {e}') from None
    with container:
        if not container.streams.video:
            raise VideoReadError(path, 'no video stream')
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise VideoReadError(path, 'no frame rate in the container')

        def frames():
            try:
                yield from container.decode(stream)
            except Exception as e:  # a broken packet midway: what was decoded stands, the rest is an error
                raise VideoReadError(path, f'pyav: {type(e).__name__}: {e}') from None
        yield rate, (stream.frames or None), frames()


def video_seconds(path: str, data: Optional[bytes] = None) -> Optional[float]:
    """A video file's duration from its header (None when it states none, or for a folder of frames)."""
    import av
    if data is None and not os.path.isfile(path):
        return None
    with av.open(_opened(path if data is None else data)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if stream.frames and rate:
            return float(stream.frames / rate)
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        return container.duration / 1e6 if container.duration else None
