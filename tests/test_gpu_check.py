"""benchmarks/gpu_check.sh --smoke: every section of the GPU check runs on the CPU and appends its dated table."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ('CUDA tests', 'compile', 'train step', 'shifts', 'aa-on-batch', 'checkpoint', 'multi-GPU')


@pytest.mark.long  # ~45 s on 2 cores: out of the default run (suite time), in `pytest -m long`
def test_smoke_runs_every_section_and_appends_the_table(tmp_path):
    docs = tmp_path / 'benchmarks.md'
    docs.write_text('# Benchmarks\n')
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1')
    dates = {time.strftime('%Y-%m-%d')}
    proc = subprocess.run(['bash', str(ROOT / 'benchmarks' / 'gpu_check.sh'), '--smoke', '--docs', str(docs)],
                          capture_output=True, text=True, env=env, timeout=600)
    dates.add(time.strftime('%Y-%m-%d'))
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    for number, name in enumerate(SECTIONS, 1):
        assert f'## {number}. {name}\n' in out, name
    assert '(target <= 1.2x: ' in out and '(target >= 25%: ' in out  # the targets are checked
    assert 'skipped: needs 2 GPUs' in out
    assert f'appended the table to {docs}' in out  # and to no other file: --smoke leaves docs/benchmarks.md alone
    text = docs.read_text()
    assert text.startswith('# Benchmarks\n')  # appended, not overwritten
    device = f'CPU x{os.cpu_count()} (--smoke)'
    assert any(f'## GPU check: {device}, {date}' in text for date in dates), text[:500]
    assert f'torch {torch.__version__}' in text
    assert '| section | figure | value | target | result |' in text
    for name in SECTIONS:  # a row of figures from each section, none of them a crash
        assert f'\n| {name} | ' in text, name
    assert '| crashed |' not in text
    assert '| CUDA tests | tests/test_cuda.py | ' in text and ' skipped, ' in text  # counts (all skip on a CPU)
