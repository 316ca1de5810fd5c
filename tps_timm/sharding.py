"""What a training script needs to run unchanged under FSDP2 (``fully_shard``, the parameters sharded over the
ranks as DTensors): the model's full weights, an EMA sharded like the model, and the weights of a checkpoint folder,
whichever way it was written. Without FSDP they do what a one-process or DDP run did before (the same checkpoint
files), except that :func:`shard_ema` also moves the EMA to the model's device.

Every function that gathers is a collective under FSDP: all ranks must call it, in the same order.
"""
import os
import warnings
from typing import Dict, Union

import torch
from torch import nn

__all__ = ['is_sharded_model', 'unprefixed', 'full_state_dict', 'shard_ema', 'GatheredEmaState',
           'checkpoint_model_state']

_EMA_PREFIX = 'module.'  # ModelEmaV3 is an nn.Module holding the averaged model as `module`


def is_sharded_model(accelerator) -> bool:
    """Whether ``accelerator`` shards the model's weights over the ranks (FSDP, version 2 or 1).

    Args:
        accelerator: An ``accelerate.Accelerator`` (or anything with its ``distributed_type``).

    Returns:
        True under FSDP: no rank then holds whole weights, so they are gathered with :func:`full_state_dict`.
    """
    from accelerate.utils import DistributedType
    return accelerator.distributed_type == DistributedType.FSDP


def unprefixed(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``state_dict`` with the keys of the bare model: without DDP's leading ``module.`` and ``torch.compile``'s
    ``_orig_mod.`` (at the front for a compiled model, inside for compiled blocks).

    Args:
        state_dict: The state dict of a wrapped, compiled or bare model.

    Returns:
        The same tensors under the bare model's keys.
    """
    return {k.removeprefix('module.').replace('_orig_mod.', ''): v for k, v in state_dict.items()}


def full_state_dict(accelerator, model: nn.Module) -> Dict[str, torch.Tensor]:
    """The whole weights of ``model`` (prepared by ``accelerator``, or its EMA's ``module``) on the main process.

    Under FSDP a collective (``Accelerator.get_state_dict``: torch's ``get_model_state_dict`` with full tensors
    offloaded to the CPU of rank 0), so every rank must call it; otherwise the unwrapped model's state dict.

    Args:
        accelerator: The ``accelerate.Accelerator`` that prepared ``model``.
        model: The prepared model (DDP-wrapped, compiled, sharded or bare), or a module sharded by :func:`shard_ema`.

    Returns:
        On the main process the bare model's keys (:func:`unprefixed`) to plain CPU tensors (without FSDP, on a CPU
        model, they share storage with its weights: copy before changing them); ``{}`` on the other processes.
    """
    state = accelerator.get_state_dict(model)  # a collective under FSDP: before any main-process test
    if not accelerator.is_main_process:
        return {}
    return {k: v.detach().cpu() for k, v in unprefixed(state).items()}


def shard_ema(accelerator, ema: nn.Module) -> nn.Module:
    """Put timm's ``ModelEmaV3`` where ``accelerator.prepare`` put the model: under FSDP2 its ``module`` sharded
    exactly as the model was (Accelerate's own ``fsdp2_prepare_model``: the same block groups, mesh and mixed
    precision, so each rank's EMA shards line up with its model shards and ``ema.update(model)`` is local);
    otherwise moved to ``accelerator.device`` (a no-op on the CPU; an EMA made with ``ModelEmaV3(device=...)``
    stays on its device).

    Call it after ``accelerator.prepare(model, ...)`` on an EMA made of the unsharded model before it (timm's
    ``ModelEmaV3(model)`` deep-copies the model, which a sharded one does not survive).

    Args:
        accelerator: The ``accelerate.Accelerator`` that prepared the model.
        ema: A ``timm.utils.ModelEmaV3`` of the model (under FSDP without a ``device`` of its own).

    Returns:
        What to give ``accelerator.register_for_checkpointing``: under FSDP2 a :class:`GatheredEmaState` (the EMA's
        checkpoint file then holds full tensors, as without FSDP), otherwise ``ema`` itself.

    Raises:
        ValueError: Under FSDP version 1, or under FSDP for an EMA kept on a device of its own.
    """
    sharded = is_sharded_model(accelerator)
    if sharded:
        if not accelerator.is_fsdp2:
            raise ValueError('an EMA under FSDP needs FSDP2 (fsdp_version: 2 in the accelerate config)')
        if getattr(ema, 'device', None) is not None:
            raise ValueError(f'under FSDP the EMA is sharded like the model: leave ModelEmaV3(device=...) unset, '
                             f'not {ema.device}')
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model
        ema.module = fsdp2_prepare_model(accelerator, ema.module)
    elif getattr(ema, 'device', None) is None:
        ema.module.to(accelerator.device)
    else:  # one made with a device of its own stays there
        return ema
    _follow_device(ema, accelerator.device)
    return GatheredEmaState(ema) if sharded else ema


def _follow_device(ema: nn.Module, device: torch.device) -> None:
    """ModelEmaV3's stochastic-rounding generator (bfloat16 EMAs only) on ``device``, freshly seeded as when it was
    made: it must be on the device of the tensors it rounds."""
    generator = getattr(ema, '_sr_generator', None)
    if generator is not None and generator.device != torch.device(device):
        ema._sr_generator = torch.Generator(device=device)
        ema._sr_generator.manual_seed(ema.stochastic_rounding_seed)


class GatheredEmaState:
    """The checkpoint state of an EMA sharded by :func:`shard_ema`: what ``ModelEmaV3.state_dict()`` gives without
    FSDP (``module.``-prefixed full tensors), so the file Accelerate writes is the same either way.

    Accelerate's ``save_state`` calls ``state_dict()`` on every rank and writes rank 0's; ``load_state`` calls
    ``load_state_dict`` on every rank with the same file's contents.
    """

    def __init__(self, ema: nn.Module):
        """
        Args:
            ema: A ``ModelEmaV3`` whose ``module`` is sharded (:func:`shard_ema`).

        Raises:
            ValueError: If the EMA keeps state outside its ``module`` (this would not be saved).
        """
        other = [k for k in ema.state_dict() if not k.startswith(_EMA_PREFIX)]  # no collective: local shards
        if other:
            raise ValueError(f'the EMA keeps state outside its module, which GatheredEmaState would lose: {other}')
        self.ema = ema

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """A collective: every rank must call it.

        Returns:
            On rank 0 the EMA's full state dict on the CPU (``module.``-prefixed keys); ``{}`` on the others.
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        state = get_model_state_dict(self.ema.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {_EMA_PREFIX + k: v for k, v in state.items()}

    def load_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> None:
        """Shard the full EMA state ``state_dict`` (every rank passes the same) into the EMA. A collective.

        Args:
            state_dict: What :meth:`state_dict` gave rank 0 (or ``ModelEmaV3.state_dict()`` without FSDP).

        Raises:
            ValueError: If ``state_dict`` is empty or has keys outside the EMA's ``module``.
            RuntimeError: If it lacks some of the EMA's keys or has others (torch's strict load).
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        other = [k for k in state_dict if not k.startswith(_EMA_PREFIX)]
        if not state_dict or other:  # an empty dict would be a silent no-op for set_model_state_dict
            raise ValueError(f'not an EMA state dict (keys outside {_EMA_PREFIX!r}: {other[:5]}, '
                             f'{len(state_dict)} keys in all)')
        full = {k[len(_EMA_PREFIX):]: v for k, v in state_dict.items()}
        set_model_state_dict(self.ema.module, full, options=StateDictOptions(full_state_dict=True, strict=True))


def checkpoint_model_state(folder: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """The model's full weights from a checkpoint folder written by ``accelerator.save_state``, in this process alone
    (no collective: call it on the main process only, or on any), on the CPU, under the bare model's keys
    (:func:`unprefixed`), in the file's order (not necessarily the model's).

    Reads, whichever the folder holds: ``pytorch_model_fsdp_0/`` (FSDP, SHARDED_STATE_DICT: torch.distributed.checkpoint
    shards, merged here), ``pytorch_model_fsdp.bin`` (FSDP, FULL_STATE_DICT), ``model.safetensors`` or
    ``pytorch_model.bin`` (one process or DDP).

    Args:
        folder: The checkpoint folder (e.g. ``checkpoints/best``).

    Returns:
        The weights of the first (only) model saved there.

    Raises:
        FileNotFoundError: If the folder holds none of these.
    """
    from accelerate.utils.constants import FSDP_MODEL_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_NAME
    sharded = os.path.join(folder, f'{FSDP_MODEL_NAME}_0')
    if os.path.isdir(sharded):
        return unprefixed(_merge_dcp(sharded))
    for name in (SAFE_WEIGHTS_NAME, f'{FSDP_MODEL_NAME}.bin', WEIGHTS_NAME):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            if name == SAFE_WEIGHTS_NAME:
                from safetensors.torch import load_file
                return unprefixed(load_file(path))
            return unprefixed(torch.load(path, map_location='cpu', weights_only=True))
    raise FileNotFoundError(f'{folder}: no model weights ({FSDP_MODEL_NAME}_0/, {SAFE_WEIGHTS_NAME}, '
                            f'{FSDP_MODEL_NAME}.bin or {WEIGHTS_NAME})')


def _merge_dcp(path: str) -> Dict[str, torch.Tensor]:
    """The full tensors of a torch.distributed.checkpoint folder written by Accelerate's ``save_fsdp_model``
    (``{'model': state_dict}``), read in one process: tensors of the saved sizes filled by ``dcp.load``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    reader = dcp.FileSystemReader(path)
    metadata = reader.read_metadata()
    paths = metadata.planner_data or {}  # flattened key -> its path in the saved nested dict, e.g. ('model', 'x.w')
    nested: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, info in metadata.state_dict_metadata.items():
        if not isinstance(info, TensorStorageMetadata):
            raise ValueError(f'{path}: {key} is not a tensor; not a model checkpoint')
        top, name = paths.get(key, key.split('.', 1))
        nested.setdefault(top, {})[name] = torch.empty(info.size, dtype=info.properties.dtype)
    if list(nested) != ['model']:
        raise ValueError(f'{path}: expected the one entry `model` Accelerate saves, found {list(nested)}')
    with warnings.catch_warnings():  # no_dist is meant: under a process group this runs on the main process alone
        warnings.filterwarnings('ignore', message='torch.distributed is disabled')
        dcp.load(nested, storage_reader=reader, no_dist=True)
    return nested['model']
