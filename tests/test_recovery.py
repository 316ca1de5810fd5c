"""Preemption and mid-epoch recovery: a run stopped by a signal (or killed) and resumed with ``--resume auto`` ends
with the weights of a run never stopped; damaged checkpoints are never resumed from; shard loaders resume with
every sample of the epoch once."""
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
import torch
from safetensors.torch import load_file

from tps_timm.data import make_demo_dataset
from tps_timm.training import EXIT_PREEMPTED, latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# every source of randomness the loop has: mixup (numpy), random erasing and drop path (torch), RandAugment on the
# batch (seeded by the batch index), EMA; 12 steps per epoch
RECIPE = ['--hparams', str(ROOT / 'hparams' / 'demo.yaml'), '--no-progress', '--epochs', '2', '--batch-size', '4',
          '--demo-train-videos', '48', '--demo-val-videos', '8', '--model-ema', '--model-ema-decay', '0.9',
          '--mixup', '0.8', '--reprob', '0.25', '--drop-path', '0.1', '--aa', 'rand-m9-n2-mstd0.5-inc1',
          '--aa-on-batch', '--experiment', 'run']
STOPPED = ['--recovery-interval', '1']  # a recovery checkpoint every step: the runs that are stopped


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('recovery_demo'))
    make_demo_dataset(root, 48, 8, progress=False)
    return root


def start(demo: str, output: Path, *extra: str, launcher=(sys.executable,)) -> subprocess.Popen:
    """train.py in a session of its own, as a cluster job: a signal to the group reaches the loader workers too."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('ACCELERATE_USE_CPU', None)
    return subprocess.Popen([*launcher, str(ROOT / 'train.py'), *RECIPE, '--demo-data', demo, '--output', str(output),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=ROOT, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f'train.py ended early:\n{finish(proc)[-3000:]}'
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.002)


def signal_job(proc: subprocess.Popen, sig: int) -> None:
    """``sig`` to ``proc`` and every process under it, as SLURM signals every process of a job step, whatever its
    session (torchrun starts each of its workers in a session of its own)."""
    parents = {}
    for entry in os.listdir('/proc'):
        try:
            with open(f'/proc/{entry}/stat') as f:
                parents[int(entry)] = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    job, grew = {proc.pid}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in job} - job
        job, grew = job | below, bool(below)
    for pid in job:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def final_weights(output: Path) -> dict:
    """The exported model's tensors and the EMA's, from the last epoch's checkpoint."""
    run = output / 'run'
    weights = load_file(run / 'model' / 'model.safetensors')
    checkpoint = run / 'checkpoints' / 'epoch_1'
    emas = [torch.load(p, weights_only=False) for p in sorted(checkpoint.glob('custom_checkpoint_*.pkl'))]
    ema = next(state for state in emas if any('patch_embed' in k for k in state))
    return {**weights, **{f'ema.{k}': v for k, v in ema.items()}}


def assert_identical(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


def recovery_folders(output: Path) -> list:
    return sorted(p.name for p in (output / 'run' / 'checkpoints').glob('recovery_*'))


def stopped_and_resumed(demo: str, cut: Path, rng: random.Random, extra=(), launcher=(sys.executable,),
                        reference: Optional[subprocess.Popen] = None, stop: int = signal.SIGTERM) -> None:
    """Train into ``cut``: ``stop`` to the whole job at a random step of the first epoch, resume with ``--resume
    auto``, SIGKILL while a random recovery checkpoint of the second epoch is being written, resume again to the
    end. ``reference``, an unstopped run started beside it, is waited for before the end."""
    per_step = 2 if '--grad-accum-steps' in extra else 1
    steps = 12 // per_step // (2 if '--nproc_per_node' in launcher else 1)  # of each epoch, on each process
    proc = start(demo, cut, '--workers', '1', *STOPPED, *extra, launcher=launcher)
    at = rng.randrange(1, steps) * per_step
    wait_for(lambda: any(name.endswith(f'_batch_{at}') for name in recovery_folders(cut)), proc)
    signalled = time.monotonic()
    signal_job(proc, stop)  # every process of the job, the loader worker too, as a cluster does
    out = finish(proc)
    took = time.monotonic() - signalled
    name = signal.Signals(stop).name
    assert f'{name} received: stopping after this step' in out and 'exit code 75' in out, out[-3000:]
    if launcher == (sys.executable,):  # a launcher exits 1 whatever its processes' code: preempted.json says it
        assert proc.returncode == EXIT_PREEMPTED, out[-3000:]
    else:  # torchrun stops on SIGTERM itself, not reporting its processes' codes: none of them has a traceback
        assert 'train.py", line' not in out, out[-3000:]
    # a step and a checkpoint of ~0.1 s each, + 10 s; torchrun's own shutdown on SIGTERM takes some seconds more
    assert took < 10 + 1 + (10 if launcher != (sys.executable,) else 0), f'the stopped run took {took:.1f} s to exit'
    preempted = json.loads((cut / 'run' / 'preempted.json').read_text())
    assert preempted['signal'] == name and Path(preempted['checkpoint']).name in recovery_folders(cut)
    assert len(recovery_folders(cut)) == 1  # the newest is kept

    proc = start(demo, cut, '--workers', '1', '--resume', 'auto', *STOPPED, *extra, launcher=launcher)
    checkpoints = cut / 'run' / 'checkpoints'
    batch = rng.randrange(2, steps) * per_step
    wait_for(lambda: (checkpoints / f'recovery_epoch_1_batch_{batch}.tmp').exists(), proc)
    signal_job(proc, signal.SIGKILL)
    proc.wait()
    assert not (cut / 'run' / 'preempted.json').exists()  # the resumed run was no longer a stopped one
    half_written = sorted(p.name for p in checkpoints.glob('recovery_*.tmp'))
    assert half_written in ([], [f'recovery_epoch_1_batch_{batch}.tmp'])

    proc = start(demo, cut, '--workers', '1', '--resume', 'auto', *STOPPED, *extra, launcher=launcher)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    if half_written:  # killed mid-write (as good as always; else just after the rename: that one is whole)
        assert f'{half_written[0]} was skipped: it was being written when the run was stopped' in out, out
        whole = checkpoints / f'recovery_epoch_1_batch_{batch - per_step}'
        assert f'resumed from {whole}: epoch 1 after batch {batch - per_step}' in out, out
    if reference is not None:
        out = finish(reference)
        assert reference.returncode == 0, out[-3000:]


@pytest.fixture(scope='module')
def reference_and_resumed(demo, tmp_path_factory):
    """An unstopped run and one stopped and resumed twice (:func:`stopped_and_resumed`), side by side."""
    root = tmp_path_factory.mktemp('recovery')
    reference = start(demo, root / 'reference', '--workers', '1')
    stopped_and_resumed(demo, root / 'cut', random.Random(time.time()), reference=reference)
    return root / 'reference', root / 'cut'


def test_sigterm_and_sigkill_then_resume_auto_give_the_weights_of_an_unstopped_run(reference_and_resumed):
    reference, cut = reference_and_resumed
    assert_identical(final_weights(reference), final_weights(cut))


@pytest.mark.long
@pytest.mark.parametrize('variant', ['grad_accum', 'two_processes'])
def test_the_same_with_gradient_accumulation_or_two_processes(demo, tmp_path, variant):
    extra = ['--grad-accum-steps', '2'] if variant == 'grad_accum' else []
    launcher = (sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2') \
        if variant == 'two_processes' else (sys.executable,)
    reference = start(demo, tmp_path / 'reference', '--workers', '1', *extra, launcher=launcher)
    stop = signal.SIGINT if variant == 'grad_accum' else signal.SIGTERM  # Ctrl-C on one machine
    stopped_and_resumed(demo, tmp_path / 'cut', random.Random(time.time()), extra, launcher, reference, stop)
    assert_identical(final_weights(tmp_path / 'reference'), final_weights(tmp_path / 'cut'))


def test_damaged_checkpoints_are_skipped_for_the_previous_whole_one(reference_and_resumed, tmp_path):
    checkpoints = tmp_path / 'checkpoints'
    shutil.copytree(reference_and_resumed[1] / 'run' / 'checkpoints', checkpoints)
    assert sorted(p.name for p in checkpoints.iterdir()) == ['best', 'epoch_0', 'epoch_1', 'recovery_epoch_1_batch_11']
    assert latest_checkpoint(str(checkpoints)) == (str(checkpoints / 'epoch_1'), [])
    # further on than epoch_1: one cut short after it was written, one without its checkpoint.json, one unfinished
    cut_short = checkpoints / 'recovery_epoch_2_batch_5'
    shutil.copytree(checkpoints / 'epoch_1', cut_short)
    with open(cut_short / 'model.safetensors', 'r+b') as f:
        f.truncate(1000)
    shutil.copytree(checkpoints / 'epoch_1', checkpoints / 'recovery_epoch_2_batch_7.tmp')
    unmarked = checkpoints / 'recovery_epoch_2_batch_6'
    shutil.copytree(checkpoints / 'epoch_1', unmarked)
    (unmarked / 'checkpoint.json').unlink()
    found, skipped = latest_checkpoint(str(checkpoints))
    assert found == str(checkpoints / 'epoch_1')
    size = (checkpoints / 'epoch_1' / 'model.safetensors').stat().st_size
    assert skipped == [f'{checkpoints}/recovery_epoch_2_batch_7.tmp was skipped: it was being written when the run '
                       'was stopped',
                       f'{checkpoints}/recovery_epoch_2_batch_6 was skipped: it has no readable checkpoint.json (not '
                       'finished)',
                       f'{checkpoints}/recovery_epoch_2_batch_5 was skipped: model.safetensors holds 1000 bytes, not '
                       f'{size}']
    (checkpoints / 'epoch_1' / 'optimizer.bin').unlink()  # then the last recovery checkpoint is the one
    found, skipped = latest_checkpoint(str(checkpoints))
    assert found == str(checkpoints / 'recovery_epoch_1_batch_11')
    assert skipped[-1] == f'{checkpoints}/epoch_1 was skipped: optimizer.bin is missing'
    # an epoch folder of 0.3.0 (before checkpoint.json) is taken as it is
    (checkpoints / 'epoch_0' / 'checkpoint.json').unlink()
    shutil.rmtree(checkpoints / 'recovery_epoch_1_batch_11')
    assert latest_checkpoint(str(checkpoints))[0] == str(checkpoints / 'epoch_0')


FAKE_SRUN = '''#!/bin/bash
# srun for the test: the command once per "node", all on this machine, in parallel; the highest exit code
while [[ $# -gt 0 && $1 == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid"
    rc=$?
    if [ $rc -gt $status ]; then status=$rc; fi
done
exit $status
'''
FAKE_SCONTROL = '''#!/bin/bash
case "$1" in
    show) echo 127.0.0.1 ;;
    requeue) echo "requeue $2" >> "$SCONTROL_LOG" ;;
esac
'''


@pytest.mark.slow
def test_the_slurm_script_on_two_local_nodes_stops_on_its_signal_requeues_and_continues(demo, tmp_path):
    """examples/slurm/train.sbatch as SLURM would run it on two nodes (here two `accelerate launch` on 127.0.0.1,
    one process each): SIGUSR1 to every process of the job mid-run, exit 75 and a requeue, then the requeued job
    continues to the end."""
    import socket
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != 'ACCELERATE_USE_CPU'}
    env.update(PATH=f'{bin_dir}:{Path(sys.executable).parent}:{env["PATH"]}', SLURM_NNODES='2', SLURM_JOB_ID='1234',
               SLURM_JOB_NODELIST='node[0-1]', GPUS_PER_NODE='1', MAIN_PORT=str(port), OMP_NUM_THREADS='1',
               RECIPE='hparams/demo.yaml', OUTPUT=str(tmp_path / 'out'), EXPERIMENT='run',
               SCONTROL_LOG=str(tmp_path / 'scontrol.log'))
    # 48 clips in batches of 9: 5 batches, 2 per process (the odd one is dropped)
    job = [str(ROOT / 'examples' / 'slurm' / 'train.sbatch'), '--no-progress', '--workers', '1', '--epochs', '2',
           '--batch-size', '9', '--demo-data', demo, '--demo-train-videos', '48', '--demo-val-videos', '8']

    def sbatch() -> subprocess.Popen:
        return subprocess.Popen(['bash', *job], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, cwd=ROOT, start_new_session=True)
    proc = sbatch()
    run = tmp_path / 'out' / 'run'
    wait_for(lambda: (run / 'checkpoints' / 'epoch_0' / 'checkpoint.json').exists(), proc, timeout=300)
    signal_job(proc, signal.SIGUSR1)  # SLURM's --signal=USR1@120: every process of the job
    out = finish(proc)
    assert proc.returncode == EXIT_PREEMPTED, out[-3000:]
    assert 'SIGUSR1 received: stopping after this step' in out  # (by each process whose signal came before the vote)
    assert out.count('exitcode  : 75') == 2 and 'train.py", line' not in out, out[-3000:]  # no traceback of ours
    assert 'requeueing job 1234' in out and (tmp_path / 'scontrol.log').read_text() == 'requeue 1234\n'
    stopped_at = json.loads((run / 'preempted.json').read_text())['checkpoint']
    assert Path(stopped_at).name in recovery_folders(tmp_path / 'out') + ['epoch_0', 'epoch_1']

    proc = sbatch()  # the requeued job
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert f'resumed from {stopped_at}' in out and 'done: final val top-1' in out
    assert (run / 'model' / 'model.safetensors').is_file() and not (run / 'preempted.json').exists()
    assert (tmp_path / 'scontrol.log').read_text() == 'requeue 1234\n'  # not again
    # the cosine schedule counts the 2 updates per epoch that each process made, and ends at --min-lr (0); counting
    # 5 / 2 -> 3 would leave it at a quarter of the peak
    with open(run / 'summary.csv') as f:
        rows = list(csv.DictReader(f))
    assert [row['epoch'] for row in rows] == ['0', '1'] and float(rows[-1]['lr']) == pytest.approx(0, abs=1e-9)


def test_stop_signals_are_noted_not_obeyed_and_loader_workers_ignore_them(caplog):
    """SIGINT (Ctrl-C) as SIGTERM and SIGUSR1: noted while training (no KeyboardInterrupt), a second one only said,
    the handlers before it back at the end; a loader worker (worker_init_fn) survives all three."""
    from tps_timm.data.loader import STOP_SIGNALS, ignore_stop_signals
    from tps_timm.training import StopSignals

    class OneProcess:
        num_processes = 1
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # Python runs the handler at the next bytecode
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert signals.agreed(OneProcess()) == 'SIGINT'
    assert 'SIGINT received: stopping after this step' in caplog.text and 'SIGTERM received again' in caplog.text
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C outside training: as before
    pid = os.fork()
    if pid == 0:  # a loader worker: ignores the stop signals, then exits by itself
        ignore_stop_signals()
        for sig in STOP_SIGNALS:
            os.kill(os.getpid(), sig)
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7
