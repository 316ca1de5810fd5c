#!/usr/bin/env python3
"""Side-by-side speed and memory of TPS-Swin, measured in one run; prints ratios.

    python benchmarks/bench.py [--device cpu|cuda] [--compile] [--json OUT] [--quick] [--parts shifts,models,loading]

1. The shift ops alone at real shapes (stages 1 and 3 of tiny and base, D=16, 8 clips): fused vs the literal
   per-tile reference vs a plain copy of the same tensor (the floor), forward and backward; and a block's data
   movement: our one window permutation with the patch shift folded in vs the same without the shift vs timm's 2D
   roll + window partition, and the unshifted partition with the channel shift folded in vs without it.
2. Whole models on one 32x224 clip: TPS-Swin-T vs timm's 2D Swin-T on the same 16 frames (the floor) vs torchvision
   swin3d_t (Video Swin) vs TPS-Swin-T with the literal eager shifts: inference and a training step, time and peak
   memory (CUDA: max allocated; CPU: peak RSS of a fresh subprocess), and for training the bytes autograd saves.
3. Data loading: decoded training clips/s in one worker, K400-style dense and SSv2-style uniform sampling.

Medians of several repetitions after warm-up.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tps_timm  # noqa: E402,F401
from timm.models.swin_transformer import window_partition as timm_window_partition  # noqa: E402
from tps_timm.shift import channel_shift, channel_shift_reference, partition_channel_shift, patch_shift, \
    patch_shift_reference, permute_rows, window_token_index  # noqa: E402

# glibc: serve every allocation over 128 KiB by mmap, so that freed activations leave the process at once and its
# peak RSS follows the peak of live tensors instead of heap fragmentation (CPU memory figures; harmless on CUDA)
WORKER_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_='131072')
SHAPES = {  # name: (channels, heads, map side) at 224 input
    'tiny stage1': (96, 3, 56), 'tiny stage3': (384, 12, 14),
    'base stage1': (128, 4, 56), 'base stage3': (512, 16, 14),
}


def timeit(fn: Callable, device: str, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_shifts(device: str, reps: int, frames: int = 16, batch: int = 1) -> Dict:
    results = {}
    for name, (channels, heads, side) in SHAPES.items():
        windows = (side // 7) ** 2
        x = torch.randn(batch, frames, windows, 49, channels, device=device, requires_grad=True)
        grad = torch.randn_like(x)

        def fwd_bwd(op):
            def run():
                x.grad = None
                op(x).backward(grad)
            return run

        ops = {
            'patch fused': lambda t: patch_shift(t, (7, 7)),
            'patch reference': lambda t: patch_shift_reference(t, (7, 7)),
            'channel fused': lambda t: channel_shift(t, heads),
            'channel reference': lambda t: channel_shift_reference(t, heads),
            'copy': lambda t: t.clone(),
        }
        row = {}
        with torch.no_grad():
            for op_name, op in ops.items():
                row[f'{op_name} fwd'] = timeit(lambda: op(x), device, reps)
        for op_name, op in ops.items():
            row[f'{op_name} fwd+bwd'] = timeit(fwd_bwd(op), device, reps)
        # the block's own data movement: timm's 2D roll + partition copy vs our one permutation, with and without the
        # patch shift folded in; forward + backward
        maps = torch.randn(batch, frames, side, side, channels, device=device, requires_grad=True)
        map_grad = torch.randn(batch * frames * side * side, channels, device=device)
        plain = window_token_index(frames, (side, side), (7, 7), (3, 3), False, batch=batch, device=device)
        shifted = window_token_index(frames, (side, side), (7, 7), (3, 3), True, batch=batch, device=device)
        unshifted = window_token_index(frames, (side, side), (7, 7), window_major=True, batch=batch, device=device)

        def partition_2d(t):
            t = torch.roll(t.flatten(0, 1), (-3, -3), (1, 2))
            return timm_window_partition(t, (7, 7)).reshape(-1, channels)

        for op_name, op in (('partition 2D', partition_2d),
                            ('partition', lambda t: permute_rows(t, plain.partition, plain.reverse)),
                            ('partition+patch shift', lambda t: permute_rows(t, shifted.partition, shifted.reverse)),
                            ('unshifted partition', lambda t: permute_rows(t, unshifted.partition, unshifted.reverse)),
                            ('unshifted partition+channel shift',
                             lambda t: partition_channel_shift(t, unshifted, (7, 7), heads)),
                            ('channel shift, then unshifted partition',
                             lambda t: permute_rows(channel_shift(t, heads), unshifted.partition, unshifted.reverse))):
            with torch.no_grad():
                row[f'{op_name} fwd'] = timeit(lambda: op(maps), device, reps)

            def run():
                maps.grad = None
                op(maps).backward(map_grad)
            row[f'{op_name} fwd+bwd'] = timeit(run, device, reps)
        results[name] = row
    return results


def _model_worker(spec: str) -> None:
    """Run one model measurement in this process and print JSON (fresh process: clean peak memory)."""
    import resource
    cfg = json.loads(spec)
    device, kind, train = cfg['device'], cfg['model'], cfg['train']
    torch.manual_seed(0)
    frames, size = cfg['frames'], cfg['size']
    if kind == 'swin2d':
        import timm
        model = timm.create_model('swin_tiny_patch4_window7_224', num_classes=400)
        x = torch.randn(frames // 2, 3, size, size)
    elif kind == 'swin3d_t':
        import torchvision
        model = torchvision.models.video.swin3d_t(num_classes=400)
        x = torch.randn(1, 3, frames, size, size)
    else:
        import timm
        model = timm.create_model('tps_swin_tiny', num_classes=400)
        if kind == 'tps eager':
            use_literal_shifts(model)
        x = torch.randn(1, 3, frames, size, size)
    model, x = model.to(device), x.to(device)
    if cfg['compile']:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.zeros(x.shape[0], dtype=torch.long, device=device)

    def step():
        if train:
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.no_grad():
                model(x)

    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    seconds = timeit(step, device, cfg['reps'], warmup=1)
    peak = torch.cuda.max_memory_allocated() if device == 'cuda' else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = dict(seconds=seconds, peak_bytes=peak)
    if train and not cfg['compile']:  # the hooks see the eager graph only
        result['saved_bytes'] = saved_activation_bytes(model, x)
    print(json.dumps(result))


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes that autograd keeps for the backward pass of one forward (each storage once, parameters excluded):
    the part of training memory that grows with the batch, measured exactly rather than through the process RSS."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


def use_literal_shifts(model: torch.nn.Module) -> None:
    """Swap every block's attention branch for the plain one of tests/reference.py (pad, roll, view/permute
    partition, per-tile rolls) around the same SDPA attention: the eager shifts as the authors write them."""
    import types
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
    from reference import reference_attn_branch
    for module in model.modules():
        if hasattr(module, 'window_and_shift'):
            module._attn = types.MethodType(
                lambda self, x: reference_attn_branch(self, x, model_attention=True, normed=True), module)


def bench_models(device: str, reps: int, compile_: bool, frames: int, size: int) -> Dict:
    results = {}
    for kind in ('swin2d', 'tps', 'tps eager', 'swin3d_t'):
        for train in (False, True):
            spec = json.dumps(dict(device=device, model=kind, train=train, reps=reps, compile=compile_, frames=frames,
                                   size=size))
            proc = subprocess.run([sys.executable, __file__, '--worker', spec], capture_output=True, text=True,
                                  env=WORKER_ENV)
            if proc.returncode:
                raise RuntimeError(f'{kind}: {proc.stderr[-2000:]}')
            results[f"{kind} {'train step' if train else 'inference'}"] = json.loads(proc.stdout.splitlines()[-1])
    return results


def bench_loading(reps: int) -> Dict:
    import numpy as np

    from tps_timm.data import ClipSampler, ClipTrainTransform, VideoDataset, VideoList, render_clip, write_video
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(4):  # 10 s at 25 fps, 320x256: the size of a resized Kinetics / SSv2 video
            frames = np.concatenate([render_clip(i % 8, 50, 256, rng)] * 5)
            frames = np.concatenate([frames, frames[:, :, :64]], axis=2)
            path = os.path.join(tmp, f'{i}.mp4')
            write_video(path, frames, fps=25)
            paths.append((path, 0))
        results = {}
        for name, sampler in (('K400 dense 32x2', ClipSampler(32, 2, 1, 'dense')),
                              ('SSv2 uniform 32', ClipSampler(32, 2, 1, 'uniform'))):
            dataset = VideoDataset(VideoList(paths), sampler, ClipTrainTransform(224, 256), train=True)
            count = reps * len(paths)
            start = time.perf_counter()
            for i in range(count):
                dataset[i % len(paths)]
            results[name] = dict(clips_per_s=count / (time.perf_counter() - start))
    return results


def print_shifts(shifts: Dict, batch: int) -> None:
    print(f'\n## shift ops on {batch} clips of 16 frames, ratios (lower is better)')
    columns = (  # (header, numerator, denominator, pass)
        ('patch/copy', 'patch fused', 'copy', 'fwd'), ('patch/copy', 'patch fused', 'copy', 'fwd+bwd'),
        ('literal/patch', 'patch reference', 'patch fused', 'fwd+bwd'),
        ('chan/copy', 'channel fused', 'copy', 'fwd'), ('chan/copy', 'channel fused', 'copy', 'fwd+bwd'),
        ('literal/chan', 'channel reference', 'channel fused', 'fwd+bwd'),
        ('part+shift/2D', 'partition+patch shift', 'partition 2D', 'fwd+bwd'),
        ('part+shift/part', 'partition+patch shift', 'partition', 'fwd+bwd'),
        ('part+chan/part', 'unshifted partition+channel shift', 'unshifted partition', 'fwd+bwd'),
        ('chan,part/part', 'channel shift, then unshifted partition', 'unshifted partition', 'fwd+bwd'),
    )
    print(f"{'shape':14}" + ''.join(f' {c[0]:>16}' for c in columns))
    print(f"{'':14}" + ''.join(f' {c[3]:>16}' for c in columns))
    for name, r in shifts.items():
        ratios = (r[f'{num} {kind}'] / r[f'{den} {kind}'] for _, num, den, kind in columns)
        print(f'{name:14}' + ''.join(f' {ratio:16.2f}' for ratio in ratios))


def print_models(models: Dict, frames: int, size: int) -> None:
    print(f'\n## models on one {frames}x{size} clip (2D Swin-T on the same {frames // 2} frames)')
    print(f"{'model':24} {'seconds':>10} {'peak GiB':>10} {'time / 2D':>10} {'mem / 2D':>10} {'saved GiB':>10} "
          f"{'saved / 2D':>10}")
    for mode in ('inference', 'train step'):
        floor = models[f'swin2d {mode}']
        for kind in ('swin2d', 'tps', 'tps eager', 'swin3d_t'):
            r = models[f'{kind} {mode}']
            saved = f"{r['saved_bytes'] / 2 ** 30:10.3f} {r['saved_bytes'] / floor['saved_bytes']:10.2f}" \
                if 'saved_bytes' in r else ''
            print(f"{kind + ' ' + mode:24} {r['seconds']:10.3f} {r['peak_bytes'] / 2 ** 30:10.2f} "
                  f"{r['seconds'] / floor['seconds']:10.2f} {r['peak_bytes'] / floor['peak_bytes']:10.2f} {saved}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--compile', action='store_true', help='torch.compile the models')
    parser.add_argument('--json', default=None, help='write all measurements to this file')
    parser.add_argument('--quick', action='store_true', help='fewer repetitions and a 16x112 clip for the models')
    parser.add_argument('--parts', default='shifts,models,loading', help='comma-separated subset to run')
    parser.add_argument('--shift-batch', type=int, default=8,
                        help='clips per shift-op call (default 8: the per-process batch of the hparams recipes)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _model_worker(args.worker)
    reps = 3 if args.quick else (5 if args.device == 'cpu' else 20)
    frames, size = (16, 112) if args.quick else (32, 224)
    env = dict(device=torch.cuda.get_device_name() if args.device == 'cuda' else f'CPU x{os.cpu_count()}',
               torch=torch.__version__, date=time.strftime('%Y-%m-%d'), compile=args.compile,
               clip=f'{frames}x{size}', shift_batch=args.shift_batch)
    print(f"# {env['device']}, torch {env['torch']}, {env['date']}, compile={args.compile}")
    parts = set(args.parts.split(','))
    if not parts <= {'shifts', 'models', 'loading'}:
        parser.error(f'--parts: unknown {sorted(parts - {"shifts", "models", "loading"})}')
    shifts = models = loading = {}
    if 'shifts' in parts:
        shifts = bench_shifts(args.device, reps * 4, batch=args.shift_batch)  # milliseconds each: more repetitions
        print_shifts(shifts, args.shift_batch)
    if 'models' in parts:
        models = bench_models(args.device, reps, args.compile, frames, size)
        print_models(models, frames, size)
    if 'loading' in parts:
        loading = bench_loading(max(reps, 3))
        print('\n## data loading, one worker')
        for name, r in loading.items():
            print(f"{name:24} {r['clips_per_s']:8.1f} clips/s")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(env=env, shifts=shifts, models=models, loading=loading), f, indent=2)


if __name__ == '__main__':
    main()
