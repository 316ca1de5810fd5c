"""FSDP2 (issue 23): examples/accelerate/fsdp2.yaml as Accelerate reads it, and our parameter groups, a training step,
the gathered full state dict and sharded checkpoints under torch's ``fully_shard``, in two CPU processes (gloo).

Run as a script (``torchrun --nproc_per_node 2 tests/test_fsdp.py OUT``), this file is the two processes.
"""
import functools
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional
from unittest import mock

import pytest
import timm
import torch
from timm.optim import create_optimizer_v2
from torch import nn

import tps_timm
from tps_timm.tps_swin import TpsSwinTransformer
from tps_timm.training import optimizer_param_groups

from conftest import SMALL, run_two_cpu_processes

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT / 'examples' / 'accelerate' / 'fsdp2.yaml'
WD, LR = 0.1, 1e-2  # large enough that a weight decay put on the wrong parameters shows in one step
GROUPS = dict(weight_decay=WD, backbone_lr_mult=0.1, layer_decay=0.75)  # the reference configs' groups


def build(family: str) -> nn.Module:
    """A small TPS-Swin (conftest's SMALL) or TPS-ViT, the same weights on every call."""
    torch.manual_seed(0)
    if family == 'swin':
        return TpsSwinTransformer(**SMALL, num_classes=10, drop_path_rate=0.)
    return timm.create_model('tps_vit_small_patch16_224', img_size=32, depth=2, embed_dim=64, num_heads=2,
                             num_classes=5)


def blocks(model: nn.Module) -> list:
    """The transformer blocks, found by where they sit (``layers[i].blocks`` / ``blocks``), not by their class."""
    if hasattr(model, 'layers'):
        return [block for layer in model.layers for block in layer.blocks]
    return list(model.blocks)


@functools.lru_cache(maxsize=None)
def launch(*flags: str):
    """What ``accelerate launch --config_file fsdp2.yaml FLAGS train.py`` makes of the file (its own code):
    the parsed arguments and the FSDP_* variables it gives the processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env
    args = launch_command_parser().parse_args(['--config_file', str(YAML), *flags, 'train.py'])
    _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    return args, {k: v for k, v in env.items() if k.startswith(('FSDP_', 'ACCELERATE_'))}


def plugin_from(env: dict):
    """The ``FullyShardedDataParallelPlugin`` that Accelerate builds in a process with ``env``."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    with mock.patch.dict(os.environ, {k: v for k, v in env.items() if k.startswith('FSDP_')}):
        return FullyShardedDataParallelPlugin()


def wrapped_by(plugin, model: nn.Module) -> list:
    """The modules Accelerate gives FSDP groups of their own under ``plugin``'s policy (as ``fsdp2_prepare_model``;
    the root is always one); raises as Accelerate does if a named class is not in the model."""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy, get_module_children_bottom_up
    plugin.set_auto_wrap_policy(model)
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    return [module for module in get_module_children_bottom_up(model)[:-1] if policy(module)]


def tps_timm_modules() -> dict:
    """The ``nn.Module`` classes tps_timm defines, by name."""
    return {name: obj for mod_name, mod in list(sys.modules.items()) if mod_name.split('.')[0] == tps_timm.__name__
            for name, obj in vars(mod).items()
            if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__.startswith('tps_timm')}


def test_the_yaml_is_an_fsdp2_config_accelerate_loads():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType
    from torch.distributed.fsdp import StateDictType
    config = load_config_from_file(str(YAML))  # refuses unknown keys
    assert config.distributed_type == DistributedType.FSDP and config.fsdp_config['fsdp_version'] == 2
    assert (config.num_machines, config.num_processes, config.mixed_precision) == (1, 8, 'bf16')
    args, env = launch()
    assert args.use_fsdp and args.nproc_per_node == '8' and env['ACCELERATE_MIXED_PRECISION'] == 'bf16'
    plugin = plugin_from(env)
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert not plugin.activation_checkpointing and not plugin.cpu_ram_efficient_loading
    # no class list: Accelerate takes the model's `_no_split_modules` (set_auto_wrap_policy), one file for both families
    assert 'fsdp_transformer_layer_cls_to_wrap' not in config.fsdp_config and 'FSDP_TRANSFORMER_CLS_TO_WRAP' not in env
    assert plugin.transformer_cls_names_to_wrap is None
    # the overrides its comments give
    assert launch('--num_processes', '4')[0].nproc_per_node == '4'
    multi = launch('--num_machines', '2', '--machine_rank', '1', '--main_process_ip', '10.0.0.1',
                   '--num_processes', '16')[0]
    assert (multi.nproc_per_node, multi.nnodes, multi.node_rank) == ('8', '2', 1)


@pytest.mark.parametrize('family,block', [('swin', 'TpsSwinTransformerBlock'), ('vit', 'TpsVitBlock')])
def test_the_wrap_policy_gives_every_transformer_block_its_own_fsdp_group(family, block):
    """The same yaml for both families: the classes come from the model's ``_no_split_modules``, and exactly the
    blocks are wrapped (the final norm and the root are Accelerate's own groups, after the policy's)."""
    model = build(family)
    assert model._no_split_modules == [block] and block in tps_timm_modules()
    plugin = plugin_from(launch()[1])
    assert [id(m) for m in wrapped_by(plugin, model)] == [id(m) for m in blocks(model)]
    assert plugin.transformer_cls_names_to_wrap == [block]  # what Accelerate took from the model
    assert {type(m).__name__ for m in blocks(model)} == {block}
    with mock.patch.object(type(model), '_no_split_modules', None):  # without it, nothing but the root would shard
        assert wrapped_by(plugin_from(launch()[1]), build(family)) == []


def test_a_class_list_given_to_accelerate_replaces_the_models_and_must_name_only_its_classes():
    """Why the yaml names no classes: ``--fsdp_transformer_layer_cls_to_wrap`` wins over ``_no_split_modules``, and a
    class the model lacks stops Accelerate, so one list could not serve both families."""
    env = launch()[1]
    with pytest.raises(ValueError, match='Could not find the transformer layer class TpsSwinTransformerBlock'):
        wrapped_by(plugin_from(launch('--fsdp_transformer_layer_cls_to_wrap', 'TpsSwinTransformerBlock')[1]),
                   build('vit'))
    both = dict(env, FSDP_TRANSFORMER_CLS_TO_WRAP='TpsSwinTransformerBlock,TpsVitBlock')
    with pytest.raises(ValueError, match='Could not find the transformer layer class TpsVitBlock'):
        wrapped_by(plugin_from(both), build('swin'))


def test_param_groups_a_step_and_the_full_state_dict_survive_fully_shard(tmp_path, monkeypatch):
    """Two gloo processes run ``main`` (the FSDP_* variables the yaml gives); the sharded checkpoint's layout is what
    ``accelerator.save_state`` writes for the model and the optimizer."""
    for key, value in launch()[1].items():
        if key.startswith('FSDP_'):
            monkeypatch.setenv(key, value)
    proc = run_two_cpu_processes(Path(__file__), str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert sorted(p.name for p in tmp_path.glob('ok_*')) == ['ok_0_swin', 'ok_0_vit', 'ok_1_swin', 'ok_1_vit']
    for sub in ('pytorch_model_fsdp_0', 'optimizer_0'):  # torch.distributed.checkpoint: one file per rank
        assert sorted(p.name for p in (tmp_path / 'checkpoint' / sub).iterdir()) == [
            '.metadata', '__0_0.distcp', '__1_0.distcp']


# ---- the two processes ----

def describe(groups: list, model: nn.Module) -> list:
    """Each group as (weight_decay, lr_scale, parameter names): what must not change when the model is sharded."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [(g['weight_decay'], g['lr_scale'], tuple(names[id(p)] for p in g['params'])) for g in groups]


def shard(model: nn.Module, plugin, rank: int) -> nn.Module:
    """``model`` sharded as ``Accelerator.prepare`` does under FSDP2: accelerate's own ``fsdp2_prepare_model``."""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model
    plugin.set_auto_wrap_policy(model)
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), mixed_precision='no',
                                  is_main_process=rank == 0, device=torch.device('cpu'))
    return fsdp2_prepare_model(accelerator, model)


def train_step(model: nn.Module, groups: list, clips: list, labels: list, rank: Optional[int] = None):
    """One AdamW step with gradient clipping (accelerate's DTensor-aware clip) on this rank's clip, or, unsharded
    (``rank`` None), on all ranks' clips: the loss the ranks' averaged gradients belong to."""
    from accelerate import Accelerator
    optimizer = create_optimizer_v2(groups, opt='adamw', lr=LR, weight_decay=WD)
    pairs = list(zip(clips, labels)) if rank is None else [(clips[rank], labels[rank])]
    loss = sum(nn.functional.cross_entropy(model(x), y) for x, y in pairs) / len(pairs)
    loss.backward()
    norm = Accelerator._clip_grad_norm_dtensor_aware(None, list(model.parameters()), 0.5)
    optimizer.step()
    return optimizer, norm.full_tensor() if hasattr(norm, 'full_tensor') else norm


def full_state_dict(model: nn.Module, rank: int) -> dict:
    """The gathered state dict, by torch's call and by ``Accelerator.get_state_dict`` (FSDP2 branch): a collective
    on every rank, the whole dict on CPU on rank 0, empty elsewhere."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    fsdp2 = SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=True)
    by_accelerate = Accelerator.get_state_dict(fsdp2, model)
    if rank:
        assert full == {} and by_accelerate == {}, (len(full), len(by_accelerate))
    else:
        assert list(full) == list(by_accelerate)
        assert all(torch.equal(full[k], by_accelerate[k]) for k in full)
    return full


def assert_equal_state(full: dict, expected: dict, atol: float = 0.) -> None:
    from torch.distributed.tensor import DTensor
    assert list(full) == list(expected), sorted(set(full) ^ set(expected))
    for k, v in full.items():
        assert type(v) is torch.Tensor and not isinstance(v, DTensor) and v.device.type == 'cpu', k
        assert (v - expected[k]).abs().max() <= atol, (k, (v - expected[k]).abs().max())


def launched_plugin():
    """The launched process's plugin (FSDP_* from the test's environment: the yaml's), a new one per model as in
    train.py (``set_auto_wrap_policy`` fills its class list from the first model it sees)."""
    return plugin_from(dict(os.environ))


def check_groups(family: str, rank: int):
    """Groups built after sharding equal those of the unsharded model, by name, and the gathered state dict is the
    unsharded one. Returns the sharded model, its groups, the unsharded model, its groups and its state."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor, Shard
    reference = build(family).train()
    expected_state = {k: v.clone() for k, v in reference.state_dict().items()}
    reference_groups = optimizer_param_groups(reference, **GROUPS)
    model = shard(build(family).train(), launched_plugin(), rank)
    assert isinstance(model, FSDPModule) and all(isinstance(b, FSDPModule) for b in blocks(model))
    assert all(isinstance(p, DTensor) and p.placements == (Shard(0),) for p in model.parameters())

    groups = optimizer_param_groups(model, **GROUPS)  # after sharding, from DTensor parameters
    got, expected = describe(groups, model), describe(reference_groups, reference)
    assert got == expected, next(((i, g, e) for i, (g, e) in enumerate(zip(got, expected)) if g != e),
                                 (len(got), len(expected)))
    decay = {n: wd for wd, _, names in got for n in names}
    scale = {n: s for _, s, names in got for n in names}
    for n, p in model.named_parameters():
        if n.endswith('.bias') or 'norm' in n or 'relative_position_bias_table' in n:
            assert decay[n] == 0, n
        elif n.endswith('.weight') and p.ndim >= 2:
            assert decay[n] == WD, n
    head = {n for n, p in model.named_parameters() if any(p is q for q in model.get_classifier().parameters())}
    assert head and all(scale[n] == 1.0 for n in head)
    assert all(scale[n] <= 0.1 + 1e-12 for n in scale if n not in head)
    where = {id(m): n for n, m in model.named_modules()}
    first, last = (f'{where[id(b)]}.attn.proj.weight' for b in (blocks(model)[0], blocks(model)[-1]))
    assert scale[first] < scale[last]  # layer decay: the deeper block learns faster

    full = full_state_dict(model, rank)
    if rank == 0:
        assert_equal_state(full, expected_state)
    return model, groups, reference, reference_groups, expected_state


def check_step(model, groups, reference, reference_groups, initial: dict, rank: int, world: int):
    """One step of the sharded model on each rank's clip equals the unsharded step on all ranks' clips (the same
    clipped gradient norm, the same weights after it). Returns the optimizer and the gathered state after it."""
    from torch.distributed.tensor import DTensor
    clips = [torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(r)) for r in range(world)]
    labels = [torch.tensor([r, r + 1]) for r in range(world)]
    optimizer, norm = train_step(model, groups, clips, labels, rank)
    assert all(isinstance(s, DTensor) for st in optimizer.state.values() for s in st.values() if s.ndim)
    _, reference_norm = train_step(reference, reference_groups, clips, labels)
    assert torch.allclose(norm, reference_norm, rtol=1e-5), (norm, reference_norm)
    stepped = full_state_dict(model, rank)
    if rank == 0:
        assert_equal_state(stepped, reference.state_dict(), atol=1e-6)
        assert max((stepped[k] - initial[k]).abs().max() for k in stepped) >= LR / 2  # it did step
    return optimizer, stepped


def check_checkpoint(family: str, model, optimizer, state: dict, rank: int, world: int, folder: Path) -> None:
    """What ``accelerator.save_state`` / ``load_state`` do under SHARDED_STATE_DICT (accelerate's own functions):
    the sharded model and optimizer written by every rank, then read into a new sharded model and optimizer."""
    import torch.distributed as dist
    from accelerate.utils import fsdp_utils
    accelerator = SimpleNamespace(process_index=rank, num_processes=world, is_fsdp2=True, is_main_process=rank == 0,
                                  wait_for_everyone=dist.barrier)
    plugin = launched_plugin()
    fresh = shard(build(family).train(), plugin, rank)
    fresh_optimizer = create_optimizer_v2(optimizer_param_groups(fresh, **GROUPS), opt='adamw')
    with mock.patch.object(fsdp_utils, 'logger', logging.getLogger(__name__)):  # its logger needs an Accelerator
        fsdp_utils.save_fsdp_model(plugin, accelerator, model, str(folder))
        fsdp_utils.save_fsdp_optimizer(plugin, accelerator, optimizer, model, str(folder))
        fsdp_utils.load_fsdp_model(plugin, accelerator, fresh, str(folder))
        fsdp_utils.load_fsdp_optimizer(plugin, accelerator, fresh_optimizer, fresh, str(folder))
    restored = full_state_dict(fresh, rank)
    if rank == 0:
        assert_equal_state(restored, state)
    for old, new in zip(model.parameters(), fresh.parameters()):
        assert all(torch.equal(optimizer.state[old][k].to_local(), fresh_optimizer.state[new][k].to_local())
                   for k in ('exp_avg', 'exp_avg_sq')) and fresh_optimizer.state[new]['step'] == 1


def main(out: str) -> None:
    """Both families' groups and gathered state dicts; the step and the checkpoint on TPS-ViT, the quicker (DTensor
    ops cost per call on the CPU, and TPS-Swin has more, smaller parameters)."""
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        check_groups('swin', rank)
        (Path(out) / f'ok_{rank}_swin').touch()
        model, groups, reference, reference_groups, initial = check_groups('vit', rank)
        optimizer, stepped = check_step(model, groups, reference, reference_groups, initial, rank, world)
        check_checkpoint('vit', model, optimizer, stepped, rank, world, Path(out) / 'checkpoint')
        (Path(out) / f'ok_{rank}_vit').touch()
    finally:
        dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
