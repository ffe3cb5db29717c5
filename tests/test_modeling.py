"""modeling: the model kind named by config.model.cond_channels."""
import pytest

from conftest import load_experiment
from lumiere_jax import errors
from lumiere_jax import modeling


@pytest.mark.parametrize("experiment, arg, kind", [
    ("tiny", "", "t2v"), ("tiny", "cond", "masked"), ("ssr", "test", "ssr"), ("base", "", "t2v")])
def test_each_experiment_has_its_model_kind(experiment, arg, kind):
  config = load_experiment(experiment, arg)
  assert modeling.model_kind(config) == kind
  assert modeling.KINDS[kind] == config.model.cond_channels


def test_an_unknown_cond_channel_count_is_a_user_error():
  config = load_experiment("tiny")
  config.model.cond_channels = 2
  with pytest.raises(errors.UserError, match=r"model.cond_channels=2 is not a model kind: use "
                                             r"one of 0 \(t2v\), 3 \(ssr\), 4 \(masked\)"):
    modeling.model_kind(config)
