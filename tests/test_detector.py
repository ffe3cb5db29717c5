"""Tests for lumiere_jax.evaluate.detector on rendered clips, clean and degraded."""
import numpy as np
import pytest
from scipy import ndimage

from lumiere_jax.data import render
from lumiere_jax.evaluate import detector


def _degrade(video, rng, std=20.0):
  """Gaussian noise after a 3x3 blur: a stand-in for the softness of generated samples."""
  x = ndimage.uniform_filter(video.astype(np.float32), size=(1, 3, 3, 1), mode='nearest')
  x = x + rng.normal(0.0, std, x.shape)
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _accuracy(variant, num_frames, resolution, num_clips, noisy, keep=None):
  """Fraction of clips whose first object's color, shape and direction are detected."""
  rng = np.random.default_rng(resolution + num_frames)
  hits = []
  while len(hits) < num_clips:
    attrs = render.sample_attributes(rng, variant)
    if keep and not keep(attrs):
      continue
    video = render.render_clip(attrs, num_frames, resolution)
    if noisy:
      video = _degrade(video, rng)
    found, obj = detector.detect(video), attrs['objects'][0]
    hits.append([found.color == obj['color'], found.shape == obj['shape'],
                 found.direction == obj['direction'], found.present])
  return dict(zip(('color', 'shape', 'direction', 'present'), np.mean(hits, 0)))


def _single_straight(attrs):
  return len(attrs['objects']) == 1 and attrs['objects'][0]['path'] == 'straight'


@pytest.mark.parametrize('num_frames,resolution,num_clips', [(8, 32, 100), (16, 64, 60)])
@pytest.mark.parametrize('noisy', [False, True])
@pytest.mark.parametrize('variant', ['simple', 'slow'])
def test_one_object_clips(variant, num_frames, resolution, num_clips, noisy):
  acc = _accuracy(variant, num_frames, resolution, num_clips, noisy)
  floor = 0.9 if noisy else 0.97
  assert all(v >= floor for v in acc.values()), acc


@pytest.mark.parametrize('num_frames,resolution,num_clips', [(8, 32, 80), (16, 64, 50)])
@pytest.mark.parametrize('noisy', [False, True])
def test_full_single_object_straight_clips(num_frames, resolution, num_clips, noisy):
  acc = _accuracy('full', num_frames, resolution, num_clips, noisy, keep=_single_straight)
  floor = 0.9 if noisy else 0.97
  assert all(v >= floor for v in acc.values()), acc


def _single_curved(attrs):
  return len(attrs['objects']) == 1 and attrs['objects'][0]['path'] != 'straight'


def test_full_single_object_curved_paths():
  """Bounce, circle and zoom paths keep their direction: the slope averages the loops out."""
  acc = _accuracy('full', 16, 64, 50, False, keep=_single_curved)
  assert all(v >= 0.95 for v in acc.values()), acc


@pytest.mark.parametrize('background', [0, 128, 255])
def test_blank_clip_has_no_object(background):
  blank = np.full((8, 32, 32, 3), background, np.uint8)
  for video in (blank, _degrade(blank, np.random.default_rng(0))):
    found = detector.detect(video)
    assert not found.present
    assert found.direction == 'none'
    assert found.color is None and found.shape is None


def test_static_object_has_no_direction():
  attrs = render.sample_attributes(np.random.default_rng(1), 'simple')
  video = np.repeat(render.render_clip(attrs, 8, 32)[:1], 8, axis=0)
  found = detector.detect(video)
  assert found.present and found.direction == 'none' and found.motion_px < 1.0
  assert found.color == attrs['objects'][0]['color']
  assert found.color_conf == pytest.approx(1.0)


def test_motion_px_matches_rendered_travel():
  attrs = render.sample_attributes(np.random.default_rng(2), 'simple')
  x, y, _ = render.object_trajectory(attrs['objects'][0], 16, 64)
  found = detector.detect(render.render_clip(attrs, 16, 64))
  assert found.motion_px == pytest.approx(np.hypot(x[-1] - x[0], y[-1] - y[0]), abs=1.5)


def test_detect_batch_matches_detect():
  rng = np.random.default_rng(3)
  videos = np.stack([render.render_clip(render.sample_attributes(rng, 'simple'), 8, 32)
                     for _ in range(3)])
  assert detector.detect_batch(videos) == [detector.detect(v) for v in videos]


@pytest.mark.parametrize('video', [np.zeros((8, 32, 32), np.uint8),
                                   np.zeros((8, 32, 32, 3), np.float32),
                                   np.zeros((0, 32, 32, 3), np.uint8)])
def test_bad_video_raises(video):
  with pytest.raises(ValueError):
    detector.detect(video)
