"""``torch.compile`` for the scripts, as the caller chooses: the whole model or its blocks, and a cache folder.

* ``'regional'`` (the default): every transformer block is compiled in place (``nn.Module.compile``), the rest of the
  model stays eager. Blocks of one stage share their compiled code, so a model compiles once per distinct block
  (8 for TPS-Swin-T/S/B/L: 4 stages x shifted / unshifted windows) however deep it is.
* ``'model'``: ``torch.compile`` of the whole model, one graph (fullest fusion, longest compile for deep models).

``use_compile_cache`` keeps inductor's cache in a folder (train.py: ``compile_cache`` under ``--output``), so that a
resumed or repeated run starts warm. A folder rather than ``torch.compiler.save_cache_artifacts``: on CPU those leave
the C++ kernels to be built again. Cold and warm times of each mode: ``docs/benchmarks.md``.
"""
import os
from typing import Any, List

import torch
import torch.nn as nn

__all__ = ['COMPILE_MODES', 'compile_model', 'repeated_blocks', 'use_compile_cache']

COMPILE_MODES = ('regional', 'model')


def repeated_blocks(model: nn.Module) -> List[nn.Module]:
    """The innermost repeated blocks of ``model``: elements of ``nn.Sequential`` / ``nn.ModuleList`` containers whose
    elements all share one class and hold no such container themselves (TPS-Swin's and timm Swin's blocks, ViT's
    ``blocks``; not the stages that hold them)."""
    def repeated(module: nn.Module) -> bool:
        children = list(module.children())
        return isinstance(module, (nn.Sequential, nn.ModuleList)) and len(children) > 1 and \
            len({type(c) for c in children}) == 1

    containers = [m for m in model.modules() if repeated(m)]
    innermost = [c for c in containers if not any(repeated(m) for child in c.children() for m in child.modules())]
    return [block for container in innermost for block in container.children()]


def compile_model(model: nn.Module, mode: str = 'regional', **compile_kwargs: Any) -> nn.Module:
    """Compile ``model`` as ``mode`` says; returns the module to call (the same module for ``'regional'``).

    Shapes are static unless ``dynamic`` is given: another batch size (an evaluation's last batch) compiles one more
    static graph, where dynamo's automatic dynamic shapes would compile a symbolic one that takes far longer (times
    in docs/benchmarks.md). Regional compilation raises dynamo's per-function recompile limit (a process-wide
    setting) to cover every distinct block in training and evaluation, so that no block falls back to eager.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f'compile mode must be one of {COMPILE_MODES}, got {mode!r}')
    compile_kwargs.setdefault('dynamic', False)
    if mode == 'model':
        return torch.compile(model, **compile_kwargs)
    blocks = repeated_blocks(model)
    if not blocks:
        raise ValueError(f'{type(model).__name__} has no repeated blocks to compile; use mode="model"')
    limit = 4 * len(blocks)  # every block distinct, x train / eval, x a change of batch size: an upper bound
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, limit)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, limit)
    for block in blocks:
        block.compile(**compile_kwargs)
    return model


def use_compile_cache(directory: str) -> bool:
    """Keep inductor's compiled code (generated kernels, built libraries, graph caches) in ``directory``, in place of
    ``TORCHINDUCTOR_CACHE_DIR``: a process that compiles the same model with it starts warm. Call before the first
    compile; True if the folder held anything."""
    os.makedirs(directory, exist_ok=True)
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = directory
    return any(os.scandir(directory))
