"""Where a video model looks: Grad-CAM on a stage's ``(B, C, D, H, W)`` maps, over the clip's frames.

``python -m tps_timm.predict VIDEO --explain OUT.mp4|OUT.gif`` runs :func:`explain_video`: the video's first test
clip (one centre crop) goes through the model; the gradient of the explained class's logit with respect to a
stage's maps weighs them, the weighted maps are summed over channels and rectified, upsampled over time and space
to the clip, and blended over its frames. ``gradcam`` (Selvaraju et al. 2017) weighs each channel by its mean
gradient; ``hirescam`` (Draelos & Carin 2020) weighs each position's activations by their own gradients, which
keeps the map to what the model computed there (on the demo model it finds the moving shape more often: see
``docs/benchmarks.md``). Works for
every model that declares its stages in ``feature_info`` and lays them out with ``fx_feature_maps`` (TPS-Swin: the
stages, TPS-ViT: the blocks).
"""
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .clip import ClipConfig
from .data import ClipEvalTransform, ClipSampler, load_clip, normalize_clip, write_video
from .evaluate import model_device

__all__ = ['Explanation', 'METHODS', 'grad_cam', 'explain_clip', 'explain_video', 'MIN_MAP_SIZE']

METHODS = ('gradcam', 'hirescam')
MIN_MAP_SIZE = 4  # the default stage is the last whose maps are at least this many tokens a side
_STRIP_FRAMES = 8
_SHOWN_SIZE = 224  # frames are drawn at least this large


@dataclass
class Explanation:
    """A clip's saliency: ``maps`` float ``(T, H, W)`` in 0..1 over its ``frames`` uint8 ``(T, H, W, 3)`` (the
    model's input crop; ``indices``: which frames of the video), for class ``class_index`` (``probability``),
    from stage ``stage``'s maps of ``map_shape`` ``(D, h, w)``."""
    maps: np.ndarray
    frames: np.ndarray
    indices: np.ndarray
    class_index: int
    probability: float
    stage: int
    map_shape: tuple


def _stage_modules(model: torch.nn.Module) -> List[torch.nn.Module]:
    info = getattr(model, 'feature_info', None)
    if not info or not hasattr(model, 'fx_feature_maps'):
        raise ValueError(f'{type(model).__name__} declares no stage maps (feature_info / fx_feature_maps): '
                         f'--explain takes TPS-Swin and TPS-ViT models')
    return [model.get_submodule(stage['module']) for stage in info]


def grad_cam(model: torch.nn.Module, clip: torch.Tensor, class_index: Optional[int] = None,
             stage: Optional[int] = None, method: str = 'gradcam') -> Dict[str, object]:
    """Grad-CAM (``method``: one of ``METHODS``) of one normalised clip ``(1, C, T, H, W)``: ``cam`` ``(D, h, w)``
    (rectified, max 1 unless all 0), the ``class_index`` explained (default: the top class), its ``probability``,
    and the ``stage`` used (default: the last with maps of at least ``MIN_MAP_SIZE`` a side)."""
    if method not in METHODS:
        raise ValueError(f'--explain-method {method!r}: choose from {", ".join(METHODS)}')
    modules = _stage_modules(model)
    if stage is not None and not 0 <= stage < len(modules):
        raise ValueError(f'--explain-stage {stage}: the model has stages 0..{len(modules) - 1}')
    layout = model.fx_feature_maps()
    outputs: Dict[int, torch.Tensor] = {}

    def keep(index):
        def hook(module, args, output):
            if torch.is_tensor(output) and output.requires_grad:
                output.retain_grad()
            outputs[index] = output
        return hook

    handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(modules)]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = clip.detach().requires_grad_(True)  # so that every stage's output is in the graph
            logits = model(x).float()
            probs = logits.softmax(-1)[0]
            chosen = int(probs.detach().argmax()) if class_index is None else class_index
            if stage is None:
                sizes = [layout(outputs[i].detach(), x).shape[-2:] for i in range(len(modules))]
                fitting = [i for i, size in enumerate(sizes) if min(size) >= MIN_MAP_SIZE]
                stage = fitting[-1] if fitting else 0
            model.zero_grad(set_to_none=True)
            logits[0, chosen].backward()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    output = outputs[stage]
    maps = layout(output.detach(), x)[0]  # (C, D, h, w)
    grads = layout(output.grad, x)[0]
    if method == 'gradcam':  # a channel's importance: its mean gradient
        cam = F.relu((grads.mean(dim=(1, 2, 3))[:, None, None, None] * maps).sum(0))
    else:  # hirescam: each position's activations weighed by their own gradients
        cam = F.relu((grads * maps).sum(0))
    peak = cam.max()
    return dict(cam=cam / peak if peak > 0 else cam, class_index=chosen, probability=float(probs[chosen].detach()),
                stage=stage)


def _class_index(class_names: Sequence[str], name: Optional[str]) -> Optional[int]:
    if name is None:
        return None
    if name not in class_names:
        raise ValueError(f'--explain-class {name!r} is not a class of the model; its classes: '
                         f'{", ".join(repr(n) for n in class_names)}')
    return list(class_names).index(name)


def explain_clip(model: torch.nn.Module, path: str, clip: ClipConfig, class_names: Sequence[str],
                 class_name: Optional[str] = None, stage: Optional[int] = None, method: str = 'gradcam',
                 backend: Optional[str] = None) -> Explanation:
    """The saliency of video ``path``'s first test clip (one centre crop) for ``class_name`` (default: its top
    class), upsampled to the clip's frames."""
    class_index = _class_index(class_names, class_name)
    sampler = ClipSampler.for_clip(clip, 1)
    frames, indices = load_clip(path, lambda n: sampler(n), backend)
    view = ClipEvalTransform(clip.img_size, None, 1)(torch.from_numpy(frames[0]).permute(0, 3, 1, 2))[0]  # T,C,H,W
    device = model_device(model)
    x = normalize_clip(view.permute(1, 0, 2, 3)[None].to(device), clip.mean, clip.std)
    result = grad_cam(model, x, class_index, stage, method)
    cam = result['cam']
    maps = F.interpolate(cam[None, None].float(), size=tuple(x.shape[2:]), mode='trilinear', align_corners=False)
    return Explanation(maps=maps[0, 0].clamp(0, 1).cpu().numpy(), frames=view.permute(0, 2, 3, 1).numpy(),
                       indices=indices[0], class_index=result['class_index'], probability=result['probability'],
                       stage=result['stage'], map_shape=tuple(cam.shape))


def _heat_colours(values: np.ndarray) -> np.ndarray:
    """0..1 values as RGB floats on a blue-cyan-yellow-red scale (a 'jet'-like map, without matplotlib)."""
    v = np.clip(values, 0, 1)[..., None]
    red = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.concatenate([red, green, blue], -1)


def blend(frames: np.ndarray, maps: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The maps ``(T, H, W)`` coloured and blended over uint8 frames ``(T, H, W, 3)``, stronger where they are high."""
    weight = alpha * np.clip(maps, 0, 1)[..., None] ** 0.5
    mixed = frames.astype(np.float32) * (1 - weight) + 255 * _heat_colours(maps) * weight
    return mixed.round().clip(0, 255).astype(np.uint8)


def _enlarged(frames: np.ndarray) -> np.ndarray:
    """Frames scaled up (whole factors, nearest) to at least ``_SHOWN_SIZE`` a side, even sizes for video codecs."""
    factor = max(1, math.ceil(_SHOWN_SIZE / min(frames.shape[1:3])))
    frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)
    return frames[:, :frames.shape[1] // 2 * 2, :frames.shape[2] // 2 * 2]


def write_explanation(explanation: Explanation, out: str, fps: float = 8.0) -> str:
    """Write the blended frames to ``out`` (.mp4 or .gif) and a strip of 8 frames over their blends to ``out`` with
    .png; returns the strip's path."""
    from PIL import Image
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    frames = _enlarged(explanation.frames)
    blended = _enlarged(blend(explanation.frames, explanation.maps))
    if out.lower().endswith('.gif'):
        images = [Image.fromarray(f) for f in blended]
        images[0].save(out, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    else:
        write_video(out, blended, fps=round(fps))
    picks = np.unique(np.linspace(0, len(frames) - 1, min(_STRIP_FRAMES, len(frames))).round().astype(int))
    strip = np.concatenate([np.concatenate(list(frames[picks]), 1), np.concatenate(list(blended[picks]), 1)], 0)
    png = os.path.splitext(out)[0] + '.png'
    Image.fromarray(strip).save(png)
    return png


def explain_video(model: torch.nn.Module, path: str, clip: ClipConfig, class_names: Sequence[str], out: str,
                  class_name: Optional[str] = None, stage: Optional[int] = None, method: str = 'gradcam',
                  backend: Optional[str] = None) -> str:
    """Explain video ``path`` (:func:`explain_clip`), write ``out`` and its PNG strip; returns a line saying what
    was explained and written."""
    explanation = explain_clip(model, path, clip, class_names, class_name, stage, method, backend)
    png = write_explanation(explanation, out)
    depth, height, width = explanation.map_shape
    return (f'{path}: where the model looks for {class_names[explanation.class_index]!r} '
            f'({explanation.probability:.1%}): {method} on stage {explanation.stage} ({depth} x {height} x {width} '
            f'maps) -> {out}, strip {png}')
