"""Timeline and stream speed on the CPU, measured side by side in one run.

    python benchmarks/timeline.py [--seconds 60] [--model MODEL]

1. Timeline windows/s: one pass over a 640x360 h264 video with a keyframe every 10 s (written here), against
   decoding each window on its own (the default backend's seek + decode, as ``predict`` reads a clip), for the same
   windows of the demo model's clips; both give identical clips (checked). Target: >= 3x.
2. ``--stream``: the demo model (``--model``, default a randomly initialised demo-recipe model: the same speed) on a
   12 fps source played in real time: whether it keeps up, the time per window and the answers' lag.
"""
import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import tps_timm  # noqa: E402,F401
from tps_timm.clip import ClipConfig  # noqa: E402
from tps_timm.data import ClipSampler, WindowItems, default_backend, load_clip, render_actions, write_video  # noqa
from tps_timm.data.sampling import WindowLayout  # noqa: E402

DEMO_CLIP = ClipConfig(num_frames=8, frame_interval=1, sampling='uniform', img_size=48, short_side=48, num_clips=1,
                       num_crops=1, train_video_seconds=16 / 12)


def write_test_video(path: str, seconds: int, fps: int = 30) -> None:
    """``seconds`` of moving noise at 640x360, a keyframe every 10 s (what long uploads often have)."""
    import av
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (360, 640 + seconds * fps, 3), dtype=np.uint8)
    with av.open(path, 'w') as container:
        stream = container.add_stream('libx264', rate=fps)
        stream.width, stream.height, stream.pix_fmt = 640, 360, 'yuv420p'
        stream.codec_context.gop_size = 10 * fps
        stream.options = {'preset': 'veryfast', 'crf': '28', 'sc_threshold': '0'}  # no extra keyframes
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, i:i + 640]), format='rgb24')
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def timeline_speed(path: str) -> None:
    items = WindowItems(DEMO_CLIP)
    start = time.perf_counter()
    one_pass = list(items.eval_items(path, 0, 0))
    one_pass_s = time.perf_counter() - start
    fps = one_pass[0]['fps']
    sampler = ClipSampler.for_clip(DEMO_CLIP)
    layout = WindowLayout.from_seconds(one_pass[0]['seconds'], one_pass[0]['seconds'] / 2, fps)
    backend = default_backend()
    start = time.perf_counter()
    separate = []
    for item in one_pass:  # each window by itself: the decoder seeks to the keyframe before it and decodes on
        first = round(item['start'] * fps)
        frames, _ = load_clip(path, lambda n: first + layout.clip_indices(sampler)[None], backend)
        clip = items.transform(torch.from_numpy(frames[0]).permute(0, 3, 1, 2)).permute(0, 2, 1, 3, 4)
        separate.append(clip)
    separate_s = time.perf_counter() - start
    same = all(torch.equal(a['video'], b) for a, b in zip(one_pass, separate))
    ratio = separate_s / one_pass_s
    print(f'timeline: {len(one_pass)} windows of {one_pass[0]["seconds"]:.2f} s; one pass '
          f'{len(one_pass) / one_pass_s:.1f} windows/s, each window by itself ({backend}) '
          f'{len(separate) / separate_s:.1f} windows/s: '
          f'{ratio:.1f}x (target >= 3x: {"PASS" if ratio >= 3 else "FAIL"}); identical clips: {same}')


def stream_speed(model_name: str, seconds: int) -> None:
    import timm
    from tps_timm.data import DEMO_CLASSES
    from tps_timm.stream import classify_stream
    if model_name:
        model = timm.create_model(model_name, pretrained=True).eval()
        clip = ClipConfig.from_pretrained_cfg(model.pretrained_cfg)
    else:
        model = timm.create_model('tps_swin_tiny', num_classes=8, embed_dim=32, depths=(2, 2, 2, 2),
                                  num_heads=(1, 2, 4, 8), patch_size=(1, 4, 4), global_pool='max').eval()
        clip = DEMO_CLIP
    with tempfile.TemporaryDirectory() as tmp:
        frames, _ = render_actions(list(range(8)) * (seconds // 16 + 1), 24, 64, np.random.default_rng(0))
        path = os.path.join(tmp, 'live.mp4')
        write_video(path, frames[:seconds * 12], fps=12)
        summary = classify_stream(model, path, clip, list(DEMO_CLASSES), out=io.StringIO())
    print(f'stream on {torch.get_num_threads()} threads: {summary}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=int, default=60, help='length of the timeline test video')
    parser.add_argument('--stream-seconds', type=int, default=20, help='length of the stream played in real time')
    parser.add_argument('--model', default='', help='the stream section\'s model (default: a random demo model)')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'long.mp4')
        start = time.perf_counter()
        write_test_video(path, args.seconds)
        print(f'wrote a {args.seconds} s 640x360 h264 video (keyframe every 10 s) in '
              f'{time.perf_counter() - start:.1f} s')
        timeline_speed(path)
    stream_speed(args.model, args.stream_seconds)


if __name__ == '__main__':
    main()
