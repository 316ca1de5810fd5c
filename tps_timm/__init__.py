"""TPS-Swin video transformers as timm models: ``import tps_timm`` registers ``tps_swin_*`` with timm."""
from .shift import channel_shift, patch_shift, channel_shift_reference, patch_shift_reference
from .pretrained import VideoPretrainedCfg
from .tps_swin import TpsSwinTransformer, checkpoint_filter_fn, TEMPORAL_MIXING
from .tps_vit import TpsVisionTransformer, to_video

__version__ = '0.1.0'
