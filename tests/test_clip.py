"""ClipConfig: one record of the clip settings, its conversions, and the folders, recipes and exported files written
before it (tests/data/v0_run, made by the code at 12abb56)."""
import json
import shutil
from pathlib import Path

import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file

import train
from tps_timm.cli import clip_config_from_args, create_model_and_clip, parse_with_hparams
from tps_timm.clip import ClipConfig
from tps_timm.pretrained import VideoPretrainedCfg

V0 = Path(__file__).resolve().parent / 'data' / 'v0_run'
DEMO_CLIP = ClipConfig(num_frames=8, frame_interval=1, sampling='uniform', img_size=48, num_clips=1, num_crops=1)
SETTINGS = ClipConfig(num_frames=12, frame_interval=3, sampling='uniform', img_size=96, short_side=110,
                      mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_clips=4, num_crops=1, train_video_seconds=2.5)


def test_conversions_round_trip():
    assert ClipConfig.from_pretrained_cfg(VideoPretrainedCfg(**SETTINGS.pretrained_cfg_fields())) == SETTINGS
    assert ClipConfig.from_pretrained_cfg(SETTINGS.pretrained_cfg_fields()) == SETTINGS  # a config.json dict
    assert ClipConfig.from_metadata(json.loads(json.dumps(SETTINGS.to_metadata()))) == SETTINGS
    flags = yaml.safe_load(yaml.safe_dump(SETTINGS.to_flags()))  # as args.yaml holds them
    # the training videos' duration is the data's, not a flag
    assert ClipConfig(mean=SETTINGS.mean, std=SETTINGS.std, train_video_seconds=2.5).replace_from_flags(flags) == \
        SETTINGS


def test_defaults_are_stated_once():
    """VideoPretrainedCfg's clip defaults are ClipConfig's: a config that states nothing gives ClipConfig()."""
    assert ClipConfig.from_pretrained_cfg(VideoPretrainedCfg()) == ClipConfig() == ClipConfig.from_pretrained_cfg({})
    assert ClipConfig().train_short_side == 256 and SETTINGS.train_short_side == 110
    assert ClipConfig(img_size=112).train_short_side == 128


def test_unset_flags_keep_the_models_settings():
    args = parse_with_hparams(train.build_parser(), ['--num-frames', '12', '--sampling', 'uniform'])
    model = timm.create_model('tps_swin_tiny', pretrained_cfg_overlay=dict(test_num_clips=4, input_size=(3, 96, 96)))
    clip = clip_config_from_args(args, model)
    assert (clip.num_frames, clip.sampling, clip.img_size, clip.num_clips) == (12, 'uniform', 96, 4)
    assert clip.frame_interval == ClipConfig.frame_interval


@pytest.mark.parametrize('field, value, message', [
    ('num_frames', 0, 'num_frames must be a whole number >= 1, got 0'),
    ('sampling', 'sparse', 'sampling must be one of dense, uniform'),
    ('num_crops', 2, 'num_crops must be 1 or 3'),
    ('short_side', -4, 'short_side must be a whole number >= 1 or None'),
])
def test_bad_settings_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        ClipConfig(**{field: value})


@pytest.fixture(scope='module')
def v0_folder(tmp_path_factory) -> Path:
    """A model folder as 12abb56's train.py wrote it: its config.json, and weights of that architecture."""
    folder = tmp_path_factory.mktemp('v0') / 'model'
    folder.mkdir()
    shutil.copy(V0 / 'config.json', folder / 'config.json')
    config = json.loads((V0 / 'config.json').read_text())
    torch.manual_seed(0)
    model = timm.create_model(config['architecture'], **config['model_args'])
    state = model.state_dict()
    # the weights 12abb56's model had, by name and shape: a renamed or reshaped parameter would not load old files
    assert {k: list(v.shape) for k, v in state.items()} == json.loads((V0 / 'state_dict_shapes.json').read_text())
    save_file(state, str(folder / 'model.safetensors'))
    return folder


def test_a_model_folder_of_the_old_layout_loads_with_its_clip_settings(v0_folder):
    parser = train.build_parser()
    args = parse_with_hparams(parser, ['--model', f'local-dir:{v0_folder}'])
    model, clip = create_model_and_clip(parser, args)
    assert clip == DEMO_CLIP  # short_side was not recorded then: the default
    assert model.num_frames == 8 and tuple(model.img_size) == (48, 48)  # the layouts kept are those clips'
    assert model(torch.zeros(1, 3, 8, 48, 48)).shape == (1, 8)


def test_an_old_args_yaml_is_still_a_recipe():
    args = parse_with_hparams(train.build_parser(), ['--hparams', str(V0 / 'args.yaml')])
    assert ClipConfig().replace_from_flags(vars(args)) == ClipConfig(
        num_frames=8, frame_interval=1, sampling='uniform', img_size=48, short_side=48, num_clips=1, num_crops=1)


def test_an_old_exported_file_loads_with_its_clip_settings(v0_folder, tmp_path):
    """A .pt2 whose metadata is the JSON 12abb56's exporter wrote (no short_side)."""
    from tps_timm.export import export_model
    from tps_timm.onnx_model import METADATA_KEY, load_exported_model
    model = timm.create_model(f'local-dir:{v0_folder}', pretrained=True).eval()
    path, metadata = export_model(model, str(tmp_path / 'new.pt2'), 'exported-program')
    assert ClipConfig.from_metadata(metadata) == DEMO_CLIP  # the export's clips are the folder's
    old_metadata = (V0 / 'export_metadata.json').read_text()
    assert 'short_side' not in json.loads(old_metadata)
    torch.export.save(torch.export.load(path), str(tmp_path / 'old.pt2'), extra_files={METADATA_KEY: old_metadata})
    exported = load_exported_model(str(tmp_path / 'old.pt2'))
    assert ClipConfig.from_pretrained_cfg(exported.pretrained_cfg) == DEMO_CLIP
    clip = torch.randn(1, 3, 8, 48, 48)
    with torch.no_grad():
        assert torch.allclose(exported(clip), model(clip), atol=1e-4)


def test_a_recipes_training_resize_leaves_the_test_views_alone():
    """k400.yaml's short_side (256) is the training resize; validate.py's test views resize to the crop (224), the
    authors' test protocol, unless --test-short-side says otherwise."""
    import validate
    from tps_timm.data import VideoList
    from tps_timm.evaluate import eval_dataset
    recipe = str(Path(__file__).resolve().parents[1] / 'hparams' / 'k400.yaml')
    for extra, expected in (([], 224), (['--test-short-side', '256'], 256)):
        args = parse_with_hparams(validate.build_parser(), ['--hparams', recipe, *extra],
                                  shared_with=train.build_parser())
        clip = ClipConfig().replace_from_flags(vars(args))
        assert (clip.num_clips, clip.num_crops) == (4, 3)
        assert eval_dataset(VideoList([('v.mp4', 0)]), clip, args.test_short_side).transform.short_side == expected
