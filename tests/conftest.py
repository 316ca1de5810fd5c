import os
import subprocess
import sys
from pathlib import Path

# nothing may be fetched from the Hub in tests: hub loading is exercised against caches the tests build
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')
# tests that check what benchmarks/bench.py measures import it as `bench`
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))

import pytest  # noqa: E402
import torch  # noqa: E402

import tps_timm  # noqa: E402,F401  (registers the models)
from tps_timm.tps_swin import TpsSwinTransformer  # noqa: E402

SMALL = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))  # head_dim 32 as in the real variants


def small_model(**kwargs) -> TpsSwinTransformer:
    torch.manual_seed(0)
    args = dict(SMALL, num_classes=10, drop_path_rate=0.)
    args.update(kwargs)
    return TpsSwinTransformer(**args).eval()


def randomize_(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Give every parameter (norms and bias tables too) random values so that no path hides behind an init."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)
    return model


@pytest.fixture
def model():
    return randomize_(small_model())


def run_two_cpu_processes(script: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``script`` in two real processes on the CPU (gloo), as ``accelerate launch --multi_gpu`` would on GPUs.

    ``accelerate launch --cpu --num_processes 2`` starts ONE process (its simple launcher ignores the count; our
    scripts say so), so the README's CPU command is torchrun, as here: the scripts themselves tell Accelerate to use
    the CPU when there is no accelerator (no ACCELERATE_USE_CPU needed).
    """
    env = {k: v for k, v in os.environ.items() if k != 'ACCELERATE_USE_CPU'}
    env['OMP_NUM_THREADS'] = '1'
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                           str(script), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parents[1])


@pytest.fixture(scope='session')
def trained_demo(tmp_path_factory):
    """The one trained demo model of the suite: the demo recipe (TPS-Swin, the demo set of train.py's default size)
    for 6 epochs without flips or scale jitter, validated once at the end. ``model_dir`` is its model folder, ``demo``
    the demo set's paths (``root``, ``train``, ``val``, ``classes``), ``result`` what train.main returned."""
    import train
    from tps_timm.data import make_demo_dataset
    root = Path(__file__).resolve().parents[1]
    data = tmp_path_factory.mktemp('demo_full')
    out = tmp_path_factory.mktemp('trained_demo')
    # one loader worker: decoding beside the steps (the clips do not depend on the worker count)
    result = train.main(['--hparams', str(root / 'hparams' / 'demo.yaml'), '--no-progress', '--workers', '1',
                         '--demo-data', str(data), '--output', str(out), '--hflip', '0', '--scale', '1', '1',
                         '--ratio', '1', '1', '--eval-interval', '100', '--epochs', '6', '--experiment', 'tps'])
    parser = train.build_parser()
    demo = make_demo_dataset(str(data), parser.get_default('demo_train_videos'), parser.get_default('demo_val_videos'),
                             progress=False)  # the set train.py generated: its paths
    return dict(model_dir=result['model_dir'], out_dir=result['out_dir'], demo=demo, result=result)
