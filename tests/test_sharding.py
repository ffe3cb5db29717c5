"""Logical-axis sharding: the layers' activation constraints must reach the compiled program."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from conftest import load_experiment
from lumiere_jax import modeling
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import train


def _mesh_cfg():
  return ml_collections.ConfigDict(dict(shape=(4, 2), axes=("data", "fsdp"),
                                        logical_axis_rules=(("batch", ("data", "fsdp")),)))


def test_under_rules_turns_logical_constraints_into_sharding_constraints():
  mesh_cfg = _mesh_cfg()
  mesh = sharding_lib.create_mesh(mesh_cfg)
  fn = lambda x: nn.with_logical_constraint(x * 2, ("batch", None)) + 1
  x = jnp.ones((8, 5))
  # Without the mesh and rules in scope flax silently drops the constraint.
  assert "sharding_constraint" not in jax.jit(fn).lower(x).as_text()
  text = jax.jit(sharding_lib.under_rules(fn, mesh, mesh_cfg)).lower(x).as_text()
  assert text.count("sharding_constraint") == 1
  assert '{"data", "fsdp"}' in text
  # A batch the mesh does not divide (e.g. 3 eval prompts on 8 devices) still runs.
  out = jax.jit(sharding_lib.under_rules(fn, mesh, mesh_cfg))(jnp.ones((3, 5)))
  assert float(out.sum()) == 45.0


def _lowered_train_step(gather_params):
  config = load_experiment("tiny", "test")
  config.mesh.update(shape=(4, 2), gather_params=gather_params)
  mesh = sharding_lib.create_mesh(config.mesh)
  model = modeling.build(config, vocab_size=64)
  _, abstract, state_sh, (tx, schedule) = train.create_train_state(model, config, mesh)
  batch_sh = sharding_lib.batch_sharding(mesh, config.mesh)
  x, _, tokens, mask, _ = modeling.dummy_inputs(config)
  sds = lambda a: jax.ShapeDtypeStruct((8,) + a.shape[1:], a.dtype, sharding=batch_sh)
  batch = dict(video=sds(x), tokens=sds(tokens), text_mask=sds(mask))
  step = jax.jit(train.make_train_step(model, tx, schedule, config, mesh),
                 in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None))
  return step.lower(abstract, batch).as_text(), abstract.params


def test_train_step_constrains_activations_to_the_batch_axes():
  text, params = _lowered_train_step(gather_params=False)
  res_blocks = sum(1 for k in params["unet"] if "_res_" in k)
  # At least one constraint per res block, each on the batch axes (forward and backward).
  assert text.count("sharding_constraint") >= 2 * res_blocks
  assert '{"data", "fsdp"}' in text


def test_gather_params_replicates_every_param_in_the_step():
  without, params = _lowered_train_step(gather_params=False)
  text, _ = _lowered_train_step(gather_params=True)
  replicated = lambda t: t.count("sharding_constraint") - without.count("sharding_constraint")
  # One replicating constraint per param leaf (and its transpose on the gradient).
  assert replicated(text) >= len(jax.tree.leaves(params))
  assert "sharding_constraint" in text and "{}" in text


def test_under_rules_rejects_a_rule_naming_a_missing_mesh_axis():
  mesh_cfg = _mesh_cfg()
  mesh = sharding_lib.create_mesh(mesh_cfg)
  mesh_cfg.logical_axis_rules = (("batch", "model"),)
  fn = sharding_lib.under_rules(lambda x: nn.with_logical_constraint(x, ("batch", None)), mesh,
                                mesh_cfg)
  with pytest.raises(Exception, match="model"):
    jax.jit(fn).lower(jnp.ones((8, 5)))


@pytest.mark.parametrize("axis", ["frames", "height"])
def test_a_clip_split_across_chips_gives_the_unsplit_output(axis):
  # experiments/base.py:frames2 / height2 rules on the tiny model: the batch over `data`, every
  # activation's frames (rows) over `fsdp`. XLA adds the halo exchanges of the convolutions
  # and gathers the split axis for attention; the function must not change.
  config = load_experiment("tiny", "test")
  split = load_experiment("base", f"{axis}2").mesh
  config.mesh.update(shape=(4, 2), logical_axis_rules=split.logical_axis_rules)
  mesh = sharding_lib.create_mesh(config.mesh)
  model = modeling.build(config, vocab_size=64)
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                               *modeling.dummy_inputs(config))["params"])
  leaves, treedef = jax.tree.flatten(nn.meta.unbox(abstract))
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  # Random values everywhere (zero-initialised layers too), so every path carries signal.
  params = treedef.unflatten([0.3 * jax.random.normal(k, a.shape, a.dtype)
                              for k, a in zip(keys, leaves)])
  x, t, tokens, mask, _ = modeling.dummy_inputs(config, batch_size=4)
  x = jax.random.normal(jax.random.PRNGKey(2), x.shape)
  t = jnp.linspace(0.1, 0.9, 4)
  tokens = jnp.arange(tokens.size, dtype=jnp.int32).reshape(tokens.shape) % 60 + 1
  mask = jnp.ones(mask.shape, bool)
  apply = lambda p, *a: model.apply({"params": p}, *a)
  want = jax.jit(apply)(params, x, t, tokens, mask)
  split_apply = jax.jit(sharding_lib.under_rules(apply, mesh, config.mesh))
  lowered = split_apply.lower(params, x, t, tokens, mask).as_text()
  dims = {"frames": '[{"data"}, {"fsdp"}, {}, {}, {}]', "height": '[{"data"}, {}, {"fsdp"}, {}, {}]'}
  assert dims[axis] in lowered  # The video activations are split as the rules say.
  got = split_apply(params, x, t, tokens, mask)
  assert float(jnp.abs(got - want).max()) < 1e-4 * float(jnp.abs(want).max())
