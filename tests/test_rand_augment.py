"""RandAugment on clip tensors: each op against timm's Pillow op on every frame; the policy's draw against timm's."""
import collections
import random

import numpy as np
import pytest
import torch
from PIL import Image

from tps_timm.data import ClipRandAugment, render_clip
from tps_timm.data.rand_augment import CLIP_OPS

FILL = (124, 116, 104)
PIL_RESAMPLE = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC, 'nearest': Image.NEAREST}


@pytest.fixture(scope='module')
def frames():
    """Three 40 x 56 frames of moving shapes with noise: varied histograms, edges and flat areas."""
    rng = np.random.default_rng(0)
    clip = render_clip(3, 3, 40, rng)
    clip = np.concatenate([clip, clip[:, :, :16]], axis=2).astype(int)
    clip[1] = clip[1] // 2 + 60  # a low-contrast frame: autocontrast and equalize differ per frame
    return np.clip(clip + rng.integers(-30, 30, clip.shape), 0, 255).astype(np.uint8)


PIXEL_CASES = [('auto_contrast', ()), ('equalize', ()), ('invert', ()), ('posterize', (2,)), ('posterize', (4,)),
               ('posterize', (8,)), ('solarize', (100,)), ('solarize', (256,)), ('solarize_add', (60,)),
               ('color', (0.3,)), ('color', (1.7,)), ('contrast', (0.4,)), ('contrast', (1.8,)),
               ('brightness', (0.5,)), ('brightness', (1.6,)), ('sharpness', (0.2,)), ('sharpness', (1.9,)),
               ('desaturate', (0.6,))]
GEOMETRIC_CASES = [('shear_x', (0.25,)), ('shear_y', (-0.2,)), ('translate_x_rel', (0.3,)),
                   ('translate_y_rel', (-0.17,)), ('translate_x_abs', (7.5,)), ('rotate', (23.0,)),
                   ('rotate', (-11.0,))]


def timm_op_on_frames(frames: np.ndarray, name: str, args: tuple, **kwargs) -> np.ndarray:
    from timm.data import auto_augment
    op = getattr(auto_augment, name)
    return np.stack([np.asarray(op(Image.fromarray(f), *args, **dict(kwargs))) for f in frames]).astype(int)


def ours(frames: np.ndarray, name: str, args: tuple, **kwargs) -> np.ndarray:
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    out = CLIP_OPS[name](clip, *args, **kwargs)
    assert out.dtype == torch.uint8 and out.shape == clip.shape
    return out.permute(0, 2, 3, 1).numpy().astype(int)


@pytest.mark.parametrize('name,args', PIXEL_CASES)
def test_pixel_ops_equal_pillow_on_every_frame(frames, name, args):
    assert np.array_equal(ours(frames, name, args), timm_op_on_frames(frames, name, args))


@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic'])
@pytest.mark.parametrize('name,args', GEOMETRIC_CASES)
def test_geometric_ops_match_pillow_on_every_frame(frames, name, args, interpolation):
    diff = np.abs(ours(frames, name, args, fill=FILL, interpolation=interpolation)
                  - timm_op_on_frames(frames, name, args, fillcolor=FILL, resample=PIL_RESAMPLE[interpolation]))
    if interpolation == 'bilinear':  # Pillow's sampling, border and fill; float32 rounding of the weights
        assert diff.max() <= 1 and diff.mean() < 0.2
    else:  # torch's bicubic kernel (a = -0.75) against Pillow's (a = -0.5): the same pixels, sharper edges
        assert diff.mean() < 1.5 and np.quantile(diff, 0.99) <= 8
    filled = (timm_op_on_frames(frames, name, args, fillcolor=FILL, resample=Image.NEAREST) == FILL).all(-1)
    ours_filled = (ours(frames, name, args, fill=FILL, interpolation='nearest') == FILL).all(-1)
    assert (filled == ours_filled).mean() > 0.995  # the same pixels fall outside the source


def recorded_timm_draws(config: str, hparams: dict, count: int):
    """What timm's own RandAugment applies over ``count`` calls: op names with arguments and interpolation."""
    from timm.data.auto_augment import rand_augment_transform
    policy = rand_augment_transform(config, dict(hparams))
    calls = []
    for op in policy.ops:
        def record(img, *args, _name=op.aug_fn.__name__, **kwargs):
            resample = kwargs.get('resample')
            if isinstance(resample, (list, tuple)):
                resample = random.choice(resample)  # as timm's _interpolation draws it
            calls[-1].append((_name, args, resample))
            return img
        op.aug_fn = record
    random.seed(0)
    np.random.seed(0)
    for _ in range(count):
        calls.append([])
        policy(None)
    return calls


def summarise(draws):
    """Per op: (times drawn, mean |argument|); over all ops: the fraction of positive arguments among the ops with a
    random sign, and of bicubic among the ops that interpolate; the distribution of ops per clip."""
    per_op, signs, bicubic = collections.defaultdict(list), [], []
    geometric = {name for name, _ in GEOMETRIC_CASES}  # the ops that interpolate (timm passes `resample` to all)
    for clip in draws:
        for name, args, resample in clip:
            per_op[name].append(abs(args[0]) if args else 0.0)
            if name in geometric or name in ('color', 'contrast', 'brightness', 'sharpness') and args[0] != 1:
                signs.append(args[0] > (0 if name in geometric else 1))
            if name in geometric:
                bicubic.append(resample == Image.BICUBIC)
    ops = {name: (len(v), np.mean(v)) for name, v in per_op.items()}
    return ops, np.mean(signs), np.mean(bicubic), collections.Counter(len(clip) for clip in draws)


@pytest.mark.parametrize('config', ['rand-m7-n4-mstd0.5-inc1', 'rand-m9-n2-mstd0-p0.8',
                                    'rand-m9-n3-tweights-mstd101-mmax12'])
def test_policy_draws_follow_timm(config):
    """Op choice (with/without replacement and weights), per-op probability, magnitude noise and bounds, argument
    signs and the random interpolation are distributed as timm's RandAugment draws them."""
    hparams = dict(translate_const=100, img_mean=FILL)
    count = 3000
    timm_ops, timm_signs, timm_bicubic, timm_lengths = summarise(recorded_timm_draws(config, hparams, count))
    augment = ClipRandAugment(config, hparams)
    rng = random.Random(1)
    draws = [[(name, args, {'bicubic': Image.BICUBIC, 'bilinear': Image.BILINEAR}.get(kw.get('interpolation')))
              for name, args, kw in augment.draw(rng)] for _ in range(count)]
    our_ops, our_signs, our_bicubic, our_lengths = summarise(draws)
    total = sum(n for n, _ in timm_ops.values())
    for name in set(timm_ops) | set(our_ops):
        (n, mean_abs), (n2, mean_abs2) = timm_ops.get(name, (0, 0.0)), our_ops.get(name, (0, 0.0))
        assert abs(n - n2) / total < 0.015, name
        if min(n, n2) >= 100:  # rarely drawn ops (weights of 0.05) are too few to compare magnitudes
            assert mean_abs2 == pytest.approx(mean_abs, rel=0.1, abs=0.05), name
    assert abs(timm_signs - our_signs) < 0.05 and abs(timm_bicubic - our_bicubic) < 0.05
    for k in set(timm_lengths) | set(our_lengths):  # how many ops a clip gets (each applies with its probability)
        assert abs(timm_lengths[k] - our_lengths[k]) / count < 0.03


@pytest.mark.parametrize('pillow_on_cpu', [True, False], ids=['pillow', 'tensor'])
def test_one_draw_for_every_frame_and_a_draw_per_clip(frames, pillow_on_cpu):
    augment = ClipRandAugment('rand-m9-n3-mstd0.5-inc1', dict(img_mean=FILL), pillow_on_cpu)
    same = torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).expand(4, -1, -1, -1)
    batch = torch.stack([same.transpose(0, 1)] * 6)  # (B, C, T, H, W): six copies of a still clip
    out = augment.augment_batch(batch, random.Random(0))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    for clip in out:
        assert all(torch.equal(clip[:, 0], clip[:, t]) for t in range(4))  # every frame the same op
    assert len({clip.flatten()[::97].numpy().tobytes() for clip in out}) > 3  # clips drew differently
    assert torch.equal(augment(same, random.Random(5)), augment(same, random.Random(5)))  # the rng decides


def test_unsupported_ops_and_dtypes_are_refused():
    with pytest.raises(ValueError, match='GaussianBlur'):
        ClipRandAugment('rand-m9-n3-t3a')
    with pytest.raises(ValueError, match='rand-m9-x3'):
        ClipRandAugment('rand-m9-x3')
    with pytest.raises(TypeError, match='uint8'):
        ClipRandAugment('rand-m9-n2')(torch.zeros(2, 3, 8, 8))


def test_pillow_and_tensor_paths_apply_a_draw_alike(frames):
    """The CPU path (timm's Pillow ops per frame) and the accelerator path (tensor ops) give the same clip."""
    hparams = dict(img_mean=FILL, interpolation=Image.BILINEAR)
    pillow_ops, tensor_ops = (ClipRandAugment('rand-m9-n3-mstd0.5-inc1', hparams, on_cpu) for on_cpu in (True, False))
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    rng = random.Random(3)
    for _ in range(20):
        draws = pillow_ops.draw(rng)
        pillow, tensor = pillow_ops.apply(clip, draws), tensor_ops.apply(clip, draws)
        diff = (pillow.int() - tensor.int()).abs()
        assert pillow.shape == clip.shape and (diff.float().mean() < 0.5 and diff.max() <= 255), draws
        assert (diff > 1).float().mean() < 0.02, draws  # rounding only (a rounding step can flip a later op)
