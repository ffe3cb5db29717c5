"""Tests for lumiere_jax.evaluate.alignment."""
import numpy as np
import pytest

from lumiere_jax.data import render
from lumiere_jax.evaluate import alignment


def _clips(num, seed=0, num_frames=8, resolution=32):
  rng = np.random.default_rng(seed)
  attrs = [render.sample_attributes(rng, 'simple') for _ in range(num)]
  videos = np.stack([render.render_clip(a, num_frames, resolution) for a in attrs])
  return videos, [render.make_caption(a, rng) for a in attrs]


def test_parse_prompt():
  assert alignment.parse_prompt('The Red square is moving towards the left on a white background') \
      == {'color': 'red', 'shape': 'square', 'direction': 'left'}
  # "circles" is a path word, not the shape; only whole words count.
  assert alignment.parse_prompt('a green triangle moves up in circles') \
      == {'color': 'green', 'shape': 'triangle', 'direction': 'up'}
  assert alignment.parse_prompt('a blue circle') \
      == {'color': 'blue', 'shape': 'circle', 'direction': None}
  assert alignment.parse_prompt('') == {'color': None, 'shape': None, 'direction': None}


def test_parse_prompt_reads_rendered_captions():
  rng = np.random.default_rng(4)
  for _ in range(50):
    attrs = render.sample_attributes(rng, 'full')
    obj = attrs['objects'][0]
    assert alignment.parse_prompt(render.make_caption(attrs, rng)) \
        == {k: obj[k] for k in alignment.ATTRIBUTES}


def test_own_captions_align_and_shuffled_do_not():
  videos, captions = _clips(60)
  own = alignment.alignment_scores(videos, captions)
  for key in ('color_acc', 'shape_acc', 'direction_acc', 'all_acc', 'present_rate'):
    assert own[key] >= 0.97, (key, own[key])
  assert len(own['rows']) == 60 and all(row['all'] for row in own['rows'])

  shuffled = [captions[i] for i in np.random.default_rng(1).permutation(len(captions))]
  other = alignment.alignment_scores(videos, shuffled)
  # Chance: 1/6 color, 1/3 shape, 1/4 direction, 1/72 all three.
  assert other['color_acc'] < 0.4
  assert other['shape_acc'] < 0.6
  assert other['direction_acc'] < 0.5
  assert other['all_acc'] < 0.15
  assert other['present_rate'] == 1.0


def test_unnamed_attributes_are_not_scored():
  videos, _ = _clips(2)
  scores = alignment.alignment_scores(videos, ['something', 'else'])
  assert np.isnan(scores['color_acc']) and scores['all_acc'] == 1.0


def test_alignment_scores_rejects_mismatched_lengths():
  videos, captions = _clips(2)
  with pytest.raises(ValueError):
    alignment.alignment_scores(videos, captions[:1])


def test_temporal_consistency():
  videos, _ = _clips(10, num_frames=8)
  clean = alignment.temporal_consistency(videos)
  assert clean['color_stability'] == 1.0
  assert clean['flicker'] == 0.0
  assert clean['motion_smoothness'] < 0.5

  rng = np.random.default_rng(0)
  jerky = alignment.temporal_consistency([v[rng.permutation(len(v))] for v in videos])
  assert jerky['motion_smoothness'] > 5.0

  pulse = np.array([0, 30] * 4)[:, None, None, None]
  flicker = alignment.temporal_consistency([np.minimum(v + pulse, 255).astype(np.uint8)
                                            for v in videos])
  assert flicker['flicker'] == pytest.approx(30.0)

  # Recolor the object in 3 of 8 frames: the majority color holds in the other 5.
  clip = videos[0].copy()
  other = next(c for c in render.COLORS.values() if c != tuple(clip[clip.any(-1)][0]))
  clip[:3][clip[:3].any(-1)] = other
  assert alignment.temporal_consistency([clip])['color_stability'] == pytest.approx(5 / 8)


def test_temporal_consistency_of_blank_clip_is_nan_not_error():
  scores = alignment.temporal_consistency(np.zeros((1, 4, 16, 16, 3), np.uint8))
  assert np.isnan(scores['color_stability']) and np.isnan(scores['motion_smoothness'])
  assert scores['flicker'] == 0.0


def test_background_error_measures_residual_noise_away_from_the_object():
  videos, captions = _clips(8)
  assert alignment.alignment_scores(videos, captions)['background_error'] == 0.0
  background = (videos == 0).all(-1, keepdims=True)
  gray = np.where(background, 128, videos).astype(np.float32)
  noise = np.random.default_rng(0).normal(0.0, 10.0, gray.shape)
  noisy = np.clip(np.round(gray + noise * background), 0, 255).astype(np.uint8)
  scores = alignment.alignment_scores(noisy, captions)
  # Mean |N(0, 10)| = 10 * sqrt(2 / pi) ~= 8.0 grey levels; the object is still read right.
  assert 7.5 < scores['background_error'] < 8.5
  assert scores['all_acc'] == 1.0 and scores['num_samples'] == 8
