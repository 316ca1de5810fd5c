#!/usr/bin/env python3
"""The one GPU check (issue 23): what to run first whenever a GPU machine is at hand; <= 6 minutes on one H100/H200.

    bash benchmarks/gpu_check.sh [--smoke] [--docs FILE] [--peak-tflops T] [--json OUT]

Sections, each figure printed as it is measured, with its target and PASS / FAIL where it has one:

1. CUDA tests: ``pytest tests/test_cuda.py`` (they skip without CUDA): passed / failed / skipped.
2. compile: cold regional ``torch.compile`` of a training step (the first one, a fresh inductor cache folder and a
   fresh process each), TPS-Swin-B vs timm's Swin-B on the same frames (targets: <= 120 s, <= 1.3x).
3. train step: TPS-Swin-B at 16 x 32x224, bf16 autocast, AdamW, eager and regionally compiled: seconds, clips/s and
   MFU (3x the forward FLOPs FlopCounterMode counts, against the dense peak; target >= 25% compiled).
4. shifts: each shift op forward + backward vs a plain copy of the same tensor (target <= 1.2x).
5. aa-on-batch: ``--aa-on-batch`` RandAugment (the SSv2 recipe's string) on a batch of 16 x 32x224 clips.
6. checkpoint: ``accelerator.save_state`` of a prepared model + AdamW (one recovery checkpoint) next to a training
   step of the same model: the demo model and TPS-Swin-B.
7. multi-GPU: with two GPUs, a few steps of train.py under DDP and under FSDP2 (``accelerate launch``); else skipped.

The measuring itself is benchmarks/bench.py's (its workers, timers, shapes). The figures are appended as a dated table
(device, torch version) to docs/benchmarks.md; ``--smoke`` (tiny sizes, CPU, seconds: the test keeps this script from
rotting) writes only to an explicit ``--docs FILE``. Exits 0 when targets are missed (a measurement), 1 when a section
crashed (the others still run and the table is still written).
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))  # tests/conftest.py's small TPS-Swin
SECTIONS = ('CUDA tests', 'compile', 'train step', 'shifts', 'aa-on-batch', 'checkpoint', 'multi-GPU')
FSDP2_CONFIG = ROOT / 'examples' / 'accelerate' / 'fsdp2.yaml'


@dataclass
class Sizes:
    """What each section runs: the real sizes on a GPU, tiny ones for ``--smoke``."""
    batch: int = 16
    frames: int = 32
    size: int = 224
    reps: int = 10
    model_kwargs: Dict = field(default_factory=dict)  # TPS-Swin-B's (and Swin-B's) arguments on top of the defaults
    compile_size: str = 'base'  # bench.COMPILE_MODELS key
    backend: str = 'inductor'
    shift_batch: int = 16
    shift_frames: int = 16  # 32 frames in tubelets of 2
    train_modes: tuple = ('eager', 'compiled')
    checkpoint_models: tuple = ('demo', 'TPS-Swin-B')
    demo_batch: Optional[int] = None  # None: hparams/demo.yaml's
    parallel: int = 1  # measurements at once (sequential on a GPU: they would skew each other)
    threads: Optional[int] = None  # CPU threads of this process and of each worker (None: torch's default)

    @classmethod
    def smoke(cls) -> 'Sizes':
        # the compiled step alone (its worker runs the eager path too), a batch of 2 for the demo model's step
        return cls(batch=2, frames=8, size=32, reps=1, model_kwargs=dict(SMALL), compile_size='tiny', backend='eager',
                   shift_batch=1, shift_frames=2, train_modes=('compiled',), checkpoint_models=('demo',),
                   demo_batch=2, parallel=2, threads=1)

    def worker_env(self, **extra: str) -> Dict[str, str]:
        """bench.py's worker environment, with ``threads`` (OpenMP threads spinning on shared cores crawl)."""
        return dict(bench.WORKER_ENV, **({'OMP_NUM_THREADS': str(self.threads)} if self.threads else {}), **extra)


class Report:
    """The figures in the order measured: printed at once, kept for the table."""

    def __init__(self):
        self.rows: List[Dict] = []
        self.errors = 0

    def add(self, section: str, figure: str, value: str, target: Optional[str] = None,
            ok: Optional[bool] = None) -> None:
        result = '' if ok is None else ('PASS' if ok else 'FAIL')
        self.rows.append(dict(section=section, figure=figure, value=value, target=target or '', result=result))
        print(f'{figure}: {value}' + (f'  (target {target}: {result})' if target else ''), flush=True)

    def error(self, section: str, error: BaseException) -> None:
        traceback.print_exc()
        self.errors += 1
        first_line = (str(error).splitlines() or [''])[0][:160]
        self.add(section, 'crashed', f'{type(error).__name__}: {first_line}')


def _ratio(a: float, b: float) -> float:
    return a / b if b else float('inf')


def start_cuda_tests(env: Dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', 'pytest', 'tests/test_cuda.py', '-q', '-p', 'no:cacheprovider'],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def cuda_tests(report: Report, proc: subprocess.Popen, cuda: bool) -> None:
    out, _ = proc.communicate(timeout=900)
    summary = next((line for line in reversed(out.splitlines()) if re.search(r'\d+ (passed|failed|skipped)', line)),
                   '')
    if proc.returncode not in (0, 1) or not summary:  # 1: tests failed (a finding); anything else: pytest broke
        raise RuntimeError(f'pytest exited {proc.returncode}: {out[-2000:]}')
    if proc.returncode:
        print(out[-4000:])
    counts = {kind: 0 for kind in ('passed', 'failed', 'skipped', 'error')}
    counts.update({kind.rstrip('s'): int(n) for n, kind in re.findall(r'(\d+) (passed|failed|skipped|errors?)',
                                                                      summary)})
    bad = counts['failed'] + counts['error']
    report.add('CUDA tests', 'tests/test_cuda.py', ', '.join(f'{n} {kind}' for kind, n in counts.items()),
               'none failed' + (', some ran' if cuda else ' (all skip without CUDA)'),
               bad == 0 and (counts['passed'] > 0 or not cuda))


def compile_section(report: Report, s: Sizes, device: str, dtype: str, tmp: str, caches: Dict[str, str]) -> None:
    names = dict(zip(('swin2d', 'tps'), bench.COMPILE_MODELS[s.compile_size]))
    if s.backend != 'inductor':
        print(f'(backend {s.backend}: dynamo alone, not a compile-time figure)')

    def cold(model: str) -> Dict:
        caches[model] = tempfile.mkdtemp(dir=tmp, prefix=f'inductor_{model}_')
        env = s.worker_env(TORCHINDUCTOR_CACHE_DIR=caches[model])
        return bench.run_worker(env=env, part='compile', device=device, model=model, mode='regional',
                                size_name=s.compile_size, batch=s.batch, frames=s.frames, size=s.size, dtype=dtype,
                                reps=max(1, s.reps // 3), warm=False, phases=['first train step'],
                                model_kwargs=s.model_kwargs, backend=s.backend)

    with ThreadPoolExecutor(s.parallel) as pool:
        runs = dict(zip(names, pool.map(cold, names)))
    first = {model: r['phases']['first train step']['seconds'] for model, r in runs.items()}
    clip = f'{s.batch} x {s.frames}x{s.size}'
    report.add('compile', f"{names['swin2d']} cold regional compile, first train step ({clip})",
               f"{first['swin2d']:.1f} s")
    report.add('compile', f"{names['tps']} cold regional compile, first train step ({clip})", f"{first['tps']:.1f} s",
               '<= 120 s', first['tps'] <= 120)
    report.add('compile', 'TPS-Swin / Swin cold compile', f"{_ratio(first['tps'], first['swin2d']):.2f}x", '<= 1.3x',
               _ratio(first['tps'], first['swin2d']) <= 1.3)
    tps = runs['tps']
    report.add('compile', f"{names['tps']} graph breaks, graphs compiled",
               f"{tps['graph_breaks']}, {tps['phases']['first train step']['new_graphs']}")
    report.add('compile', f"{names['tps']} compiled / eager step (fwd + bwd, no optimizer)",
               f"{tps['compiled_step']:.3f} / {tps['eager_step']:.3f} s = "
               f"{_ratio(tps['compiled_step'], tps['eager_step']):.2f}x")


def measure_steps(s: Sizes, device: str, dtype: str, peak: Optional[float], caches: Dict[str, str]) -> Dict:
    """``bench.bench_base`` of the TPS-Swin-B training step in each of ``s.train_modes``, each in a fresh worker."""
    kwargs = dict(s.model_kwargs, img_size=s.size, num_frames=s.frames) if s.model_kwargs else {}
    # the compiled step starts from the compile section's inductor cache (the same blocks): warm, as a resumed run
    cache_env = s.worker_env(**({'TORCHINDUCTOR_CACHE_DIR': caches['tps']} if 'tps' in caches else {}))

    def measure(mode: str) -> Dict:
        compiled = mode == 'compiled'
        return bench.bench_base(device, s.reps, 'regional' if compiled else None, dtype, s.batch, s.frames, s.size,
                                peak, env=cache_env if compiled else s.worker_env(), model_kwargs=kwargs,
                                backend=s.backend)

    with ThreadPoolExecutor(s.parallel) as pool:
        return dict(zip(s.train_modes, pool.map(measure, s.train_modes)))


def train_step_section(report: Report, s: Sizes, dtype: str, measure: Callable[[], Dict], results: Dict) -> None:
    clip = f'{s.batch} x {s.frames}x{s.size}, {dtype}'
    steps = measure()
    for mode, r in steps.items():
        label = f'TPS-Swin-B train step, {mode} ({clip})'
        report.add('train step', label, f"{r['seconds']:.3f} s/step, {r['clips_per_s']:.2f} clips/s, "
                   f"{r['peak_bytes'] / 2 ** 30:.2f} GiB peak, {r['achieved_tflops']:.3g} model TFLOP/s")
        if 'mfu' in r:
            mfu, of = r['mfu'], f"the {r['peak_tflops']:.0f} TFLOP/s dense peak"
        else:  # no data-sheet peak for this device: the matrix product measured here stands in
            mfu, of = r['mfu_of_matmul'], f"a {r['matmul_tflops']:.3g} TFLOP/s matmul measured here (no --peak-tflops)"
        report.add('train step', f'MFU, {mode}, of {of}', f'{mfu:.1%}', '>= 25%' if mode == 'compiled' else None,
                   mfu >= 0.25 if mode == 'compiled' else None)
    if len(steps) == 2:
        speedup = _ratio(steps['compiled']['seconds'], steps['eager']['seconds'])
        report.add('train step', 'compiled / eager step', f'{speedup:.2f}x')
    results['steps'] = steps


def shifts_section(report: Report, s: Sizes, device: str, dtype: str) -> None:
    pairs = (('patch_shift', 'patch fused', 'copy'), ('channel_shift', 'channel fused', 'copy'),
             ('permutation + patch shift', 'partition+patch shift', 'partition'),
             ('partition_channel_shift', 'unshifted partition+channel shift', 'unshifted partition'))
    r = bench.bench_shifts(device, s.reps * 4, getattr(torch, dtype), frames=s.shift_frames, batch=s.shift_batch,
                           ops={name for _, op, floor in pairs for name in (op, floor)})
    for shape, times in r.items():
        for name, op, floor in pairs:
            ratio = _ratio(times[f'{op} fwd+bwd'], times[f'{floor} fwd+bwd'])
            report.add('shifts', f'{shape} ({s.shift_batch} x {s.shift_frames} frames, {dtype}): {name} / {floor}, '
                       f'fwd+bwd', f"{ratio:.2f}x ({times[f'{op} fwd+bwd'] * 1e3:.3g} ms)", '<= 1.2x', ratio <= 1.2)


def aa_section(report: Report, s: Sizes, device: str, results: Dict) -> None:
    from tps_timm.data import batch_rand_augment
    recipe = yaml.safe_load((ROOT / 'hparams' / 'sthv2.yaml').read_text())
    augment = batch_rand_augment(recipe['aa'], True, s.size)  # as train.py builds it for --aa-on-batch
    clips = torch.randint(0, 256, (s.batch, 3, s.frames, s.size, s.size), dtype=torch.uint8, device=device)
    rng = random.Random(0)  # a new draw each call: the median over the policy's ops
    seconds = bench.timeit(lambda: augment.augment_batch(clips, rng), device, max(s.reps, 3), warmup=1)
    report.add('aa-on-batch', f"RandAugment {recipe['aa']} on a {device} batch of {s.batch} x {s.frames}x{s.size}",
               f'{seconds * 1e3:.1f} ms/batch, {s.batch / seconds:.1f} clips/s')
    if 'steps' in results:
        step = results['steps']['compiled']['seconds']
        report.add('aa-on-batch', 'RandAugment batch / compiled TPS-Swin-B step', f'{_ratio(seconds, step):.1%}')


def _checkpoint_models(s: Sizes) -> Dict[str, tuple]:
    """Name: (a function that creates the model, the shape of its input batch), as ``s`` names them."""
    import timm

    from tps_timm.data import DEMO_CLASSES
    demo = yaml.safe_load((ROOT / 'hparams' / 'demo.yaml').read_text())
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in demo['model_kwargs'].items()}
    models = {'demo': (lambda: timm.create_model(demo['model'], num_classes=len(DEMO_CLASSES),
                                                 img_size=demo['img_size'], num_frames=demo['num_frames'], **kwargs),
                       (s.demo_batch or demo['batch_size'], 3, demo['num_frames'], demo['img_size'], demo['img_size'])),
              'TPS-Swin-B': (lambda: timm.create_model('tps_swin_base', num_classes=400),
                             (s.batch, 3, s.frames, s.size, s.size))}
    return {name: models[name] for name in s.checkpoint_models}


def _step_and_checkpoint(accelerator, model: torch.nn.Module, shape: tuple, device: str, reps: int,
                         folder: str) -> tuple:
    """Seconds of a training step of ``model`` (prepared with AdamW) and of one recovery checkpoint into ``folder``
    (train.py's atomic save: ``accelerator.save_state``, ``checkpoint.json``, the rename)."""
    from tps_timm.training import save_checkpoint_atomic
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    x = torch.randn(shape, device=accelerator.device)
    target = torch.zeros(shape[0], dtype=torch.long, device=accelerator.device)

    def step():
        model.train()
        with accelerator.autocast():
            loss = torch.nn.functional.cross_entropy(model(x), target)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step_s = bench.timeit(step, device, reps, warmup=1)
    save_s = bench.timeit(lambda: save_checkpoint_atomic(accelerator, os.path.dirname(folder),
                                                         os.path.basename(folder)), device, max(1, reps // 3), warmup=1)
    return step_s, save_s


def checkpoint_section(report: Report, s: Sizes, device: str, tmp: str) -> None:
    from accelerate import Accelerator
    accelerator = Accelerator(mixed_precision='bf16' if device == 'cuda' else 'no', cpu=device == 'cpu')
    for name, (create, shape) in _checkpoint_models(s).items():
        torch.manual_seed(0)
        model = create()
        params = sum(p.numel() for p in model.parameters())
        folder = os.path.join(tmp, f'checkpoint_{name}')
        step_s, save_s = _step_and_checkpoint(accelerator, model, shape, device, s.reps, folder)
        size = sum(f.stat().st_size for f in Path(folder).rglob('*') if f.is_file())
        clip = f'{shape[0]} x {shape[2]}x{shape[3]}'
        report.add('checkpoint', f'{name} ({params / 1e6:.1f} M params): train step ({clip}) vs '
                   f'a recovery checkpoint (model + AdamW, {size / 2 ** 20:.0f} MiB)',
                   f'{step_s:.3f} s/step vs {save_s:.3f} s/checkpoint = {_ratio(save_s, step_s):.1f} steps')
        del model
        accelerator.free_memory()
        if device == 'cuda':
            torch.cuda.empty_cache()


def multi_gpu_section(report: Report, gpus: int, tmp: str) -> None:
    demo = os.path.join(tmp, 'demo')
    train = [str(ROOT / 'train.py'), '--hparams', str(ROOT / 'hparams' / 'demo.yaml'), '--demo-data', demo,
             '--demo-train-videos', '64', '--demo-val-videos', '16', '--epochs', '1', '--no-progress',
             '--mixed-precision', 'bf16']
    launch = [sys.executable, '-m', 'accelerate.commands.launch', '--num_processes', '2']
    runs = {'DDP': [*launch, '--multi_gpu', *train],
            'FSDP2': [*launch, '--config_file', str(FSDP2_CONFIG), *train] if FSDP2_CONFIG.exists() else None}
    for name, command in runs.items():
        figure = f'{name}, 2 GPUs, train.py on the demo set (one epoch of 64 clips)'
        if gpus < 2 or command is None:
            reason = 'needs 2 GPUs' if gpus < 2 else f'{FSDP2_CONFIG.relative_to(ROOT)} is absent'
            print(f'skipped: {reason}' + (f" (would run: {' '.join(command)})" if command else ''))
            report.add('multi-GPU', figure, f'skipped: {reason}')
            continue
        if not os.path.exists(demo):  # made once, before the ranks start
            from tps_timm.data import make_demo_dataset
            make_demo_dataset(demo, 64, 16, progress=False)
        start = time.perf_counter()
        proc = subprocess.run([*command, '--output', os.path.join(tmp, f'train_{name}')], capture_output=True,
                              text=True, cwd=ROOT, timeout=600)
        seconds = time.perf_counter() - start
        rates = re.findall(r'([0-9.]+) clips/s', proc.stdout + proc.stderr)
        if proc.returncode:
            print((proc.stdout + proc.stderr)[-4000:])
        report.add('multi-GPU', figure, f'exit {proc.returncode}, {rates[-1] if rates else "?"} clips/s, '
                   f'{seconds:.0f} s with the start', 'runs', proc.returncode == 0)


def write_docs(path: str, env: Dict, report: Report, argv: List[str], seconds: float) -> None:
    """Append the figures as a dated section of a markdown file."""
    lines = [f"\n## GPU check: {env['device']}, {env['date']}\n",
             f"`bash benchmarks/gpu_check.sh {' '.join(argv)}` on {env['device']}, {env['date']}: "
             f"torch {env['torch']}, {env['dtype']}, {env['gpus']} GPU(s), {seconds:.0f} s in all.\n",
             '| section | figure | value | target | result |', '|---|---|---|---|---|']
    lines += [f"| {r['section']} | {r['figure']} | {r['value']} | {r['target']} | {r['result']} |" for r in report.rows]
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')
    print(f'\nappended the table to {path}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--smoke', action='store_true', help='tiny sizes on the CPU, in seconds (writes no docs '
                                                             'unless --docs is given)')
    parser.add_argument('--docs', default=None, help='markdown file to append the table to (default: '
                                                     'docs/benchmarks.md; none with --smoke)')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='dense peak of the device for MFU (default: the data-sheet bfloat16 peak of known GPUs)')
    parser.add_argument('--json', default=None, help='also write the figures to this file')
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    started = time.perf_counter()
    cuda = torch.cuda.is_available() and not args.smoke
    device, dtype = ('cuda', 'bfloat16') if cuda else ('cpu', 'float32')
    s = Sizes.smoke() if args.smoke else Sizes()
    if s.threads:
        torch.set_num_threads(s.threads)
    device_name = torch.cuda.get_device_name() if cuda else f'CPU x{os.cpu_count()}'
    peak = args.peak_tflops or bench.dense_peak_tflops(device_name, dtype)
    gpus = torch.cuda.device_count() if cuda else 0
    env = dict(device=device_name + (' (--smoke)' if args.smoke else ''), torch=torch.__version__,
               date=time.strftime('%Y-%m-%d'), dtype=dtype, gpus=gpus)
    print(f"# GPU check: {env['device']}, torch {env['torch']}, {env['date']}, {dtype}, {gpus} GPU(s)")
    if not cuda and not args.smoke:
        print('# no CUDA device: the real sizes on the CPU take long; --smoke runs the tiny ones')
    report, results, caches = Report(), {}, {}
    # a GPU machine waits for the tests first; --smoke lets them run beside the other sections
    tests = start_cuda_tests(s.worker_env())
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as tmp, ThreadPoolExecutor(1) as background:
        steps = lambda: measure_steps(s, device, dtype, peak, caches)  # noqa: E731
        if s.parallel > 1:  # --smoke: beside the compile workers (its eager compile backend needs no inductor cache)
            steps = background.submit(measure_steps, s, device, dtype, peak, {}).result
        sections = dict(zip(SECTIONS, (
            lambda: cuda_tests(report, tests, cuda),
            lambda: compile_section(report, s, device, dtype, tmp, caches),
            lambda: train_step_section(report, s, dtype, steps, results),
            lambda: shifts_section(report, s, device, dtype),
            lambda: aa_section(report, s, device, results),
            lambda: checkpoint_section(report, s, device, tmp),
            lambda: multi_gpu_section(report, gpus, tmp))))
        order = list(SECTIONS[1:]) + ['CUDA tests'] if s.parallel > 1 else list(SECTIONS)
        for name in order:
            print(f'\n## {SECTIONS.index(name) + 1}. {name}', flush=True)
            start = time.perf_counter()
            try:
                sections[name]()
            except Exception as error:  # noqa: BLE001  (the other sections still run; exit 1 at the end)
                report.error(name, error)
            print(f'({name}: {time.perf_counter() - start:.1f} s)', flush=True)
    seconds = time.perf_counter() - started
    missed = [r['figure'] for r in report.rows if r['result'] == 'FAIL']
    print(f"\n# done in {seconds:.0f} s: {sum(r['result'] == 'PASS' for r in report.rows)} targets met, "
          f"{len(missed)} missed, {report.errors} section(s) crashed" + ''.join(f'\n#   missed: {m}' for m in missed))
    docs = args.docs or (None if args.smoke else str(ROOT / 'docs' / 'benchmarks.md'))
    if docs:
        write_docs(docs, env, report, sys.argv[1:], seconds)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(env=env, rows=report.rows, seconds=seconds), f, indent=2)
    return 1 if report.errors else 0


if __name__ == '__main__':
    sys.exit(main())
