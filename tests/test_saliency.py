"""predict --explain: Grad-CAM maps that find the demo's moving shape, what is written, TPS-ViT, and bad input."""
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image

import tps_timm  # noqa: F401
from tps_timm import predict
from tps_timm.clip import ClipConfig
from tps_timm.data import DEMO_CLASSES, render_clip, write_video
from tps_timm.saliency import explain_clip, grad_cam


@pytest.fixture(scope='module')
def shape_videos(tmp_path_factory):
    """24 videos of the demo's validation distribution (3 per class) and where the shape is in each frame."""
    folder = tmp_path_factory.mktemp('shapes')
    rng = np.random.default_rng(123)
    videos = []
    for i in range(24):
        frames, masks = render_clip(i % 8, 16, 64, rng, return_masks=True)
        write_video(folder / f'{i}.mp4', frames)
        videos.append((str(folder / f'{i}.mp4'), i % 8, masks))
    return videos


def on_shape_fraction(model, videos, method: str, stage=None) -> float:
    """The fraction of videos whose mean map value on the (dilated) shape exceeds the mean off it."""
    clip = ClipConfig.from_pretrained_cfg(model.pretrained_cfg)
    wins = 0
    for path, label, masks in videos:
        explanation = explain_clip(model, path, clip, list(DEMO_CLASSES), stage=stage, method=method)
        shape = torch.from_numpy(masks[explanation.indices]).float()[:, None]  # the clip's frames
        shape = F.interpolate(shape, size=explanation.maps.shape[1:], mode='nearest')  # as the crop resized them
        shape = F.max_pool2d(shape, 5, 1, 2)[:, 0].bool().numpy()  # dilated by 2 pixels
        wins += explanation.maps[shape].mean() > explanation.maps[~shape].mean()
    return wins / len(videos)


def test_the_maps_find_the_moving_shape(trained_demo, shape_videos, capsys):
    model = timm.create_model(f'local-dir:{trained_demo["model_dir"]}', pretrained=True).eval()
    found = {(method, stage): on_shape_fraction(model, shape_videos, method, stage)
             for method, stage in (('hirescam', 0), ('gradcam', None))}
    with capsys.disabled():
        print(f'\non the shape: {found}')
    assert found[('hirescam', 0)] >= 0.8, found
    assert found[('gradcam', None)] >= 0.5, found  # the default stage (6 x 6 maps) is coarser: see docs


def test_explain_writes_the_blend_and_a_strip_and_refuses_bad_input(trained_demo, shape_videos, tmp_path, capsys):
    video = shape_videos[0][0]
    model = trained_demo['model_dir']
    predict.main([video, '--model', model, '--explain', str(tmp_path / 'cam.gif')])
    out = capsys.readouterr().out
    assert "where the model looks for 'moving left to right'" in out and 'stage 1 (8 x 6 x 6 maps)' in out, out
    with Image.open(tmp_path / 'cam.gif') as gif:
        assert gif.n_frames == 8 and gif.size == (240, 240)  # 48 px frames drawn 5x
    with Image.open(tmp_path / 'cam.png') as strip:
        assert strip.size == (8 * 240, 2 * 240)
    predict.main([video, '--model', model, '--explain', str(tmp_path / 'cam.mp4'), '--explain-class', 'growing',
                  '--explain-stage', '0', '--explain-method', 'hirescam'])
    assert "for 'growing'" in capsys.readouterr().out and (tmp_path / 'cam.mp4').stat().st_size > 0
    for argv, message in (
            (['--explain-class', 'jumping'], "--explain-class 'jumping' is not a class of the model; its classes: "
                                             "'moving left to right', "),
            (['--explain-stage', '7'], '--explain-stage 7: the model has stages 0..3'),
    ):
        with pytest.raises(SystemExit) as exit_info:
            predict.main([video, '--model', model, '--explain', str(tmp_path / 'x.gif'), *argv])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code and message in err and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit):
        predict.main([video, video, '--model', model, '--explain', str(tmp_path / 'x.gif')])
    assert '--explain explains one video' in capsys.readouterr().err


def test_grad_cam_of_tps_vit_uses_its_blocks(shape_videos):
    torch.manual_seed(0)
    model = timm.create_model('tps_vit_small_patch16_224', num_classes=8, img_size=48, patch_size=8, embed_dim=64,
                              depth=2, num_heads=2, num_frames=8, tubelet_size=1).eval()
    x = torch.randn(1, 3, 8, 48, 48)
    assert grad_cam(model, x)['stage'] == 1  # the last block (all are 6 x 6)
    result = grad_cam(model, x, stage=0, method='hirescam')
    assert result['cam'].shape == (8, 6, 6) and result['cam'].max() == 1 and result['cam'].min() >= 0
    # the map changes with the class explained: the gradients reach the block
    other = grad_cam(model, x, class_index=(result['class_index'] + 1) % 8, stage=0, method='hirescam')
    assert not torch.allclose(other['cam'], result['cam'])
