"""The domain classifier: trains on the tiny dataset, saves next to it, reloads, scores FD."""
import os
import types

import numpy as np
import pytest

from conftest import load_experiment
from lumiere_jax.data import datasets
from lumiere_jax.evaluate import classifier as classifier_lib


@pytest.fixture(scope="module")
def setup(data_dir):
  del data_dir  # Sets $LUMIERE_DATA_DIR.
  config = load_experiment("tiny", "test")
  builder = datasets.build_dataset(config.data)
  clf = classifier_lib.load_or_train(config.data, config.eval.classifier, show_progress=False)
  videos = classifier_lib.read_split(builder, "validation", ())[0]
  return config, builder, clf, videos


def test_trains_and_saves_next_to_dataset(setup):
  config, builder, clf, videos = setup
  path = classifier_lib.cache_path(builder, config.eval.classifier)
  assert os.path.dirname(path) == builder.data_dir and os.path.isfile(path)
  assert set(clf.meta["validation"]) == {"color_acc", "shape_acc", "direction_acc"}
  features = clf.features(videos)
  assert features.shape == (len(videos), config.eval.classifier.feature_dim)
  assert features.dtype == np.float64 and np.isfinite(features).all()
  predicted = clf.predict(videos[:3])
  assert predicted["color"][0] in clf.label_names["color"] and len(predicted["shape"]) == 3


def test_learns_the_labels(setup):
  """With the tiny config's classifier settings (300 steps), on the test config's 64 training
  clips: it fits them, and colour and shape carry over to the held-out clips. Measured: train
  1.00 / 0.98 / 0.98, validation colour 1.00, shape 0.81, direction 0.44 (16 clips; direction
  needs more than 64 clips to generalise)."""
  config, builder, _, _ = setup
  cfg = load_experiment("tiny", "t2v").eval.classifier
  clf = classifier_lib.train(builder, cfg, show_progress=False)
  videos, targets, _ = classifier_lib.read_split(builder, "train", cfg.labels,
                                                 cfg.max_train_examples)
  assert len(videos) == config.data.num_train
  predicted = clf.predict(videos)
  for attr in cfg.labels:
    names = np.asarray(clf.label_names[attr])
    accuracy = np.mean(names[targets[attr]] == np.asarray(predicted[attr]))
    assert accuracy >= 0.9, (attr, accuracy)
  chance = {k: 1 / len(clf.label_names[k]) for k in ("color", "shape")}
  print("validation", clf.meta["validation"], "chance", chance)
  assert clf.meta["validation"]["color_acc"] >= 0.9
  assert clf.meta["validation"]["shape_acc"] >= max(0.6, 1.5 * chance["shape"])


def test_reload_gives_same_features(setup):
  config, _, clf, videos = setup
  again = classifier_lib.load_or_train(config.data, config.eval.classifier)
  np.testing.assert_allclose(again.features(videos), clf.features(videos), rtol=1e-6)
  # Features of a batch do not depend on its order or on the other clips.
  np.testing.assert_allclose(clf.features(videos[::-1])[::-1], clf.features(videos), atol=1e-5)


def test_frechet_distance(setup):
  _, _, clf, videos = setup
  real = clf.features(videos)
  assert abs(classifier_lib.frechet_distance(clf, videos, real)) < 1e-3
  # Clips with inverted colors are far from the real ones.
  assert classifier_lib.frechet_distance(clf, 255 - videos, real) > 1e-3
  with pytest.raises(ValueError, match="at least 2 videos, got 1"):
    classifier_lib.frechet_distance(clf, videos[:1], real)


def test_bad_settings_and_data():
  with pytest.raises(ValueError, match="Unknown classifier settings.*depth"):
    classifier_lib.settings({"depth": 3})
  builder = types.SimpleNamespace(info=types.SimpleNamespace(features={}, full_name="folder"))
  with pytest.raises(ValueError, match="no ClassLabel features"):
    classifier_lib.train(builder)
  clf = classifier_lib.Classifier(None, None, {})
  with pytest.raises(ValueError, match="uint8"):
    clf.features(np.zeros((1, 2, 4, 4, 3), np.float32))
