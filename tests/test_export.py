"""`jax.export` of the sampler: the deserialized function gives the sampler's own videos."""
import jax
import numpy as np
import pytest

from lumiere_jax import sample
from lumiere_jax import sharding as sharding_lib

PROMPTS = ["a red square moves up", "a blue circle moves down"]


def test_export_round_trip(trained, tmp_path):
  loaded = sample.load_sampler(str(trained[1]))
  config = loaded.config.copy_and_resolve_references()
  # The export runs on one device with batch 2: the same program for the sampler, so that the
  # videos agree bitwise (each prompt's noise depends only on the seed and its index).
  config.sample.batch_size = 2
  config.mesh.shape = (1, 1)
  mesh = sharding_lib.create_mesh(config.mesh, jax.devices()[:1])
  sampler = sample.Sampler(config, loaded.model, loaded.params, loaded.tokenizer, mesh=mesh)
  path = sample.export_sampler(sampler, str(tmp_path / "export"), batch_size=2)
  serve = sample.load_exported(path)
  assert serve.meta["video_shape"] == list(sampler.video_shape)
  np.testing.assert_array_equal(serve(PROMPTS, seed=5), sampler(PROMPTS, seed=5))
  np.testing.assert_array_equal(serve(PROMPTS[:1], seed=5), sampler(PROMPTS[:1], seed=5))
  with pytest.raises(ValueError, match="3 prompts for an export with batch_size=2"):
    serve(PROMPTS + PROMPTS[:1])
  with pytest.raises(FileNotFoundError, match="not an exported sampler"):
    sample.load_exported(str(tmp_path))
