"""Tests for the procedural clip renderer."""
import itertools

import numpy as np
import pytest

from lumiere_jax.data import render


def _simple(color="red", shape="square", direction="right", offset=0.5, start=0.5):
  obj = {"color": color, "shape": shape, "direction": direction, "size": "large",
         "speed": "quickly", "path": "straight", "offset": offset, "start": start}
  return {"variant": "simple", "background": "black", "objects": [obj]}


def _centroid(mask):
  ys, xs = np.nonzero(mask)
  return xs.mean(), ys.mean()


def test_colors_are_far_from_each_other_and_from_backgrounds():
  palette = list(render.COLORS.values()) + list(render.BACKGROUNDS.values())
  for a, b in itertools.combinations(palette, 2):
    assert np.abs(np.subtract(a, b, dtype=int)).sum() >= 120, (a, b)


def test_heldout_rule_keeps_every_value_and_pair_in_training():
  heldout = set(render.heldout_combinations())
  combos = set(itertools.product(render.COLORS, render.SHAPES, render.DIRECTIONS))
  assert 0.10 <= len(heldout) / len(combos) <= 0.15
  train = combos - heldout
  for i, j in itertools.combinations(range(3), 2):
    assert {(c[i], c[j]) for c in train} == {(c[i], c[j]) for c in combos}


@pytest.mark.parametrize("variant", ["simple", "slow", "full"])
def test_sampling_is_deterministic_and_respects_heldout(variant):
  a = render.sample_attributes(np.random.default_rng(3), variant)
  assert a == render.sample_attributes(np.random.default_rng(3), variant)
  rng = np.random.default_rng(0)
  assert all(render.is_heldout(render.sample_attributes(rng, variant, heldout=True))
             for _ in range(50))
  assert not any(render.is_heldout(render.sample_attributes(rng, variant, heldout=False))
                 for _ in range(200))


@pytest.mark.parametrize("direction,axis,sign", [("left", 0, -1), ("right", 0, 1),
                                                 ("up", 1, -1), ("down", 1, 1)])
def test_simple_object_crosses_the_frame_in_its_direction(direction, axis, sign):
  video = render.render_clip(_simple(direction=direction), num_frames=8, resolution=32)
  assert video.shape == (8, 32, 32, 3) and video.dtype == np.uint8
  mask = video.any(-1)
  assert (video[mask] == render.COLORS["red"]).all() and (video[~mask] == 0).all()
  shift = _centroid(mask[-1])[axis] - _centroid(mask[0])[axis]
  assert sign * shift > 0.6 * 32


def test_slow_variant_travels_less_than_half_the_range_from_a_random_start():
  """Long videos continue a "slow" clip's motion past its end; a "simple" clip has no room."""
  rng = np.random.default_rng(0)
  starts = []
  for _ in range(20):
    attrs = render.sample_attributes(rng, "slow")
    obj = attrs["objects"][0]
    assert (attrs["background"], len(attrs["objects"])) == ("black", 1)
    assert (obj["size"], obj["speed"], obj["path"]) == ("large", "slowly", "straight")
    x, y, size = render.object_trajectory(obj, 8, 32)
    dx, dy = render.DIRECTION_VECTORS[obj["direction"]]
    along = dx * x + dy * y  # Grows in the named direction.
    free = 32 - size.max()
    assert np.allclose(along[-1] - along[0], render.SPEED_TRAVEL["slowly"] * free)
    starts.append(along[0] % 32)
    caption = render.make_caption(attrs, rng)
    assert "slowly" not in caption and "large" not in caption and obj["color"] in caption
  assert np.ptp(starts) > 0.3 * free  # Starts spread over the slack the travel leaves.


def test_shapes_are_distinguishable_at_32px():
  areas = {}
  for shape in render.SHAPES:
    frame = render.render_clip(_simple(shape=shape), 1, 32)[0].any(-1)
    rows, cols = np.nonzero(frame)
    assert 10 <= np.ptp(rows) + 1 <= 12 and 10 <= np.ptp(cols) + 1 <= 12
    areas[shape] = frame.sum()
    # Triangle apex up: narrow top row, wide bottom row.
    if shape == "triangle":
      assert frame[rows.min()].sum() < frame[rows.max()].sum() / 3
  assert areas["square"] > areas["circle"] > areas["triangle"]


def test_size_scales_with_resolution():
  small = render.render_clip(_simple(), 1, 32)[0].any(-1).sum()
  large = render.render_clip(_simple(), 1, 64)[0].any(-1).sum()
  assert 3.5 < large / small < 4.5


def test_full_variant_renders_and_captions_every_object():
  rng = np.random.default_rng(1)
  for _ in range(30):
    attrs = render.sample_attributes(rng, "full")
    video = render.render_clip(attrs, 6, 24)
    assert video.shape == (6, 24, 24, 3)
    words = render.make_caption(attrs, rng).split()
    for obj in attrs["objects"]:
      assert {obj["color"], obj["shape"], obj["direction"], obj["size"]} <= set(words)


def test_captions_name_attributes_and_vary():
  rng = np.random.default_rng(0)
  captions = set()
  for _ in range(200):
    attrs = render.sample_attributes(rng, "simple")
    caption = render.make_caption(attrs, rng)
    obj = attrs["objects"][0]
    assert {obj["color"], obj["shape"], obj["direction"]} <= set(caption.split()), caption
    captions.add(caption.replace(obj["color"], "").replace(obj["shape"], ""))
  assert len(captions) > 20


def test_bad_input_raises():
  with pytest.raises(ValueError, match="variant"):
    render.sample_attributes(np.random.default_rng(0), "fancy")
  with pytest.raises(ValueError, match="resolution"):
    render.render_clip(_simple(), 4, 4)
  with pytest.raises(ValueError, match="shape"):
    render.render_clip(_simple(shape="star"), 4, 16)


def test_every_path_stays_inside_the_frame():
  for size, speed, path, direction in itertools.product(render.SIZES, render.SPEEDS, render.PATHS,
                                                        render.DIRECTIONS):
    for offset, start in ((0.0, 0.0), (1.0, 1.0)):
      obj = {"size": size, "speed": speed, "path": path, "direction": direction,
             "offset": offset, "start": start}
      x, y, s = render.object_trajectory(obj, 8, 32)
      assert (x - s / 2 >= -1e-6).all() and (x + s / 2 <= 32 + 1e-6).all(), obj
      assert (y - s / 2 >= -1e-6).all() and (y + s / 2 <= 32 + 1e-6).all(), obj
