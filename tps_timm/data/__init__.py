"""Video data: decoding, frame sampling, annotation formats, clip transforms, datasets and demo data."""
from .annotations import DATASET_FORMATS, VIDEO_EXTENSIONS, VideoList, find_videos, load_video_list, missing_videos, \
    read_class_names, read_diving48, read_kinetics_csv, read_list_file, read_sthv1, read_sthv2
from .dataset import ClipItems, TooManyUnreadable, VideoDataset, check_unreadable, median_video_seconds
from .shards import INFO_FILE, WDS_PREFIX, ShardedEvalClips, ShardedTrainClips, ShardSource, collate_eval_items, \
    is_sharded, open_shards
from .hf import HF_PREFIXES, HfStreamSource, HfVideoTable, open_hf_dataset
from .flips import BUILTIN_FLIP_PAIRS, FLIP_SPECS, flip_label_map, resolve_flip_pairs
from .loader import SeededRandomSampler, batch_rand_augment, build_train_loader, collate_clips, default_workers
from .sampling import ClipSampler, Window, WindowLayout, dense_indices, sliding_windows, uniform_indices, \
    window_seconds
from .synthetic import DEMO_CLASSES, make_demo_dataset, render_actions, render_clip, write_video
from .rand_augment import ClipRandAugment
from .transforms import ClipEvalTransform, ClipRandomErasing, ClipTrainTransform, normalize_clip, \
    rand_augment_hparams, short_side_resize
from .windows import VideoWindows, WindowItems
from .video_io import BACKENDS, VideoReadError, available_backends, decoded_frames, default_backend, frame_to_rgb, \
    load_clip, video_seconds
