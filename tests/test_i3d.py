"""I3D with random weights: shapes, invariances, weights-file checks, FVD, IS, UCF101 prompts."""
import numpy as np
import pytest

from lumiere_jax.evaluate import i3d

NUM_CLASSES = 10  # A small logits layer keeps the test fast; the trunk is the full I3D.


@pytest.fixture(scope="module")
def weights():
  return i3d.random_weights(0, NUM_CLASSES)


@pytest.fixture(scope="module")
def model(weights):
  # 32x32 inputs instead of 224x224: same network, ~50x less compute.
  return i3d.I3D(i3d.variables_from_weights(weights, NUM_CLASSES), NUM_CLASSES, resolution=32)


def _videos(n, seed=0, frames=8):
  return np.random.default_rng(seed).integers(0, 256, (n, frames, 16, 16, 3), dtype=np.uint8)


def test_expected_shapes_follow_the_reference():
  shapes = i3d.expected_shapes()
  assert shapes["Conv3d_1a_7x7/conv_3d/w"] == (7, 7, 7, 3, 64)
  assert shapes["Conv3d_1a_7x7/batch_norm/moving_variance"] == (64,)
  assert shapes["Mixed_3b/Branch_3/Conv3d_0b_1x1/conv_3d/w"] == (1, 1, 1, 192, 32)
  assert shapes["Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"] == (3, 3, 3, 32, 128)
  assert shapes["Mixed_5c/Branch_0/Conv3d_0a_1x1/conv_3d/w"] == (1, 1, 1, 832, 384)
  assert shapes["Logits/Conv3d_0c_1x1/conv_3d/w"] == (1, 1, 1, 1024, 400)
  assert shapes["Logits/Conv3d_0c_1x1/conv_3d/b"] == (400,)
  assert "Logits/Conv3d_0c_1x1/batch_norm/beta" not in shapes
  # Inception-v1 I3D has ~12.3M conv weights plus the 400-way logits.
  assert 12_000_000 < sum(np.prod(s) for s in shapes.values()) < 13_000_000


def test_shapes_and_invariances(model):
  videos = _videos(3)
  logits = model(videos)
  assert logits.shape == (3, NUM_CLASSES) and np.isfinite(logits).all()
  np.testing.assert_allclose(model(videos[::-1]), logits[::-1], rtol=1e-4, atol=1e-4)
  twice = model(np.stack([videos[0], videos[0]]))
  np.testing.assert_allclose(twice[0], twice[1], rtol=1e-5)
  np.testing.assert_allclose(twice[0], logits[0], rtol=1e-4, atol=1e-4)
  assert not np.allclose(logits[0], logits[1])


def test_preprocess_matches_reference_range():
  x = np.asarray(i3d.preprocess(np.array([[[[[0, 255, 128]]]]], np.uint8)))
  assert x.shape == (1, 1, 224, 224, 3)
  np.testing.assert_allclose(x[0, 0, 100, 7], [-1.0, 1.0, 2 * 128 / 255 - 1], atol=1e-6)
  with pytest.raises(ValueError, match="uint8"):
    i3d.preprocess(np.zeros((1, 1, 4, 4, 3), np.float32))


def test_weights_file_round_trip_and_sonnet_layout(weights, tmp_path, model):
  sonnet = dict(weights)
  name = "Mixed_4b/Branch_1/Conv3d_0b_3x3/batch_norm/moving_mean"
  sonnet[name] = sonnet[name].reshape(1, 1, 1, 1, -1)
  path = tmp_path / "i3d.npz"
  np.savez(path, **sonnet)
  loaded = i3d.I3D.from_file(str(path), num_classes=NUM_CLASSES, resolution=32)
  videos = _videos(2, seed=1)
  np.testing.assert_allclose(loaded(videos), model(videos), rtol=1e-5)


def test_bad_weights_files(weights, tmp_path):
  wrong = dict(weights)
  wrong["Mixed_3c/Branch_0/Conv3d_0a_1x1/conv_3d/w"] = np.zeros((1, 1, 1, 256, 64), np.float32)
  with pytest.raises(ValueError, match=r"'Mixed_3c/Branch_0/Conv3d_0a_1x1/conv_3d/w' has shape "
                     r"\(1, 1, 1, 256, 64\), expected \(1, 1, 1, 256, 128\)"):
    i3d.variables_from_weights(wrong, NUM_CLASSES)
  missing = {k: v for k, v in weights.items() if "Mixed_5c" not in k}
  with pytest.raises(ValueError, match="lack 24 variables, e.g. 'Mixed_5c/"):
    i3d.variables_from_weights(missing, NUM_CLASSES)
  # The 400-way checkpoint loaded as a 10-way model: the logits shape is named.
  with pytest.raises(ValueError, match="Logits/Conv3d_0c_1x1/conv_3d/b"):
    i3d.variables_from_weights(weights, 400)
  text = tmp_path / "weights.npz"
  text.write_text("not a zip")
  with pytest.raises(ValueError, match="not a readable .npz"):
    i3d.load_weights(str(text), NUM_CLASSES)
  single = tmp_path / "weights.npy"
  np.save(single, np.zeros(3))
  with pytest.raises(ValueError, match="single array"):
    i3d.load_weights(str(single), NUM_CLASSES)
  with pytest.raises(FileNotFoundError, match="not found"):
    i3d.load_weights(str(tmp_path / "nope.npz"))


def test_fvd(model):
  a, b = _videos(4, seed=2), _videos(4, seed=3) // 4
  with pytest.warns(UserWarning, match="unreliable"):
    assert abs(i3d.fvd(a, a, model=model)) < 1e-3
    assert i3d.fvd(a, b, model=model) > 1e-3
  with pytest.raises(ValueError, match="videos_b has 1"):
    i3d.fvd(a, b[:1], model=model)
  with pytest.raises(ValueError, match="weights_path"):
    i3d.fvd(a, b)


def test_inception_score_on_known_distributions():
  k = 5
  # Confident and uniformly spread over classes: IS = number of classes.
  assert i3d.inception_score(np.eye(k)[np.arange(20) % k])[0] == pytest.approx(k)
  # Every sample the same prediction: IS = 1.
  assert i3d.inception_score(np.tile([[0.7, 0.2, 0.1]], (8, 1)))[0] == pytest.approx(1.0)
  # Confident over 2 of 4 classes, in 2 splits: 2 in each.
  mean, std = i3d.inception_score(np.eye(4)[[0, 1] * 4], num_splits=2)
  assert mean == pytest.approx(2.0) and std == pytest.approx(0.0)
  with pytest.raises(ValueError, match="summing to 1"):
    i3d.inception_score(np.ones((3, 3)))


def test_ucf101_prompts():
  assert i3d.ucf101_prompts(["ApplyEyeMakeup", "YoYo", "PlayingDaf", "JumpingJack",
                             "CleanAndJerk"]) == [
      "apply eye makeup", "yo yo", "playing daf", "jumping jack", "clean and jerk"]
  with pytest.raises(ValueError, match="no words"):
    i3d.ucf101_prompts(["--"])
