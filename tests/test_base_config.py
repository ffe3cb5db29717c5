"""The paper-scale base config (experiments/base.py) by shapes only: nothing is allocated."""
import jax
import pytest

from conftest import load_experiment
from lumiere_jax import modeling
from lumiere_jax.models import model as model_lib
from lumiere_jax.models import unet


@pytest.mark.parametrize("variant", ["fsdp", "dp", "remat", "mid", "frames4", "height8"])
def test_variants_load(variant):
  config = load_experiment("base", variant)
  unet.check_frames(config.model, config.data.num_frames)


def test_paper_scale_shapes_and_size():
  config = load_experiment("base")
  assert (config.data.num_frames, config.data.resolution, config.data.fps) == (80, 128, 16)
  assert unet.temporal_factor(config.model) == 8  # 80 frames -> 10 at the coarsest level.
  model = modeling.build(config, config.data.vocab_size)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             *modeling.dummy_inputs(config))["params"])
  n = model_lib.count_params(params)
  assert 1.0e9 < n < 2.0e9, n  # Imagen-base-sized (~2B) U-Net, inflated.
  x, t, emb, mask, cond = modeling.dummy_inputs(config)
  assert emb.shape == (1, config.data.max_text_len, 4096)  # Precomputed T5-XXL embeddings.
  out = jax.eval_shape(lambda p: model.apply({"params": p}, x, t, emb, mask, cond), params)
  assert out.shape == x.shape


@pytest.mark.parametrize("variant", ["huge", "frames", "frames0", "width4"])
def test_unknown_variant(variant):
  with pytest.raises(ValueError, match="unknown base variant"):
    load_experiment("base", variant)
