"""The paper-scale base config (experiments/base.py) by shapes only: nothing is allocated."""
import flax
import flax.linen as nn
import jax
import numpy as np
import pytest

from conftest import load_experiment
from lumiere_jax import modeling
from lumiere_jax import sharding as sharding_lib
from lumiere_jax.models import model as model_lib
from lumiere_jax.models import unet


@pytest.fixture(scope="module")
def paper_params():
  """The paper-scale STUNet's boxed parameter shapes (every paper variant has this model)."""
  config = load_experiment("base")
  return modeling.abstract_params(modeling.build(config, config.data.vocab_size), config)


def _per_device_fraction(config, params):
  """The fraction of all parameter values one of the 8 test devices holds under `config.mesh`."""
  mesh = sharding_lib.create_mesh(config.mesh)
  shardings = sharding_lib.logical_to_shardings(params, mesh, config.mesh)
  leaves = jax.tree.leaves(nn.meta.unbox(params))
  total = sum(np.prod(p.shape) for p in leaves)
  held = sum(np.prod(s.shard_shape(p.shape)) for p, s in zip(leaves, jax.tree.leaves(shardings)))
  print(f"{config.variant}: one device holds {held / total:.4f} of the params")
  return held / total


def _without(config, *keys):
  """The config as a flat dict, without `keys` (dotted) and the variant name."""
  flat = flax.traverse_util.flatten_dict(config.to_dict(), sep=".")
  return {k: v for k, v in flat.items() if k not in keys + ("variant",)}


def test_fsdp_dp_and_remat_share_the_paper_model_and_differ_as_named(paper_params):
  fsdp = load_experiment("base", "fsdp")
  assert _without(fsdp) == _without(load_experiment("base"))  # The default is fsdp.
  assert not fsdp.model.remat and fsdp.mesh.gather_params
  assert sharding_lib.batch_axes(fsdp.mesh) == ("data", "fsdp")
  # FSDP: the params are sharded over all 8 devices (the few that 8 does not divide stay whole).
  assert _per_device_fraction(fsdp, paper_params) < 0.126
  remat = load_experiment("base", "remat")
  assert remat.model.remat and _without(remat, "model.remat") == _without(fsdp, "model.remat")
  dp = load_experiment("base", "dp")
  assert _without(dp, "mesh.shape", "mesh.logical_axis_rules") == _without(
      fsdp, "mesh.shape", "mesh.logical_axis_rules")
  assert _per_device_fraction(dp, paper_params) == 1.0  # Replicated on every device.
  assert sharding_lib.create_mesh(dp.mesh).shape == {"data": 8, "fsdp": 1}


@pytest.mark.parametrize("variant,axis,k", [("frames4", "frames", 4), ("height8", "height", 8)])
def test_split_variants_split_each_clip_over_k_devices(variant, axis, k, paper_params):
  config = load_experiment("base", variant)
  fsdp = load_experiment("base", "fsdp")
  changed = ("model.remat", "mesh.shape", "mesh.logical_axis_rules")
  assert config.model.remat and _without(config, *changed) == _without(fsdp, *changed)
  assert sharding_lib.create_mesh(config.mesh).shape == {"data": 8 // k, "fsdp": k}
  rules = dict(sharding_lib.rules(config.mesh))
  assert rules["batch"] == "data" and rules[axis] == "fsdp"  # Clips over data, a clip over K.
  assert _per_device_fraction(config, paper_params) < 0.126  # Params still over all 8.
  unet.check_frames(config.model, config.data.num_frames)


def test_mid_is_a_cpu_sized_stunet():
  config = load_experiment("base", "mid")
  unet.check_frames(config.model, config.data.num_frames)
  assert unet.temporal_factor(config.model) == 4  # 16 frames -> 4 at the coarsest level.
  assert config.mesh.shape == (-1, 1) and not config.model.remat  # Data parallel, tiny.py's.
  model = modeling.build(config, config.data.vocab_size)
  n = model_lib.count_params(modeling.abstract_params(model, config))
  print(f"mid: {n / 1e6:.1f}M params")
  assert 5e6 < n < 5e7, n


def test_paper_scale_shapes_and_size(paper_params):
  config = load_experiment("base")
  assert (config.data.num_frames, config.data.resolution, config.data.fps) == (80, 128, 16)
  assert unet.temporal_factor(config.model) == 8  # 80 frames -> 10 at the coarsest level.
  model = modeling.build(config, config.data.vocab_size)
  params = nn.meta.unbox(paper_params)
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
