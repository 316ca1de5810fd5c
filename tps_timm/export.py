"""Export a video model for deployment: ONNX (run by onnxruntime) or a ``torch.export`` program, checked against
eager PyTorch on the same clip.

    python -m tps_timm.export MODEL_OR_FOLDER --format onnx|exported-program [--num-frames T] [--img-size S]
        [--dynamic-batch] [--opset 18] [--features] [--output FILE]

MODEL_OR_FOLDER is a timm name (with ``--pretrained`` for its weights), ``hf-hub:REPO``, ``local-dir:FOLDER`` or a
train.py output ``model/`` folder. The file carries the label names and clip settings: ONNX metadata props, or a JSON
inside the ``.pt2`` archive. The window layouts and shifts export as plain gathers and slices.
"""
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .clip import ClipConfig
from .onnx_model import METADATA_KEY, load_exported_model

__all__ = ['FORMATS', 'PARITY_TOLERANCE', 'export_model', 'export_metadata', 'check_parity', 'main']

FORMATS = ('onnx', 'exported-program')
PARITY_TOLERANCE = 1e-4  # max |exported - eager| on float32 logits or features


class _PooledFeatures(nn.Module):
    """The pooled embedding (the classifier's input) of a model, as the exported output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def export_metadata(model: nn.Module, model_name: str, clip: ClipConfig, features: bool) -> Dict[str, Any]:
    """What a deployment needs besides the graph: input layout, preprocessing, test views and label names."""
    return dict(
        model=model_name, output='features' if features else 'logits', input_layout='B, C, T, H, W',
        **clip.to_metadata(), num_classes=model.num_classes,
        label_names=list(getattr(model, 'pretrained_cfg', {}).get('label_names') or []),
        num_features=getattr(model, 'head_hidden_size', model.num_features))


def _exported_program(module: nn.Module, clip: torch.Tensor, dynamic_batch: bool) -> torch.export.ExportedProgram:
    from .shift import EXPORT_DECOMPOSITIONS
    dynamic_shapes = ({0: torch.export.Dim('batch', min=1, max=1024)},) if dynamic_batch else None
    with torch.no_grad():
        program = torch.export.export(module, (clip,), dynamic_shapes=dynamic_shapes, strict=False)
    table = torch.export.default_decompositions()  # core ATen, with the shifts' custom ops as gathers and slices
    table.update(EXPORT_DECOMPOSITIONS)
    return program.run_decompositions(table)


def export_model(
        model: nn.Module,
        output: str,
        fmt: str = 'onnx',
        frames: Optional[int] = None,
        img_size: Optional[int] = None,
        dynamic_batch: bool = False,
        opset: Optional[int] = None,
        features: bool = False,
        model_name: str = '',
) -> Tuple[str, Dict[str, Any]]:
    """Export the eval ``model`` on clips ``(B, 3, frames, img_size, img_size)`` (default: its config's clips, as
    ``ClipConfig.from_pretrained_cfg`` reads them); returns the path and metadata."""
    if fmt not in FORMATS:
        raise ValueError(f'format must be one of {FORMATS}, got {fmt!r}')
    model.eval()
    settings = ClipConfig.from_pretrained_cfg(getattr(model, 'pretrained_cfg', None)).replace(
        num_frames=frames, img_size=img_size)
    if hasattr(model, 'set_input_size'):  # the layouts become constants of the graph
        model.set_input_size(img_size=settings.img_size, num_frames=settings.num_frames)
    module = _PooledFeatures(model) if features else model
    clip = torch.randn(2 if dynamic_batch else 1, 3, settings.num_frames, settings.img_size, settings.img_size)
    metadata = export_metadata(model, model_name, settings, features)
    program = _exported_program(module, clip, dynamic_batch)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    if fmt == 'exported-program':
        torch.export.save(program, output, extra_files={METADATA_KEY: json.dumps(metadata)})
        return output, metadata
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError as e:
        raise ImportError(f'ONNX export needs the export extra: pip install "tps-timm[export]" ({e})') from e
    dynamic_shapes = ({0: 'batch'},) if dynamic_batch else None
    onnx_program = torch.onnx.export(program, (clip,), dynamo=True, input_names=['clip'],
                                     output_names=['features' if features else 'logits'], opset_version=opset,
                                     dynamic_shapes=dynamic_shapes, external_data=False)
    proto = onnx_program.model_proto
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata)})
    onnx.save(proto, output)
    return output, metadata


def _median_seconds(fn, reps: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_parity(path: str, model: nn.Module, fmt: str, features: bool, batch_sizes: Sequence[int] = (1,),
                 tolerance: float = PARITY_TOLERANCE) -> Dict[str, float]:
    """Run the exported file (onnxruntime's CPU provider, or the loaded program) and eager PyTorch on the same random
    clips; raises a ValueError naming the difference when it exceeds ``tolerance``. Returns the largest difference
    and the latency ratio exported / eager at the first batch size."""
    exported = load_exported_model(path)
    module = _PooledFeatures(model).eval() if features else model.eval()
    meta = exported.metadata
    result = {}
    for i, batch in enumerate(batch_sizes):
        clip = torch.randn(batch, 3, meta['num_frames'], meta['img_size'], meta['img_size'],
                           generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            expected = module(clip)
            got = exported(clip)
            diff = (got - expected).abs().max().item()
        result['max_abs_diff'] = max(result.get('max_abs_diff', 0.), diff)
        if diff > tolerance:
            raise ValueError(f'{path}: exported {meta["output"]} differ from eager PyTorch by {diff:.3g} at batch '
                             f'{batch} (tolerance {tolerance:g})')
        if i == 0:
            with torch.no_grad():
                result['exported_seconds'] = _median_seconds(lambda: exported(clip))
                result['eager_seconds'] = _median_seconds(lambda: module(clip))
            result['latency_ratio'] = result['exported_seconds'] / result['eager_seconds']
    return result


def main(argv: Optional[Sequence[str]] = None) -> None:
    from .cli import ArgumentParser, add_model_args, create_model_and_clip, positive_int
    parser = ArgumentParser(prog='python -m tps_timm.export', description=__doc__.split('\n\n')[0])
    parser.add_argument('model_or_folder', help='timm name, hf-hub:REPO, local-dir:FOLDER or a model/ folder')
    add_model_args(parser, run_flags=False)
    parser.add_argument('--format', choices=FORMATS, default='onnx')
    parser.add_argument('--num-frames', '--frames', type=positive_int, default=None,
                        help='clip frames T (default: the model config)')
    parser.add_argument('--img-size', type=positive_int, default=None, help='frame size (default: the model config)')
    parser.add_argument('--dynamic-batch', action='store_true', help='any batch size (default: batch 1 only)')
    parser.add_argument('--opset', type=int, default=None, help='ONNX opset (default: the exporter\'s)')
    parser.add_argument('--features', action='store_true', help='export the pooled embedding, not the classifier')
    parser.add_argument('--output', default=None, help='file to write (default: MODEL.onnx / MODEL.pt2 here)')
    args = parser.parse_args(argv)
    args.model = args.model_or_folder
    model, clip = create_model_and_clip(parser, args)
    if not isinstance(model, nn.Module) or not hasattr(model, 'forward_features'):
        parser.error(f'{args.model} cannot be exported again: give the model it was exported from')
    frames, img_size = clip.num_frames, clip.img_size
    name = Path(args.model.split(':', 1)[-1].rstrip('/')).name.replace('.', '_')
    output = args.output or f"{name}{'_features' if args.features else ''}.{'onnx' if args.format == 'onnx' else 'pt2'}"
    start = time.perf_counter()
    try:
        path, _ = export_model(model, output, args.format, frames, img_size, args.dynamic_batch, args.opset,
                               args.features, args.model)
    except ImportError as e:
        parser.error(str(e))
    print(f'exported {args.model} ({frames}x{img_size}, {"dynamic" if args.dynamic_batch else "fixed"} batch) to '
          f'{path} in {time.perf_counter() - start:.1f} s')
    try:
        parity = check_parity(path, model, args.format, args.features, (1, 3) if args.dynamic_batch else (1,))
    except ValueError as e:
        print(f'error: parity check failed: {e}', file=sys.stderr)
        sys.exit(1)
    runtime = 'onnxruntime (CPU)' if args.format == 'onnx' else 'the exported program'
    print(f"parity: max |diff| {parity['max_abs_diff']:.2e} <= {PARITY_TOLERANCE:g}; {runtime} takes "
          f"{parity['latency_ratio']:.2f}x eager PyTorch's time on this machine "
          f"({parity['exported_seconds'] * 1e3:.0f} ms vs {parity['eager_seconds'] * 1e3:.0f} ms per clip batch)")


if __name__ == '__main__':
    main()
