"""Exported models (``.onnx`` through onnxruntime, ``.pt2`` through ``torch.export``) behind the interface that
predict, validate and embed use: a module called on clips ``(B, C, T, H, W)``, with ``num_classes`` and a
``pretrained_cfg`` of clip settings and label names read from the file itself."""
import json
from typing import Any, Dict

import torch
import torch.nn as nn

from .clip import ClipConfig

__all__ = ['EXPORTED_SUFFIXES', 'ExportedVideoModel', 'load_exported_model']

EXPORTED_SUFFIXES = ('.onnx', '.pt2')
METADATA_KEY = 'tps_timm'  # ONNX metadata prop / file inside a .pt2 archive: the JSON of clip settings and labels


def _read_onnx(path: str):
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f'{path}: running ONNX models needs onnxruntime: pip install "tps-timm[export]"') from e
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f'{path} was not exported by tps_timm.export: it has no {METADATA_KEY!r} metadata')
    fixed_batch = session.get_inputs()[0].shape[0]
    return session, json.loads(props[METADATA_KEY]), fixed_batch if isinstance(fixed_batch, int) else None


def _read_program(path: str):
    extra_files = {METADATA_KEY: ''}
    program = torch.export.load(path, extra_files=extra_files)
    if not extra_files[METADATA_KEY]:
        raise ValueError(f'{path} was not exported by tps_timm.export: it has no {METADATA_KEY!r} metadata')
    batch = program.graph_signature.user_inputs and next(
        node.meta['val'].shape[0] for node in program.graph.nodes if node.op == 'placeholder'
        and node.name == program.graph_signature.user_inputs[0])
    return program.module(), json.loads(extra_files[METADATA_KEY]), batch if isinstance(batch, int) else None


class ExportedVideoModel(nn.Module):
    """An exported video model. Clips go through it in batches of the size it was exported for (or any size when
    exported with a dynamic batch); the output is logits or pooled features, as exported."""

    def __init__(self, path: str):
        super().__init__()
        if str(path).endswith('.onnx'):
            self.session, self.metadata, self.fixed_batch = _read_onnx(str(path))
            self.program = None
        elif str(path).endswith('.pt2'):
            self.program, self.metadata, self.fixed_batch = _read_program(str(path))
            self.session = None
        else:
            raise ValueError(f'{path}: an exported model ends with one of {EXPORTED_SUFFIXES}')
        self.path = str(path)
        meta = self.metadata
        self.num_classes = meta['num_classes'] if meta['output'] == 'logits' else 0
        self.pretrained_cfg: Dict[str, Any] = dict(
            ClipConfig.from_metadata(meta).pretrained_cfg_fields(), label_names=meta['label_names'] or None,
            num_classes=self.num_classes)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.session is not None:
            out = self.session.run(None, {self.session.get_inputs()[0].name: x.detach().cpu().float().numpy()})[0]
            return torch.from_numpy(out)
        return self.program(x.detach().cpu().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.metadata['num_frames'], self.metadata['img_size'], self.metadata['img_size'])
        if x.ndim != 5 or tuple(x.shape[2:]) != expected:
            raise ValueError(f'{self.path} takes clips (B, 3, {expected[0]}, {expected[1]}, {expected[2]}), got '
                             f'{tuple(x.shape)}')
        step = self.fixed_batch or x.shape[0]
        if x.shape[0] % step:
            pad = step - x.shape[0] % step  # a fixed batch: fill the last one up, drop the extra outputs
            out = self._run_batches(torch.cat([x, x[-1:].expand(pad, *x.shape[1:])]), step)[:x.shape[0]]
        else:
            out = self._run_batches(x, step)
        return out.to(x.device)

    def _run_batches(self, x: torch.Tensor, step: int) -> torch.Tensor:
        return torch.cat([self._run(x[i:i + step]) for i in range(0, x.shape[0], step)])


def load_exported_model(path: str) -> ExportedVideoModel:
    """Load a file written by ``python -m tps_timm.export``."""
    return ExportedVideoModel(path)
