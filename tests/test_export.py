"""`jax.export` of the sampler: the deserialized function gives the sampler's own videos."""
import numpy as np
import pytest

from lumiere_jax import sample

PROMPTS = ["a red square moves up", "a blue circle moves down"]


def test_export_round_trip(trained, tmp_path):
  loaded = sample.load_sampler(str(trained[1]))
  config = loaded.config.copy_and_resolve_references()
  config.sample.batch_size = 2  # The export's batch size, so both draw the same noise.
  sampler = sample.Sampler(config, loaded.model, loaded.params, loaded.tokenizer)
  path = sample.export_sampler(sampler, str(tmp_path / "export"), batch_size=2)
  serve = sample.load_exported(path)
  assert serve.meta["video_shape"] == list(sampler.video_shape)
  np.testing.assert_array_equal(serve(PROMPTS, seed=5), sampler(PROMPTS, seed=5))
  np.testing.assert_array_equal(serve(PROMPTS[:1], seed=5), sampler(PROMPTS[:1], seed=5))
  with pytest.raises(ValueError, match="3 prompts for an export with batch_size=2"):
    serve(PROMPTS + PROMPTS[:1])
  with pytest.raises(FileNotFoundError, match="not an exported sampler"):
    sample.load_exported(str(tmp_path))
