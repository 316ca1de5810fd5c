"""How a video model's clips are made: one typed record of the clip settings, every default stated once here, with
its conversions to and from the places the settings are written down: a model's pretrained config (and so a model
folder's ``config.json``), an exported file's metadata and train.py's flags (so ``args.yaml``).

Names: ``num_frames`` is the clip's frames ``T`` (a video file's own length is ``video_frames`` in
``tps_timm.data.sampling``); ``img_size`` the square crop; ``num_clips x num_crops`` the test views.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Union

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ['ClipConfig', 'SAMPLINGS']

SAMPLINGS = ('dense', 'uniform')  # dense: clips of frames `frame_interval` apart (K400); uniform: one per segment


@dataclass(frozen=True)
class ClipConfig:
    """The clips a video model takes and how they are read and viewed.

    The defaults are TPS-Swin's K400 clips (32 x 224, dense, interval 2; the K400 recipe tests 4 x 3 views, the
    SSv2 ones 1 x 3); a model's pretrained config states its own (``ClipConfig.from_pretrained_cfg``), and flags or
    recipe keys override those (``replace``).

    Args:
        num_frames: Clip frames ``T``.
        frame_interval: Frames between two clip frames in dense sampling.
        sampling: 'dense' or 'uniform' (one frame from each of ``num_frames`` equal segments).
        img_size: Side of the square crop.
        short_side: Short side frames are resized to before the training crop (and the single validation view of
            train.py); None: 256/224 of ``img_size``, as the authors' recipes. Test views resize to ``img_size``.
        mean: Normalization mean (RGB, 0..1).
        std: Normalization std.
        num_clips: Test clips per video.
        num_crops: Test crops per clip (1 centre crop or 3 along the long side).
        train_video_seconds: The median duration of the training videos (train.py records it): the time a uniform
            clip spans, so the window of a timeline over a longer video (None: not recorded).
    """
    num_frames: int = 32
    frame_interval: int = 2
    sampling: str = 'dense'
    img_size: int = 224
    short_side: Optional[int] = None
    mean: Tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, ...] = IMAGENET_DEFAULT_STD
    num_clips: int = 1
    num_crops: int = 3
    train_video_seconds: Optional[float] = None

    # the train.py flags (and args.yaml keys) that set a field; mean and std come with the model
    FLAGS: ClassVar[Tuple[str, ...]] = ('num_frames', 'frame_interval', 'sampling', 'img_size', 'short_side',
                                        'num_clips', 'num_crops')

    def __post_init__(self):
        object.__setattr__(self, 'mean', tuple(float(v) for v in self.mean))
        object.__setattr__(self, 'std', tuple(float(v) for v in self.std))
        for name in ('num_frames', 'frame_interval', 'img_size', 'num_clips'):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f'{name} must be a whole number >= 1, got {getattr(self, name)!r}')
        if self.short_side is not None and (not isinstance(self.short_side, int) or self.short_side < 1):
            raise ValueError(f'short_side must be a whole number >= 1 or None, got {self.short_side!r}')
        if self.sampling not in SAMPLINGS:
            raise ValueError(f'sampling must be one of {", ".join(SAMPLINGS)}, got {self.sampling!r}')
        if self.num_crops not in (1, 3):
            raise ValueError(f'num_crops must be 1 or 3, got {self.num_crops!r}')
        if self.train_video_seconds is not None and not self.train_video_seconds > 0:
            raise ValueError(f'train_video_seconds must be > 0 or None, got {self.train_video_seconds!r}')

    @property
    def train_short_side(self) -> int:
        """The short side before the training crop: ``short_side``, else 256/224 of the crop."""
        return self.short_side or round(self.img_size * 256 / 224)

    def replace(self, **changes: Any) -> 'ClipConfig':
        """A copy with the ``changes`` that are not None (None: keep this config's value, as an unset flag)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    # --- a model's pretrained config (timm's names: input_size, test_num_clips, test_num_crops)
    @classmethod
    def from_pretrained_cfg(cls, cfg: Union[Mapping[str, Any], Any, None]) -> 'ClipConfig':
        """The clip settings of a pretrained config (a timm ``PretrainedCfg``, or a dict such as ``config.json``'s
        ``pretrained_cfg``); what it does not state keeps the defaults."""
        if cfg is None:
            cfg = {}
        elif not isinstance(cfg, Mapping):
            cfg = cfg.to_dict(remove_null=False)
        input_size = cfg.get('input_size')
        return cls().replace(
            num_frames=cfg.get('num_frames'), frame_interval=cfg.get('frame_interval'), sampling=cfg.get('sampling'),
            img_size=input_size[-1] if input_size else None, short_side=cfg.get('short_side'), mean=cfg.get('mean'),
            std=cfg.get('std'), num_clips=cfg.get('test_num_clips'), num_crops=cfg.get('test_num_crops'),
            train_video_seconds=cfg.get('train_video_seconds'))

    def pretrained_cfg_fields(self) -> Dict[str, Any]:
        """These settings as pretrained-config keys (``VideoPretrainedCfg``'s fields), to write into a model's
        ``pretrained_cfg`` (and so into the ``config.json`` timm saves)."""
        return dict(num_frames=self.num_frames, frame_interval=self.frame_interval, sampling=self.sampling,
                    input_size=(3, self.img_size, self.img_size), short_side=self.short_side, mean=self.mean,
                    std=self.std, test_num_clips=self.num_clips, test_num_crops=self.num_crops,
                    train_video_seconds=self.train_video_seconds)

    # --- an exported file's metadata (JSON)
    def to_metadata(self) -> Dict[str, Any]:
        """These settings as the JSON metadata of an exported file."""
        return dict(num_frames=self.num_frames, img_size=self.img_size, frame_interval=self.frame_interval,
                    sampling=self.sampling, short_side=self.short_side, mean=list(self.mean), std=list(self.std),
                    test_num_clips=self.num_clips, test_num_crops=self.num_crops,
                    train_video_seconds=self.train_video_seconds)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> 'ClipConfig':
        """The settings of an exported file's metadata (files exported before ``short_side`` and
        ``train_video_seconds`` were kept lack them)."""
        return cls(num_frames=meta['num_frames'], frame_interval=meta['frame_interval'], sampling=meta['sampling'],
                   img_size=meta['img_size'], short_side=meta.get('short_side'), mean=meta['mean'], std=meta['std'],
                   num_clips=meta['test_num_clips'], num_crops=meta['test_num_crops'],
                   train_video_seconds=meta.get('train_video_seconds'))

    # --- train.py's flags and args.yaml
    def to_flags(self) -> Dict[str, Any]:
        """These settings as train.py flag values (``args.yaml`` / recipe keys)."""
        return {name: getattr(self, name) for name in self.FLAGS}

    def replace_from_flags(self, flags: Mapping[str, Any]) -> 'ClipConfig':
        """A copy with the clip flags that ``flags`` (parsed flags or a recipe / ``args.yaml`` mapping) set."""
        return self.replace(**{name: flags.get(name) for name in self.FLAGS})
