#!/usr/bin/env python3
"""Side-by-side speed and memory of the TPS models, measured in one run; prints ratios.

    python benchmarks/bench.py [--device cpu|cuda] [--compile [regional|model]] [--dtype float32|bfloat16]
                               [--json OUT] [--quick] [--parts shifts,attention,models,base,loading,compile]

1. shifts: the shift ops alone at real shapes (stages 1 and 3 of tiny and base, D=16, 8 clips): fused vs the literal
   per-tile reference vs a plain copy of the same tensor (the floor), forward and backward; and a block's data
   movement: our one window permutation with the patch shift folded in vs the same without the shift vs timm's 2D
   roll + window partition, and the unshifted partition with the channel shift folded in vs without it.
2. attention: the window attention with TPS-Swin's relative position bias (and Swin's mask in shifted windows),
   forward + backward: which kernel the default dispatch runs, and each SDPA backend forced in turn.
3. models: whole models on one 32x224 clip: TPS-Swin-T vs timm's 2D Swin-T on the same 16 frames (the floor) vs
   torchvision swin3d_t (Video Swin) vs TPS-Swin-T with the literal eager shifts: inference and a training step, time
   and peak memory (CUDA: max allocated; CPU: peak RSS of a fresh subprocess), and for training the bytes autograd
   saves.
4. base: the TPS-Swin-B training step on 32x224 clips: clips/s and model-FLOPs utilisation (3x the forward FLOPs per
   step) against the card's dense peak and against a large matrix product measured in the same run.
5. loading: training clips/s of one loader worker (one thread): the K400 recipe (dense 32x2, RandomResizedCrop,
   flip) on 640x360 long-GOP h264 and the SSv2 recipe (uniform 32, RandAugment in the worker or on the batch) on
   428x240 VP9, against bare decord decoding of the same frames; --repeated-aug 2; ``prepare``d copies.
6. compile: cold and warm ``torch.compile`` of a training step, TPS-Swin vs timm's 2D Swin on the same frames,
   whole-model and regional: seconds per phase (first step, eval, train again, another batch size), graphs compiled
   in each phase, graph breaks, and compiled vs eager step time. Each run is a fresh process: the cold one with an
   empty inductor cache folder, the warm one with the folder the cold one filled.
7. export: ONNX export of TPS-Swin-T/S/B at 32x224 and 8x112 with a dynamic batch; onnxruntime logits vs eager
   PyTorch at batch 1 and 3, the latency ratio, export time and file size.
8. vit: the TPS-ViT-B training step on a 16x224 clip vs timm's ViT-B on its 8 frames (time, peak memory), and the
   parameters and MACs of TPS-ViT-S/B/L at 16x224 and 32x224 against the 2D ViT on the same frames.
9. sources: the training loader (one worker) on prepared videos as a list of files vs WebDataset shards of the same
   bytes, K400 and SSv2 recipes, --repeated-aug 1 and 2; embed and predict on the demo set in one vs two processes.

Medians of several repetitions after warm-up. ``--dtype bfloat16`` (the default on CUDA) runs the models under
autocast and the shift and attention ops on bfloat16 tensors.
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
from typing import Callable, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))  # the literal references are test code
import tps_timm  # noqa: E402,F401
from timm.models.swin_transformer import window_partition as timm_window_partition  # noqa: E402
from tps_timm.shift import channel_shift, partition_channel_shift, patch_shift, permute_rows, \
    window_token_index  # noqa: E402
from reference import channel_shift_reference, patch_shift_reference  # noqa: E402

# glibc: serve every allocation over 128 KiB by mmap, so that freed activations leave the process at once and its
# peak RSS follows the peak of live tensors instead of heap fragmentation (CPU memory figures; harmless on CUDA)
WORKER_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_='131072')
SHAPES = {  # name: (channels, heads, map side) at 224 input
    'tiny stage1': (96, 3, 56), 'tiny stage3': (384, 12, 14),
    'base stage1': (128, 4, 56), 'base stage3': (512, 16, 14),
}


def _timed(fn: Callable, device: str) -> float:
    if device == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def times(fn: Callable, device: str, reps: int, warmup: int = 2) -> List[float]:
    """Seconds of each of ``reps`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    return [_timed(fn, device) for _ in range(reps)]


def timeit(fn: Callable, device: str, reps: int, warmup: int = 2) -> float:
    """Median seconds of ``reps`` calls after ``warmup``."""
    return statistics.median(times(fn, device, reps, warmup))


def timeit_interleaved(fns: Dict[str, Callable], device: str, reps: int, warmup: int = 2) -> Dict[str, float]:
    """Median seconds of each function, called in turn round after round, so that a slow spell of the machine
    weighs on all of them alike and their ratios hold."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name].append(_timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def _forward(op: Callable, x: torch.Tensor) -> Callable:
    def run():
        with torch.no_grad():
            op(x)
    return run


def _forward_backward(op: Callable, x: torch.Tensor, grad: torch.Tensor) -> Callable:
    def run():
        x.grad = None
        op(x).backward(grad)
    return run


def bench_shifts(device: str, reps: int, dtype: torch.dtype, frames: int = 16, batch: int = 8,
                 compile_: bool = False, ops: Optional[Sequence[str]] = None) -> Dict:
    """Seconds of each shift and data-movement op (``ops``: only those names; default all), forward and forward +
    backward, per shape of ``SHAPES``."""
    results = {}
    for name, (channels, heads, side) in SHAPES.items():
        # the shifts alone, on windowed tokens
        windows = (side // 7) ** 2
        x = torch.randn(batch, frames, windows, 49, channels, device=device, dtype=dtype, requires_grad=True)
        grad = torch.randn_like(x)
        # the block's own data movement, on the maps: timm's 2D roll + partition copy vs our one permutation, with and
        # without a shift folded in
        maps = torch.randn(batch, frames, side, side, channels, device=device, dtype=dtype, requires_grad=True)
        map_grad = torch.randn(batch, frames * side * side, channels, device=device, dtype=dtype)
        plain = window_token_index(frames, (side, side), (7, 7), (3, 3), False, device=device)
        shifted = window_token_index(frames, (side, side), (7, 7), (3, 3), True, device=device)
        unshifted = window_token_index(frames, (side, side), (7, 7), window_major=True, device=device)

        def partition_2d(t):
            t = torch.roll(t.flatten(0, 1), (-3, -3), (1, 2))
            return timm_window_partition(t, (7, 7)).reshape(batch, -1, channels)

        token_ops = {
            'patch fused': lambda t: patch_shift(t, (7, 7)),
            'patch reference': lambda t: patch_shift_reference(t, (7, 7)),
            'channel fused': lambda t: channel_shift(t, heads),
            'channel reference': lambda t: channel_shift_reference(t, heads),
            'copy': lambda t: t.clone(),
        }
        map_ops = {
            'partition 2D': partition_2d,
            'partition': lambda t: permute_rows(t, plain.partition, plain.reverse),
            'partition+patch shift': lambda t: permute_rows(t, shifted.partition, shifted.reverse),
            'unshifted partition': lambda t: permute_rows(t, unshifted.partition, unshifted.reverse),
            'unshifted partition+channel shift':
                lambda t: partition_channel_shift(t, unshifted.partition, unshifted.reverse, (7, 7), heads),
            'channel shift, then unshifted partition':
                lambda t: permute_rows(channel_shift(t, heads), unshifted.partition, unshifted.reverse),
        }
        runs = {}
        for named_ops, inputs, out_grad in ((token_ops, x, grad), (map_ops, maps, map_grad)):
            for op_name, op in named_ops.items():
                if ops is not None and op_name not in ops:
                    continue
                if compile_:  # each op as inductor compiles it (the references too: the fused-vs-compiled question)
                    op = torch.compile(op, dynamic=False)
                runs[f'{op_name} fwd'] = _forward(op, inputs)
                runs[f'{op_name} fwd+bwd'] = _forward_backward(op, inputs, out_grad)
        results[name] = timeit_interleaved(runs, device, reps)
    return results


def attention_kernels(run: Callable, device: str) -> str:
    """The attention ops that one call of ``run`` dispatches to, as torch.profiler names them."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == 'cuda' else [])
    with profile(activities=activities) as prof:
        run()
    names = sorted({e.key.removeprefix('aten::') for e in prof.key_averages()
                    if e.key.startswith('aten::_') and 'attention' in e.key})
    return ', '.join(names) or 'explicit softmax (no SDPA op)'


def bench_attention(device: str, reps: int, dtype: torch.dtype, frames: int = 16, batch: int = 8) -> Dict:
    """Window attention of TPS-Swin-T stages 1 and 3 on ``batch`` clips, as the blocks call it, forward + backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from tps_timm.tps_swin import WindowAttention, relative_position_index, shifted_window_mask
    backends = {'flash': SDPBackend.FLASH_ATTENTION, 'efficient': SDPBackend.EFFICIENT_ATTENTION,
                'cudnn': SDPBackend.CUDNN_ATTENTION, 'math': SDPBackend.MATH}
    results = {}
    for stage in ('tiny stage1', 'tiny stage3'):
        channels, heads, side = SHAPES[stage]
        num_windows = (side // 7) ** 2
        attn = WindowAttention(channels, heads).to(device, dtype)
        for shifted in (False, True):
            # unshifted blocks: runs of D windows sharing a (D * heads) bias; shifted: runs of D * nW with the mask
            bias_index = relative_position_index(frames, (7, 7), (16, 7, 7), 'patch' if shifted else 'channel',
                                                 device)
            mask = shifted_window_mask((side, side), (7, 7), (3, 3), device) if shifted else None
            runs = (batch, frames * num_windows) if shifted else (batch * num_windows, frames)
            x = torch.randn(*runs, 49, channels, device=device, dtype=dtype, requires_grad=True)
            grad = torch.randn(x.numel() // channels, channels, device=device, dtype=dtype)

            def op(t: torch.Tensor, bias_index=bias_index, mask=mask) -> torch.Tensor:
                return attn(t, attn.attn_bias(bias_index, mask, num_windows))

            run, infer = _forward_backward(op, x, grad), _forward(op, x)
            row = {'inference kernels': attention_kernels(infer, device),
                   'default kernels': attention_kernels(run, device), 'default': timeit(run, device, reps)}
            if 'scaled_dot_product' in row['default kernels']:  # the block calls SDPA here: try each backend
                for name, backend in backends.items():
                    try:
                        with sdpa_kernel([backend]):
                            row[name] = timeit(run, device, reps)
                    except RuntimeError as error:  # this backend cannot run this call
                        row[name] = str(error).splitlines()[0][:80]
            row['inference'] = timeit(infer, device, reps)
            attn.fused_attn = False
            row['explicit softmax'] = timeit(run, device, reps)
            row['inference, explicit softmax'] = timeit(infer, device, reps)
            attn.fused_attn = True
            results[f"{stage} {'shifted' if shifted else 'unshifted'}"] = row
    return results


def peak_rss_bytes() -> int:
    """Peak resident memory of this process. Linux's VmHWM, since ``ru_maxrss`` keeps the parent's peak through the
    fork and exec that started this worker."""
    try:
        with open('/proc/self/status') as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM:'))
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _model_worker(spec: str) -> None:
    """Run one model measurement in this process and print JSON (fresh process: clean peak memory)."""
    cfg = json.loads(spec)
    device, kind, train = cfg['device'], cfg['model'], cfg['train']
    torch.manual_seed(0)
    frames, size, batch = cfg['frames'], cfg['size'], cfg.get('batch', 1)
    if kind == 'swin2d':
        import timm
        model = timm.create_model('swin_tiny_patch4_window7_224', num_classes=400, img_size=size)
        x = torch.randn(batch * frames // 2, 3, size, size)
    elif kind == 'vit2d':  # ViT-B on the frames TPS-ViT-B sees (one per tubelet of 2)
        import timm
        model = timm.create_model('vit_base_patch16_224', num_classes=400, img_size=size)
        x = torch.randn(batch * frames // 2, 3, size, size)
    elif kind == 'tps vit':
        import timm
        model = timm.create_model('tps_vit_base_patch16_224', num_classes=400, img_size=size, num_frames=frames)
        x = torch.randn(batch, 3, frames, size, size)
    elif kind == 'swin3d_t':
        import torchvision
        model = torchvision.models.video.swin3d_t(num_classes=400)
        x = torch.randn(batch, 3, frames, size, size)
    else:
        import timm
        model = timm.create_model('tps_swin_base' if kind == 'tps base' else 'tps_swin_tiny', num_classes=400,
                                  **cfg.get('model_kwargs', {}))
        if kind == 'tps eager':
            use_literal_shifts(model)
        x = torch.randn(batch, 3, frames, size, size)
    model, x = model.to(device), x.to(device)
    autocast = torch.autocast(device, dtype=getattr(torch, cfg['dtype']), enabled=cfg['dtype'] != 'float32')
    result = {}
    if cfg.get('flops'):  # before any compilation: the counter sees the eager ops
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode
        model.eval()
        # the math backend decomposes SDPA into matmuls that the counter sees (it knows no fused CPU kernel)
        with torch.no_grad(), autocast, sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x)
        result['forward_flops'] = counter.get_total_flops()
    if cfg['compile']:
        from tps_timm.compilation import compile_model
        model = compile_model(model, cfg['compile'], backend=cfg.get('backend', 'inductor'))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.zeros(x.shape[0], dtype=torch.long, device=device)

    def step():
        if train:
            model.train()
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.no_grad(), autocast:
                model(x)

    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    step_times = times(step, device, cfg['reps'], warmup=1)
    peak = torch.cuda.max_memory_allocated() if device == 'cuda' else peak_rss_bytes()
    result.update(seconds=statistics.median(step_times), times=step_times, peak_bytes=peak)
    if train and cfg.get('saved') and not cfg['compile']:  # the hooks see the eager graph only
        with autocast:
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


def use_literal_shifts(model: torch.nn.Module) -> int:
    """Swap every block's attention branch for the plain one of tests/reference.py (pad, roll, view/permute
    partition, per-tile rolls) around the same SDPA attention: the eager shifts as the authors write them.
    Returns the number of blocks swapped; a model with none is an error (the baseline would be the model itself)."""
    import types

    from tps_timm.tps_swin import TpsSwinTransformerBlock
    from reference import reference_attn_branch
    swapped = 0
    for module in model.modules():
        if isinstance(module, TpsSwinTransformerBlock):
            module._attn = types.MethodType(
                lambda self, x: reference_attn_branch(self, x, model_attention=True, normed=True), module)
            swapped += 1
    if not swapped:
        raise ValueError(f'{type(model).__name__} has no TPS-Swin blocks to give the literal shifts')
    return swapped


def run_worker(env: Dict[str, str] = WORKER_ENV, **cfg) -> Dict:
    """One model measurement in a fresh subprocess (clean peak memory); its JSON result."""
    proc = subprocess.run([sys.executable, __file__, '--worker', json.dumps(cfg)], capture_output=True, text=True,
                          env=env)
    if proc.returncode:
        raise RuntimeError(f"{cfg['model']}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def bench_models(device: str, reps: int, rounds: int, compile_: Optional[str], dtype: str, frames: int,
                 size: int) -> Dict:
    """Each model in a fresh process, all of them in turn for ``rounds`` rounds of ``reps`` steps, so that a slow spell
    of the machine weighs on every model alike; medians over all rounds, peaks the highest of any round."""
    runs = {}
    for round_ in range(rounds):
        for kind in ('swin2d', 'tps', 'tps eager', 'swin3d_t'):
            for train in (False, True):
                result = run_worker(device=device, model=kind, train=train, reps=reps, compile=compile_, dtype=dtype,
                                    frames=frames, size=size, saved=round_ == 0)
                runs.setdefault(f"{kind} {'train step' if train else 'inference'}", []).append(result)
    results = {}
    for name, rounds_run in runs.items():
        step_times = [t for r in rounds_run for t in r['times']]
        results[name] = dict(rounds_run[0], seconds=statistics.median(step_times), times=step_times,
                             peak_bytes=max(r['peak_bytes'] for r in rounds_run))
    return results


def vit_costs(sizes=('small', 'base', 'large'), clips=(16, 32), img_size: int = 224) -> Dict:
    """Parameters and forward MACs of TPS-ViT-S/B/L (tubelets of 2) at 16 and 32 frames, and of the 2D ViT on the
    same frames (one per tubelet): what the shifts add to the image model's compute."""
    import timm
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    results = {}
    for size in sizes:
        video = timm.create_model(f'tps_vit_{size}_patch16_224', num_classes=400).eval()
        image = timm.create_model(f'vit_{size}_patch16_224', num_classes=400).eval()
        row = dict(params=sum(p.numel() for p in video.parameters()))
        for frames in clips:
            macs = []
            for model, x in ((video, torch.randn(1, 3, frames, img_size, img_size)),
                             (image, torch.randn(frames // 2, 3, img_size, img_size))):
                with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                    model(x)
                macs.append(counter.get_total_flops() / 2)
            row[f'{frames}x{img_size}'] = dict(macs=macs[0], macs_2d=macs[1])
        results[f'tps_vit_{size}_patch16_224'] = row
    return results


def bench_vit(device: str, reps: int, rounds: int, dtype: str, frames: int, size: int) -> Dict:
    """TPS-ViT-B training step vs timm's ViT-B on the same frames (time, peak memory), and the cost table."""
    runs = {}
    for _ in range(rounds):
        for kind in ('vit2d', 'tps vit'):
            runs.setdefault(kind, []).append(run_worker(device=device, model=kind, train=True, reps=reps, compile=None,
                                                        dtype=dtype, frames=frames, size=size))
    steps = {kind: dict(seconds=statistics.median([t for r in rs for t in r['times']]),
                        peak_bytes=max(r['peak_bytes'] for r in rs)) for kind, rs in runs.items()}
    return dict(steps=steps, costs=vit_costs())


def print_vit(vit: Dict, frames: int, size: int) -> None:
    print(f'\n## TPS-ViT: training step on one {frames}x{size} clip (tubelets of 2) vs ViT-B on its {frames // 2} '
          f'frames; params and MACs')
    floor, ours = vit['steps']['vit2d'], vit['steps']['tps vit']
    print(f"step {ours['seconds']:.3f} s vs {floor['seconds']:.3f} s ({ours['seconds'] / floor['seconds']:.2f}x); "
          f"peak {ours['peak_bytes'] / 2 ** 30:.2f} vs {floor['peak_bytes'] / 2 ** 30:.2f} GiB "
          f"({ours['peak_bytes'] / floor['peak_bytes']:.2f}x)")
    for name, row in vit['costs'].items():
        clips = ', '.join(f"{clip}: {r['macs'] / 1e9:.1f} G MACs ({r['macs'] / r['macs_2d']:.3f}x 2D)"
                          for clip, r in row.items() if clip != 'params')
        print(f"{name:28} {row['params'] / 1e6:7.2f} M params; {clips}")


COMPILE_MODELS = {  # size: (2D timm Swin, TPS-Swin)
    'tiny': ('swin_tiny_patch4_window7_224', 'tps_swin_tiny'),
    'base': ('swin_base_patch4_window7_224', 'tps_swin_base'),
}


def _compile_worker(spec: str) -> None:
    """Compile one model in this fresh process (its own inductor cache dir, set by the parent) and time each phase:
    the cold first training step, evaluation, training again, another batch size (or the ``phases`` the spec names);
    graphs and recompiles per phase. The spec may also give ``model_kwargs`` (both models) and a compile ``backend``."""
    import timm
    from torch._dynamo.utils import counters

    from tps_timm.compilation import compile_model
    cfg = json.loads(spec)
    device, frames, size, batch = cfg['device'], cfg['frames'], cfg['size'], cfg['batch']
    name_2d, name_tps = COMPILE_MODELS[cfg['size_name']]
    kwargs = cfg.get('model_kwargs', {})
    if cfg['model'] == 'swin2d':
        create = lambda: timm.create_model(name_2d, num_classes=400, img_size=size, **kwargs)
        clips = lambda b: torch.randn(b * frames // 2, 3, size, size, device=device)  # the same frames as images
    else:
        create = lambda: timm.create_model(name_tps, num_classes=400, img_size=size, num_frames=frames, **kwargs)
        clips = lambda b: torch.randn(b, 3, frames, size, size, device=device)
    torch.manual_seed(0)
    model = create().to(device)
    warm = cfg['warm']  # the parent gives the warm run the cold run's inductor cache folder
    compiled = compile_model(model, cfg['mode'], backend=cfg.get('backend', 'inductor'))
    autocast = torch.autocast(device, dtype=getattr(torch, cfg['dtype']), enabled=cfg['dtype'] != 'float32')

    def train_step(net, x):
        net.train()
        with autocast:
            loss = net(x).float().square().mean()
        loss.backward()

    def infer(net, x):
        net.eval()
        with torch.no_grad(), autocast:
            net(x)

    def graphs() -> int:
        return counters['stats']['unique_graphs']

    x = clips(batch)
    phases = {}
    for phase, fn, inputs in (('first train step', train_step, x), ('eval', infer, x), ('train again', train_step, x),
                              ('another batch size', train_step, None)):
        if phase not in cfg.get('phases', (phase,)):
            continue
        inputs = clips(batch + 1) if inputs is None else inputs
        before = graphs()
        phases[phase] = dict(seconds=_timed(lambda: fn(compiled, inputs), device), new_graphs=graphs() - before)
        print(f"{cfg['model']} {cfg['mode']}: {phase} {phases[phase]}", file=sys.stderr, flush=True)
    result = dict(phases=phases, warm=bool(warm), graph_breaks=sum(counters['graph_break'].values()))
    if not warm:  # compiled vs eager step time, once per model and mode
        torch.manual_seed(0)
        eager = create().to(device)  # regional compilation compiles the blocks of `model` in place
        result['compiled_step'] = timeit(lambda: train_step(compiled, x), device, cfg['reps'], warmup=1)
        result['eager_step'] = timeit(lambda: train_step(eager, x), device, cfg['reps'], warmup=1)
    print(json.dumps(result))


def bench_compile(device: str, reps: int, dtype: str, size_name: str, batch: int, frames: int, size: int) -> Dict:
    """Cold and warm compile of a training step, ours vs timm's 2D Swin on the same frames, per compile mode; each
    measurement in a fresh process, the cold one with an empty inductor cache folder, the warm one with that folder
    (as train.py's OUTPUT/compile_cache serves a resumed run)."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ('regional', 'model'):
            for model in ('swin2d', 'tps'):
                cfg = dict(part='compile', device=device, model=model, mode=mode, size_name=size_name, batch=batch,
                           frames=frames, size=size, dtype=dtype, reps=reps)
                env = dict(WORKER_ENV, TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(dir=tmp))
                for run in ('cold', 'warm'):
                    results[f'{model} {mode} {run}'] = run_worker(env=env, **cfg, warm=run == 'warm')
    return results


def bench_export(sizes=('tiny', 'small', 'base'), clips=((32, 224), (8, 112))) -> Dict:
    """ONNX export of each model at each clip shape with a dynamic batch: onnxruntime (CPU) vs eager PyTorch logits
    at batch 1 and 3 from the same file, the latency ratio, and the export time."""
    import timm

    from tps_timm.export import check_parity, export_model
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            torch.manual_seed(0)
            model = timm.create_model(f'tps_swin_{size}', num_classes=400).eval()
            for frames, img in clips:
                start = time.perf_counter()
                path, _ = export_model(model, os.path.join(tmp, f'{size}.onnx'), 'onnx', frames, img,
                                       dynamic_batch=True)
                seconds = time.perf_counter() - start
                parity = check_parity(path, model, 'onnx', features=False, batch_sizes=(1, 3))
                results[f'tps_swin_{size} {frames}x{img}'] = dict(parity, export_seconds=seconds,
                                                                  file_mb=os.path.getsize(path) / 2 ** 20)
    return results


def print_export(exported: Dict) -> None:
    print('\n## ONNX export, dynamic batch: onnxruntime (CPU) vs eager PyTorch')
    print(f"{'model':28} {'max |diff| (b1, b3)':>20} {'ort / eager':>12} {'export s':>9} {'MB':>7}")
    for name, r in exported.items():
        print(f"{name:28} {r['max_abs_diff']:20.2e} {r['latency_ratio']:12.2f} {r['export_seconds']:9.1f} "
              f"{r['file_mb']:7.1f}")


# dense bfloat16 tensor-core peaks from the vendor's data sheets, TFLOP/s, by a part of the device name
DENSE_BF16_PEAK_TFLOPS = {'H100 80GB HBM3': 989.4, 'H100 SXM': 989.4, 'H100 PCIe': 756.5, 'H100 NVL': 835.5,
                          'H200': 989.4, 'A100': 312.0}


def dense_peak_tflops(device_name: str, dtype: str) -> Optional[float]:
    """The data-sheet dense bfloat16 peak of a known GPU by its name, for bfloat16 runs; None otherwise."""
    return next((tflops for key, tflops in DENSE_BF16_PEAK_TFLOPS.items() if key in device_name), None) \
        if dtype == 'bfloat16' else None


def matmul_tflops(device: str, dtype: torch.dtype, reps: int) -> float:
    """What a large square matrix product reaches here: the practical peak that model FLOPs are compared with."""
    n = 8192 if device == 'cuda' else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n ** 3 / timeit(lambda: a @ b, device, reps) / 1e12


def bench_base(device: str, reps: int, compile_: Optional[str], dtype: str, batch: int, frames: int, size: int,
               peak_tflops: float, env: Dict[str, str] = WORKER_ENV, **worker_cfg) -> Dict:
    """TPS-Swin-B training step: clips/s and model-FLOPs utilisation (3x the forward FLOPs per step). ``env``: the
    worker's environment (e.g. an inductor cache folder); ``worker_cfg``: more of its spec (``model_kwargs``,
    ``backend``)."""
    step = run_worker(env=env, device=device, model='tps base', train=True, reps=reps, compile=compile_, dtype=dtype,
                      frames=frames, size=size, batch=batch, flops=True, **worker_cfg)
    achieved = 3 * step['forward_flops'] / step['seconds'] / 1e12
    matmul = matmul_tflops(device, getattr(torch, dtype), reps)
    result = dict(step, batch=batch, clips_per_s=batch / step['seconds'], achieved_tflops=achieved,
                  matmul_tflops=matmul, mfu_of_matmul=achieved / matmul)
    if peak_tflops:
        result.update(peak_tflops=peak_tflops, mfu=achieved / peak_tflops)
    return result


def _loading_sources(folder: str, count: int = 4) -> Dict[str, List[str]]:
    """Kinetics-like (640x360 h264, 10 s at 25 fps, one keyframe) and SSv2-like (428x240 VP9 webm, 4 s at 12 fps)
    videos of textured moving content, and their ``prepare``d copies (short side 256, keyframe every 16 frames)."""
    import numpy as np

    from tps_timm.data import render_clip, write_video
    from tps_timm.data.prepare import encode_video
    rng = np.random.default_rng(0)
    # smooth coloured texture: ~375 kb/s for the 640x360 h264, a typical Kinetics bitrate (pure noise doubles the
    # bitrate of either size and makes decoding entropy-bound)
    low = torch.from_numpy(rng.integers(0, 256, (1, 3, 45, 80)).astype(np.float32))
    texture = torch.nn.functional.interpolate(low, size=(720, 1280), mode='bicubic').clamp(0, 255).byte()
    texture = texture[0].permute(1, 2, 0).numpy()
    sources = {'k400': [], 'ssv2': []}
    for i in range(count):
        for name, (frames, height, width, fps, codec, ext, gop) in dict(
                k400=(250, 360, 640, 25, 'libx264', 'mp4', 250), ssv2=(48, 240, 428, 12, 'libvpx-vp9', 'webm', None)
        ).items():
            shapes = render_clip(i % 8, 25, height, rng)  # moving shapes (25 frames, cycled) over moving texture
            shapes = np.tile(shapes, (1, 1, width // height + 1, 1))[:, :, :width]
            clip = np.stack([texture[t * 3 % 360:][:height, t * 2:][:, :width] // 2 + shapes[t % 25] // 2
                             for t in range(frames)])
            path = os.path.join(folder, f'{name}_{i}.{ext}')
            options = {'crf': '23', 'preset': 'veryfast'} if codec == 'libx264' else {'deadline': 'realtime',
                                                                                    'cpu-used': '8'}
            write_video(path, clip, fps=fps, codec=codec, gop=gop, options=options)
            sources[name].append(path)
    for name in ('k400', 'ssv2'):
        sources[f'{name} prepared'] = []
        for path in sources[name]:
            prepared = os.path.join(folder, 'prepared', os.path.splitext(os.path.basename(path))[0] + '.mp4')
            encode_video(path, prepared, short_side=256, gop=16)
            sources[f'{name} prepared'].append(prepared)
    return sources


def bench_loading(reps: int) -> Dict:
    """One loader worker (one thread), in this process: the recipes' training items against bare decord decoding of
    the same frames, interleaved round by round. Clips/s per configuration and the ratios the targets name."""
    import random as py_random

    import numpy as np

    from tps_timm.data import ClipRandAugment, ClipSampler, ClipTrainTransform, VideoDataset, VideoList, \
        default_backend, rand_augment_hparams
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    aa = 'rand-m7-n4-mstd0.5-inc1'
    samplers = dict(k400=ClipSampler(32, 2, 1, 'dense'), ssv2=ClipSampler(32, 2, 1, 'uniform'))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sources = _loading_sources(tmp)
            import decord  # after the encoding: with decord's FFmpeg loaded first, PyAV's VP9 encoder fails to open

            def dataset(source: str, rand_augment: Optional[str] = None, repeated_aug: int = 1,
                        backend: Optional[str] = None) -> VideoDataset:
                return VideoDataset(VideoList([(p, 0) for p in sources[source]]), samplers[source.split()[0]],
                                    ClipTrainTransform(224, 256, rand_augment=rand_augment), train=True,
                                    backend=backend, repeated_aug=repeated_aug)

            def bare(source: str) -> Callable:
                sampler = samplers[source.split()[0]]

                def load(index: int, seed: int) -> int:
                    reader = decord.VideoReader(sources[source][index], num_threads=1)
                    indices = sampler(len(reader), True, np.random.default_rng(seed))
                    reader.get_batch(indices.reshape(-1).tolist()).asnumpy()
                    return 1
                return load

            def items(ds: VideoDataset) -> Callable:
                return lambda index, seed: (ds[(index, seed)], ds.repeated_aug)[1]

            ra = ClipRandAugment(aa, rand_augment_hparams(224), pillow_on_cpu=False)
            clip = torch.randint(0, 256, (32, 224, 224, 3), dtype=torch.uint8).permute(0, 3, 1, 2)  # as decoded
            configs = {
                'K400 bare decord': bare('k400'),
                'K400 recipe': items(dataset('k400')),
                'K400 recipe, decord': items(dataset('k400', backend='decord')),
                'K400 recipe, repeated-aug 2': items(dataset('k400', repeated_aug=2)),
                'K400 recipe, prepared': items(dataset('k400 prepared')),
                'SSv2 bare decord': bare('ssv2'),
                'SSv2 recipe, RandAugment in worker': items(dataset('ssv2', aa)),
                'SSv2 recipe, RandAugment on batch': items(dataset('ssv2')),
                'SSv2 recipe, RandAugment on batch, decord': items(dataset('ssv2', backend='decord')),
                'SSv2 recipe, prepared, RA on batch': items(dataset('ssv2 prepared')),
                'SSv2 recipe, prepared, RA in worker': items(dataset('ssv2 prepared', aa)),
                # as --aa-on-batch runs it (the tensor ops), here on the CPU
                'RandAugment, tensor ops on one clip (CPU)': lambda index, seed: (
                    ra.apply(clip, ra.draw(py_random.Random(seed))), 1)[1],
            }
            seconds = {name: 0.0 for name in configs}
            clips = {name: 0 for name in configs}
            for name, fn in configs.items():  # warm-up: first opens, imports
                fn(0, 0)
            for rep in range(reps):
                for name, fn in configs.items():
                    for index in range(len(sources['k400'])):
                        start = time.perf_counter()
                        clips[name] += fn(index, rep * 100 + index)
                        seconds[name] += time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    rates = {name: clips[name] / seconds[name] for name in configs}
    if torch.cuda.is_available():  # --aa-on-batch where it runs: a batch of 8 clips on the GPU
        batch = torch.randint(0, 256, (8, 3, 32, 224, 224), dtype=torch.uint8, device='cuda')
        ms = [1e3 * _timed(lambda: ra.augment_batch(batch, py_random.Random(rep)), 'cuda') for rep in range(10)]
        rates['RandAugment on the batch, CUDA (clips/s)'] = 8e3 / statistics.median(ms[2:])
    return dict(backend=default_backend(), clips_per_s=rates, ratios={
        'K400 recipe / bare decord (target >= 0.85)': rates['K400 recipe'] / rates['K400 bare decord'],
        'SSv2 recipe, RA in worker / bare decord':
            rates['SSv2 recipe, RandAugment in worker'] / rates['SSv2 bare decord'],
        'SSv2 recipe, RA on batch / bare decord (target >= 0.8)':
            rates['SSv2 recipe, RandAugment on batch'] / rates['SSv2 bare decord'],
        'K400 recipe with decord / bare decord': rates['K400 recipe, decord'] / rates['K400 bare decord'],
        'SSv2 recipe with decord, RA on batch / bare decord':
            rates['SSv2 recipe, RandAugment on batch, decord'] / rates['SSv2 bare decord'],
        'K400 repeated-aug 2 / 1 (target >= 1.5)': rates['K400 recipe, repeated-aug 2'] / rates['K400 recipe'],
        'K400 prepared / originals (target >= 2)': rates['K400 recipe, prepared'] / rates['K400 recipe'],
    })


def _as_list_and_shards(paths: List[str], folder: str, repeat: int, per_shard: int):
    """The same videos (each ``repeat`` times) as a list and as WebDataset shards of ``per_shard`` (their bytes as
    they are, one ``.cls`` each, as ``prepare --format wds --copy`` writes them), with ``_info.json``."""
    from webdataset import TarWriter

    from tps_timm.data import VideoList, open_shards
    from tps_timm.data.shards import write_info
    samples = [(path, i % 8) for i, path in enumerate(paths * repeat)]
    lengths = {}
    for j in range(0, len(samples), per_shard):
        name = f'train-{j // per_shard:06d}.tar'
        with open(os.path.join(folder, name), 'wb') as f, TarWriter(f, encoder=False) as writer:
            for n, (path, label) in enumerate(samples[j:j + per_shard], j):
                writer.write({'__key__': f'{n:06d}', 'mp4': Path(path).read_bytes(), 'cls': str(label).encode()})
        lengths[name] = len(samples[j:j + per_shard])
    write_info(folder, 'train', lengths)
    return VideoList(samples), open_shards(f'wds/{folder}')


def bench_sources(reps: int) -> Dict:
    """The training loader with one worker on prepared videos read as a list of files and as WebDataset shards of
    the same bytes (K400 and SSv2 recipes, --repeated-aug 1 and 2), epochs interleaved; and embed / predict on the
    demo set in one and two CPU processes (one thread each)."""
    from tps_timm.clip import ClipConfig
    from tps_timm.data import build_train_loader
    clips = dict(k400=ClipConfig(num_frames=32, frame_interval=2, sampling='dense', img_size=224, short_side=256),
                 ssv2=ClipConfig(num_frames=32, frame_interval=2, sampling='uniform', img_size=224, short_side=256))
    seconds: Dict[str, float] = {}
    counts: Dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = _loading_sources(tmp)
        loaders = {}
        for kind in ('k400', 'ssv2'):
            folder = os.path.join(tmp, f'{kind}_shards')
            os.makedirs(folder)
            videos, shards = _as_list_and_shards(sources[f'{kind} prepared'], folder, repeat=12, per_shard=4)
            for ra in (1, 2):
                for name, source in (('list', videos), ('wds', shards)):
                    loaders[f'{kind.upper()} {name}, repeated-aug {ra}'] = build_train_loader(
                        source, clips[kind], 4, repeated_aug=ra, workers=1, shuffle_buffer=256, seed=0)
        for rep in range(reps + 1):  # epoch 0 warms up; list or shards first by turns
            for name, loader in sorted(loaders.items(), key=lambda item: (item[0].split()[0], item[0].split()[-1],
                                                                          ('list' in item[0]) == rep % 2)):
                (loader.dataset if hasattr(loader.dataset, 'set_epoch') else loader.sampler).set_epoch(rep)
                start = time.perf_counter()
                count = sum(len(batch[0]) for batch in loader)
                if rep:
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                    counts[name] = counts.get(name, 0) + count
    rates = {name: counts[name] / seconds[name] for name in loaders}
    ratios = {f'{kind} wds / list, repeated-aug {ra} (target >= 1.0)':
              rates[f'{kind} wds, repeated-aug {ra}'] / rates[f'{kind} list, repeated-aug {ra}']
              for kind in ('K400', 'SSV2') for ra in (1, 2)}
    ratios.update({f'{kind} {name} repeated-aug 2 / 1 (target >= 1.5)':
                   rates[f'{kind} {name}, repeated-aug 2'] / rates[f'{kind} {name}, repeated-aug 1']
                   for kind in ('K400', 'SSV2') for name in ('list', 'wds')})
    jobs = bench_batch_jobs()
    return dict(clips_per_s=rates, ratios={**ratios, **jobs['ratios']}, batch_jobs=jobs['videos_per_s'])


def bench_batch_jobs(videos: int = 160) -> Dict:
    """``embed`` and ``predict`` of the demo set's validation videos (the demo model's size, random weights) in one
    process and under torchrun with two, one thread each: videos/s as each reports it (the work, not the start)."""
    import re

    from tps_timm.data import make_demo_dataset
    model = ['--model', 'tps_swin_tiny', '--model-kwargs', 'embed_dim=32', 'depths=(2,2,2,2)', 'num_heads=(1,2,4,8)',
             'patch_size=(1,4,4)', '--num-frames', '8', '--sampling', 'uniform', '--img-size', '48',
             '--batch-size', '8']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        demo = make_demo_dataset(os.path.join(tmp, 'demo'), num_train=8, num_val=videos, progress=False)
        inputs = os.path.join(demo['root'], 'videos')
        for tool, extra in (('embed', ['--input', inputs, '--no-progress']), ('predict', [inputs])):
            for processes in (1, 2):
                launch = [sys.executable, '-m'] if processes == 1 else \
                    [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m']
                out = os.path.join(tmp, f'{tool}{processes}.{"npy" if tool == "embed" else "json"}')
                proc = subprocess.run([*launch, f'tps_timm.{tool}', *model, *extra, '--output', out],
                                      capture_output=True, text=True, env=env, timeout=900)
                if proc.returncode:
                    raise RuntimeError(f'{tool} in {processes} processes failed: {proc.stderr[-2000:]}')
                rates[f'{tool}, {processes} process{"es" if processes > 1 else ""}'] = float(
                    re.findall(r'([0-9.]+) videos/s', proc.stdout)[-1])
    return dict(videos_per_s=rates, ratios={f'{tool} 2 processes / 1': rates[f'{tool}, 2 processes'] /
                                            rates[f'{tool}, 1 process'] for tool in ('embed', 'predict')})


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


def print_attention(attention: Dict, dtype: str) -> None:
    print(f'\n## window attention with the TPS bias, {dtype}: ms forward + backward, or forward alone for inference '
          f'(a backend that cannot run the call says why)')
    for name, row in attention.items():
        print(f"{name:22} training runs: {row['default kernels']}; inference runs: {row['inference kernels']}")
        print(' ' * 22 + ''.join(f' {key} {value * 1e3:.2f}' if isinstance(value, float) else f' {key}: {value}'
                                 for key, value in row.items() if not key.endswith('kernels')))


def print_base(base: Dict, frames: int, size: int, dtype: str) -> None:
    print(f"\n## TPS-Swin-B training step, {base['batch']} clips of {frames}x{size}, {dtype}")
    peak = f", {base['mfu']:.1%} of the {base['peak_tflops']:.0f} TFLOP/s dense peak" if 'mfu' in base else ''
    print(f"{base['clips_per_s']:.2f} clips/s, {base['seconds']:.3f} s/step, {base['peak_bytes'] / 2 ** 30:.2f} GiB "
          f"peak; {base['achieved_tflops']:.3g} model TFLOP/s{peak}, {base['mfu_of_matmul']:.1%} of the "
          f"{base['matmul_tflops']:.3g} TFLOP/s a large matrix product reaches here")


def print_compile(compiled: Dict, size_name: str, batch: int, frames: int, size: int, dtype: str) -> None:
    print(f'\n## torch.compile of a {size_name} training step, {batch} clip(s) of {frames}x{size}, {dtype} '
          f'(2D Swin on the same frames); seconds, and graphs compiled in that phase')
    phases = ('first train step', 'eval', 'train again', 'another batch size')
    print(f"{'model':28}" + ''.join(f' {p:>20}' for p in phases) + f" {'breaks':>7} {'cold / 2D':>10} {'step c/e':>9}")
    for name, r in compiled.items():
        model, mode, run = name.split()
        floor = compiled[f'swin2d {mode} {run}']['phases']['first train step']['seconds']
        first = r['phases']['first train step']['seconds']
        step = f"{r['compiled_step'] / r['eager_step']:9.2f}" if 'compiled_step' in r else ''
        print(f'{name:28}' + ''.join(f" {r['phases'][p]['seconds']:12.1f} ({r['phases'][p]['new_graphs']:2d} gr)"
                                     for p in phases) + f" {r['graph_breaks']:7d} {first / floor:10.2f} {step}")


PARTS = ('shifts', 'attention', 'models', 'base', 'loading', 'sources', 'compile', 'export', 'vit')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--compile', nargs='?', const='regional', default=None, choices=('regional', 'model'),
                        help='torch.compile the models of the models and base parts (default mode: regional) and '
                             'each op of the shifts part')
    parser.add_argument('--dtype', default=None, choices=('float32', 'bfloat16'),
                        help='bfloat16: models under autocast, shift and attention ops on bfloat16 tensors '
                             '(default: bfloat16 on CUDA, float32 on CPU)')
    parser.add_argument('--json', default=None, help='write all measurements to this file')
    parser.add_argument('--quick', action='store_true', help='fewer repetitions and a 16x112 clip for the models')
    parser.add_argument('--parts', default=','.join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument('--shift-batch', type=int, default=8,
                        help='clips per shift-op and attention call (default 8: the per-process batch of the recipes)')
    parser.add_argument('--base-batch', type=int, default=None,
                        help='clips per TPS-Swin-B training step (default: 8 on CUDA, 1 on CPU)')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='dense peak of the device for MFU (default: the data-sheet bfloat16 peak of known GPUs)')
    parser.add_argument('--rounds', type=int, default=3, help='rounds through all the models (default 3)')
    parser.add_argument('--compile-model', choices=sorted(COMPILE_MODELS), default=None,
                        help='model size of the compile part (default: base on CUDA at 16 x 32x224, tiny on CPU at '
                             '1 x 8x112)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as each part ends, also when piped
    if args.worker:
        return (_compile_worker if json.loads(args.worker).get('part') == 'compile' else _model_worker)(args.worker)
    parts = args.parts.split(',')
    if not set(parts) <= set(PARTS):
        parser.error(f'--parts: unknown {sorted(set(parts) - set(PARTS))}; choose from {",".join(PARTS)}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    dtype = args.dtype or ('bfloat16' if args.device == 'cuda' else 'float32')
    reps = 3 if args.quick else (5 if args.device == 'cpu' else 20)
    model_reps = 3 if args.quick or args.device == 'cpu' else 20  # per round
    frames, size = (16, 112) if args.quick else (32, 224)
    device_name = torch.cuda.get_device_name() if args.device == 'cuda' else f'CPU x{os.cpu_count()}'
    peak = args.peak_tflops or dense_peak_tflops(device_name, dtype)
    env = dict(device=device_name, torch=torch.__version__, date=time.strftime('%Y-%m-%d'), compile=args.compile,
               dtype=dtype, clip=f'{frames}x{size}', shift_batch=args.shift_batch)
    print(f"# {env['device']}, torch {env['torch']}, {env['date']}, compile={args.compile}, {dtype}", flush=True)
    results = dict(env=env)
    durations = dict(shifts='~1 min', attention='~1 min', models='~10 min on CPU', base='~2 min on CPU',
                     loading='~1 min', sources='~5 min', compile='~35 min on CPU', export='~10 min on CPU',
                     vit='~5 min on CPU')
    for part in parts:  # each part prints its table when done; say first what is coming
        print(f'# will measure {part} ({durations[part]}{", less with --quick" if args.quick else ""})', flush=True)
    if 'shifts' in parts:  # milliseconds each: more repetitions
        results['shifts'] = bench_shifts(args.device, reps * 4, getattr(torch, dtype), batch=args.shift_batch,
                                         compile_=bool(args.compile))
        print_shifts(results['shifts'], args.shift_batch)
    if 'attention' in parts:
        results['attention'] = bench_attention(args.device, reps * 4, getattr(torch, dtype), batch=args.shift_batch)
        print_attention(results['attention'], dtype)
    if 'models' in parts:
        results['models'] = bench_models(args.device, model_reps, args.rounds, args.compile, dtype, frames, size)
        print_models(results['models'], frames, size)
    if 'base' in parts:
        batch = args.base_batch or (8 if args.device == 'cuda' else 1)
        results['base'] = bench_base(args.device, reps, args.compile, dtype, batch, frames, size, peak)
        print_base(results['base'], frames, size, dtype)
    if 'loading' in parts:
        results['loading'] = bench_loading(max(reps, 3))
        print(f"\n## data loading: one worker (one thread), clips/s (default backend: {results['loading']['backend']})")
        for name, rate in results['loading']['clips_per_s'].items():
            print(f'{name:44} {rate:8.1f}')
        for name, ratio in results['loading']['ratios'].items():
            print(f'{name:56} {ratio:6.2f}x')
    if 'sources' in parts:
        results['sources'] = bench_sources(max(reps, 6))
        print('\n## data sources: the training loader, one worker, clips/s (prepared videos)')
        for name, rate in results['sources']['clips_per_s'].items():
            print(f'{name:44} {rate:8.1f}')
        print('## batch jobs on the demo set, videos/s (one thread per process)')
        for name, rate in results['sources']['batch_jobs'].items():
            print(f'{name:44} {rate:8.1f}')
        for name, ratio in results['sources']['ratios'].items():
            print(f'{name:56} {ratio:6.2f}x')
    if 'compile' in parts:
        size_name = args.compile_model or ('base' if args.device == 'cuda' else 'tiny')
        batch, frames, size = (16, 32, 224) if args.device == 'cuda' else (1, 8, 112)
        results['compile'] = bench_compile(args.device, reps, dtype, size_name, batch, frames, size)
        print_compile(results['compile'], size_name, batch, frames, size, dtype)
    if 'vit' in parts:
        vit_frames = 8 if args.quick else 16
        results['vit'] = bench_vit(args.device, model_reps, args.rounds, dtype, vit_frames, size)
        print_vit(results['vit'], vit_frames, size)
    if 'export' in parts:
        results['export'] = bench_export(('tiny',) if args.quick else ('tiny', 'small', 'base'))
        print_export(results['export'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
