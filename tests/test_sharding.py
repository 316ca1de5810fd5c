"""tps_timm.sharding: the EMA sharded like the model and checkpointed whole, the gathered full state dict and the
weights of a checkpoint folder, under real ``fully_shard`` in two CPU processes (gloo), with the yaml's FSDP2 plugin
(tests/test_fsdp.py's harness).

Run as a script (``torchrun --nproc_per_node 2 tests/test_sharding.py OUT``), this file is the two processes.
"""
import functools
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from safetensors.torch import save_file
from timm.utils import ModelEmaV3

from tps_timm.sharding import GatheredEmaState, checkpoint_model_state, full_state_dict, is_sharded_model, shard_ema
from tps_timm.training import optimizer_param_groups

from conftest import run_two_cpu_processes
from test_fsdp import GROUPS, assert_equal_state, blocks, build, launch, launched_plugin, train_step

DECAY = 0.5  # far from 1, so that one update moves the EMA by half the step


def assert_same_weights(got: dict, expected: dict) -> None:
    """As test_fsdp's ``assert_equal_state``, in any key order (safetensors files keep theirs sorted)."""
    assert_equal_state(dict(sorted(got.items())), dict(sorted(expected.items())))


def stand_in(rank: int, world: int, plugin=None) -> SimpleNamespace:
    """The parts of an ``Accelerator`` that tps_timm.sharding and accelerate's FSDP2 functions read, with
    ``Accelerator``'s own ``get_state_dict`` and ``unwrap_model``: FSDP2 with ``plugin``, else multi-CPU (DDP)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType
    accelerator = SimpleNamespace(
        state=SimpleNamespace(fsdp_plugin=plugin), mixed_precision='no', device=torch.device('cpu'),
        distributed_type=DistributedType.FSDP if plugin else DistributedType.MULTI_CPU, is_fsdp2=plugin is not None,
        process_index=rank, num_processes=world, is_main_process=rank == 0)
    accelerator.get_state_dict = functools.partial(Accelerator.get_state_dict, accelerator)
    accelerator.unwrap_model = functools.partial(Accelerator.unwrap_model, accelerator)
    return accelerator


def test_the_ema_the_full_state_dict_and_a_sharded_checkpoint_under_fully_shard(tmp_path, monkeypatch):
    """Two gloo processes run ``main`` (the FSDP_* variables the yaml gives); then this process alone merges the
    sharded checkpoint they wrote and finds rank 0's gathered weights."""
    for key, value in launch()[1].items():
        if key.startswith('FSDP_'):
            monkeypatch.setenv(key, value)
    proc = run_two_cpu_processes(Path(__file__), str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert sorted(p.name for p in tmp_path.glob('ok_*')) == ['ok_0', 'ok_1']
    folder = tmp_path / 'checkpoint'
    assert sorted(p.name for p in (folder / 'pytorch_model_fsdp_0').iterdir()) == [
        '.metadata', '__0_0.distcp', '__1_0.distcp']
    merged = checkpoint_model_state(folder)  # (d): no process group here
    assert_same_weights(merged, torch.load(tmp_path / 'full.pt', weights_only=True))


def test_without_fsdp_the_ema_is_registered_itself_and_checkpoint_keys_lose_their_prefixes(tmp_path):
    model = build('vit')
    ema = ModelEmaV3(model)
    accelerator = stand_in(0, 1)
    with mock.patch.object(ema.module, 'to') as move:
        assert not is_sharded_model(accelerator) and shard_ema(accelerator, ema) is ema  # today's checkpoint file
    move.assert_called_once_with(accelerator.device)  # to the model's device (on a GPU: not left on the CPU)
    kept = ModelEmaV3(model, device=torch.device('cpu'))
    with mock.patch.object(kept.module, 'to') as move:
        assert shard_ema(accelerator, kept) is kept
    move.assert_not_called()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    # as save_state writes them: DDP's module., torch.compile's _orig_mod. (whole model) or inside (its blocks)
    wrapped = {'module.' + (k.replace('blocks.0.', 'blocks.0._orig_mod.') if k.startswith('blocks.0.') else
                            '_orig_mod.' + k): v for k, v in expected.items()}
    assert any('blocks.0._orig_mod.' in k for k in wrapped)
    save_file(wrapped, str(tmp_path / 'model.safetensors'))
    assert_same_weights(checkpoint_model_state(tmp_path), expected)
    (tmp_path / 'model.safetensors').unlink()
    torch.save({'_orig_mod.' + k: v for k, v in expected.items()}, tmp_path / 'pytorch_model_fsdp.bin')
    assert_same_weights(checkpoint_model_state(tmp_path), expected)  # FSDP's FULL_STATE_DICT file
    with pytest.raises(FileNotFoundError, match='no model weights'):
        checkpoint_model_state(tmp_path / 'nothing')


# ---- the two processes ----

class Compiled(torch.nn.Module):
    """The key prefix of ``torch.compile``'s wrapper (``_orig_mod.``), without importing its compiler."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self._orig_mod = module

    def forward(self, *args):
        return self._orig_mod(*args)


def check_ema(rank: int, world: int, folder: Path):
    """(a) shard_ema + an update after a step equal an unsharded EMA, its forward too; (b) GatheredEmaState gives
    rank 0 the unsharded EMA's state dict and loads it back into the shards; (c) full_state_dict is the unsharded
    model's, under FSDP2 and DDP; (d, written here) the sharded checkpoint of the model."""
    import torch.distributed as dist
    from accelerate.utils import fsdp_utils
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor, Shard
    reference = build('vit').train()
    reference_ema = ModelEmaV3(reference, decay=DECAY)
    model = build('vit').train()
    ema = ModelEmaV3(model, decay=DECAY)  # as train.py: of the unsharded model, before prepare
    accelerator = stand_in(rank, world, launched_plugin())
    model = fsdp2_prepare_model(accelerator, model)  # what accelerator.prepare does to the model
    registered = shard_ema(accelerator, ema)
    assert is_sharded_model(accelerator) and isinstance(registered, GatheredEmaState) and registered.ema is ema
    assert isinstance(ema.module, FSDPModule) and all(isinstance(b, FSDPModule) for b in blocks(ema.module))
    assert all(isinstance(p, DTensor) and p.placements == (Shard(0),) for p in ema.module.parameters())

    clips = [torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(r)) for r in range(world)]
    labels = [torch.tensor([r, r + 1]) for r in range(world)]
    with torch.no_grad():  # an evaluation first: FSDP2 leaves the root's weights gathered after a no-grad forward
        assert torch.allclose(ema.module(clips[0]), reference_ema.module(clips[0]), atol=1e-5)
    train_step(model, optimizer_param_groups(model, **GROUPS), clips, labels, rank)
    train_step(reference, optimizer_param_groups(reference, **GROUPS), clips, labels)
    ema.update(model, step=5)  # as train.py: ema.update(accelerator.unwrap_model(model), step=...)
    reference_ema.update(reference, step=5)
    expected = {k: v.clone() for k, v in reference_ema.state_dict().items()}
    initial = build('vit').state_dict()
    assert max((expected['module.' + k] - v).abs().max() for k, v in initial.items()) > 1e-3  # it did move
    gathered = {'module.' + k: v.full_tensor() for k, v in ema.module.state_dict().items()}
    assert_equal_state(gathered, expected, atol=1e-6)  # (a), on both ranks
    with torch.no_grad():
        assert torch.allclose(ema.module(clips[1]), reference_ema.module(clips[1]), atol=1e-5)

    state = registered.state_dict()  # (b): a collective, as accelerator.save_state calls it on every rank
    if rank == 0:
        assert_equal_state(state, expected, atol=1e-6)
        torch.save(state, folder / 'custom_checkpoint_0.pkl')  # what save_custom_state writes (rank 0)
    else:
        assert state == {}
    dist.barrier()
    with torch.no_grad():
        for p in ema.module.parameters():
            p.to_local().zero_()
    registered.load_state_dict(torch.load(folder / 'custom_checkpoint_0.pkl', weights_only=True))  # every rank
    assert all(isinstance(p, DTensor) and p.placements == (Shard(0),) for p in ema.module.parameters())
    restored = {'module.' + k: v.full_tensor() for k, v in ema.module.state_dict().items()}
    assert_equal_state(restored, state if rank == 0 else expected, atol=0 if rank == 0 else 1e-6)
    with pytest.raises(ValueError, match='not an EMA state dict'):
        registered.load_state_dict({})

    full = full_state_dict(accelerator, model)  # (c)
    if rank == 0:
        assert_equal_state(full, reference.state_dict(), atol=1e-6)
        torch.save(full, folder.parent / 'full.pt')
    else:
        assert full == {}
    ddp = torch.nn.parallel.DistributedDataParallel(Compiled(build('vit')))  # keys module._orig_mod.*
    plain = full_state_dict(stand_in(rank, world), ddp)
    if rank == 0:
        assert_equal_state(plain, build('vit').state_dict())
    else:
        assert plain == {}

    with mock.patch.object(fsdp_utils, 'logger', logging.getLogger(__name__)):  # its logger needs an Accelerator
        fsdp_utils.save_fsdp_model(accelerator.state.fsdp_plugin, accelerator, model, str(folder))  # (d)


def main(out: str) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        folder = Path(out) / 'checkpoint'
        folder.mkdir(exist_ok=True)
        check_ema(rank, world, folder)
        (Path(out) / f'ok_{rank}').touch()
    finally:
        dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
