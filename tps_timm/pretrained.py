"""Pretrained configs of the video models: timm's ``PretrainedCfg`` plus how clips are sampled and viewed, the video
datasets our Hub weights are trained on, and the error a failed pretrained load raises."""
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple, Union

from timm.models._pretrained import PretrainedCfg

from .clip import ClipConfig

__all__ = ['VideoPretrainedCfg', 'as_video_pretrained_cfg', 'resolve_video_pretrained_cfg', 'record_input_size',
           'VIDEO_DATASETS', 'HUB_ORG', 'hub_reachable', 'offline_if_unreachable', 'pretrained_load_errors']

_logger = logging.getLogger(__name__)

HUB_ORG = 'tps-timm'  # our Hub organisation: video weights live at {HUB_ORG}/{architecture}.{tag}
VIDEO_DATASETS: Dict[str, Tuple[int, str, int, int]] = {
    # tag: (num_classes, sampling, test clips, test crops)
    'k400': (400, 'dense', 4, 3),
    'sthv2': (174, 'uniform', 1, 3),
    'sthv1': (174, 'uniform', 1, 3),
    'diving48': (48, 'uniform', 1, 3),
}


@dataclass
class VideoPretrainedCfg(PretrainedCfg):
    """timm's pretrained config plus how clips are sampled and viewed for this model (``ClipConfig`` reads them:
    ``ClipConfig.from_pretrained_cfg``; its defaults are these)."""
    input_size: Tuple[int, int, int] = (3, ClipConfig.img_size, ClipConfig.img_size)
    num_frames: int = ClipConfig.num_frames  # clip frames T
    frame_interval: int = ClipConfig.frame_interval
    sampling: str = ClipConfig.sampling  # 'dense' (K400) or 'uniform' segments (SSv1/v2, Diving-48)
    short_side: Optional[int] = ClipConfig.short_side  # the training resize; None: 256/224 of the crop
    test_num_clips: int = ClipConfig.num_clips
    test_num_crops: int = ClipConfig.num_crops
    train_video_seconds: Optional[float] = None  # median training-video duration: a uniform clip's time span
    dataset: Optional[str] = None


def as_video_pretrained_cfg(cfg: Union[Dict[str, Any], PretrainedCfg]) -> VideoPretrainedCfg:
    """Read a pretrained config (e.g. from a Hub ``config.json``) into a :class:`VideoPretrainedCfg`."""
    if isinstance(cfg, VideoPretrainedCfg):
        return cfg
    if isinstance(cfg, PretrainedCfg):
        cfg = cfg.to_dict(remove_null=False)
    fields = VideoPretrainedCfg.__dataclass_fields__
    unknown = sorted(set(cfg) - set(fields))
    if unknown:
        _logger.warning(f'ignoring unknown pretrained_cfg keys {unknown}')
    return VideoPretrainedCfg(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in fields})


def resolve_video_pretrained_cfg(variant: str, kwargs: Dict[str, Any]) -> VideoPretrainedCfg:
    """The pretrained config a model builder will use (timm's ``resolve_pretrained_cfg`` of ``kwargs``'s
    ``pretrained_cfg`` / ``pretrained_cfg_overlay``), as a :class:`VideoPretrainedCfg`. A ``pretrained_cfg`` given as a
    dict or a plain ``PretrainedCfg`` (e.g. a model folder's ``config.json``) is turned into one in ``kwargs`` too, so
    that timm keeps its video keys."""
    if isinstance(kwargs.get('pretrained_cfg'), (dict, PretrainedCfg)):
        kwargs['pretrained_cfg'] = as_video_pretrained_cfg(kwargs['pretrained_cfg'])
    return as_video_pretrained_cfg(_pretrained_cfg(variant, kwargs))


def record_input_size(model, img_size: Optional[Tuple[int, int]], **model_args: Any) -> None:
    """Tell timm the input size (and e.g. ``num_frames``) a model was set to after construction, so that
    ``save_for_hf`` writes them into ``config.json``'s ``model_args`` (timm >= 1.0.20 records these; older timm
    writes only what the model was created with)."""
    try:
        from timm.models._input import update_model_input_size
    except ImportError:
        return
    update_model_input_size(model, img_size, **model_args)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds (assumed so behind a proxy,
    which a direct connection would not pass)."""
    import socket
    import urllib.request
    from urllib.parse import urlparse

    from huggingface_hub import constants
    if urllib.request.getproxies():
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == 'https' else 80)), timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def offline_if_unreachable() -> Iterator[None]:
    """Hub downloads inside work from the local cache only when the Hub cannot be reached, so that a missing file
    fails in seconds instead of after ~50 s of retries; unchanged when online or already offline."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE or hub_reachable():
        yield
        return
    _logger.warning(f'the Hugging Face Hub ({constants.ENDPOINT}) is unreachable: loading from the local cache only')
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def _pretrained_cfg(variant: str, kwargs: Dict[str, Any]) -> PretrainedCfg:
    from timm.models import resolve_pretrained_cfg
    return resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'))


def _pretrained_source(variant: str, kwargs: Dict[str, Any]) -> Tuple[str, str]:
    cfg = _pretrained_cfg(variant, kwargs)
    return f'{variant}.{cfg.tag}' if cfg.tag else variant, cfg.hf_hub_id or cfg.file or cfg.url or '(none)'


def _loads_from_hub(cfg: PretrainedCfg) -> bool:
    """Whether timm fetches these weights from the Hub (not a ``local-dir:`` folder, a file or a URL), as timm's
    ``_resolve_pretrained_source`` decides."""
    if cfg.source in ('hf-hub', 'local-dir'):
        return cfg.source == 'hf-hub'
    return bool(cfg.hf_hub_id) and not cfg.file and not cfg.url


@contextlib.contextmanager
def pretrained_load_errors(variant: str, pretrained: bool, kwargs: Dict[str, Any]) -> Iterator[None]:
    """Turn a failed weight download (not found, offline, HTTP error, a repo without the file) into an error that
    names the repo and the ways to load local weights instead."""
    from huggingface_hub.errors import EntryNotFoundError
    from_hub = pretrained and _loads_from_hub(_pretrained_cfg(variant, kwargs))
    try:
        with offline_if_unreachable() if from_hub else contextlib.nullcontext():
            yield
    except (OSError, EntryNotFoundError) as e:
        if not pretrained:
            raise
        name, location = _pretrained_source(variant, kwargs)
        raise RuntimeError(
            f'could not load the pretrained weights of {name} from {location!r}: {e}\n'
            f'If this Hub repo holds no weights yet (see the model table in the README), load a local file instead:\n'
            f"  timm.create_model('{name}', pretrained=True, pretrained_cfg_overlay=dict(file='path/to/weights'))\n"
            f"or a converted folder: timm.create_model('local-dir:path/to/folder', pretrained=True)") from e
