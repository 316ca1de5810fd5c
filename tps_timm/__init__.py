"""TPS video transformers (TPS-Swin, TPS-ViT) as timm models: ``import tps_timm`` registers ``tps_swin_*`` and
``tps_vit_*`` with timm."""
from .clip import ClipConfig
from .shift import channel_shift, patch_shift
from .layers import TEMPORAL_MIXING
from .pretrained import VideoPretrainedCfg
from .tps_swin import TpsSwinTransformer, checkpoint_filter_fn
from .tps_vit import TpsVisionTransformer, to_video

__all__ = ['ClipConfig', 'channel_shift', 'patch_shift', 'TEMPORAL_MIXING', 'VideoPretrainedCfg', 'TpsSwinTransformer',
           'checkpoint_filter_fn', 'TpsVisionTransformer', 'to_video']
__version__ = '0.5.0'
