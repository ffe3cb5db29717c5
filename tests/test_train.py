"""End-to-end training on the `test` config: data -> train -> checkpoint -> samples -> resume."""
import json
import os
import shutil

import flax

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import load_experiment
from lumiere_jax import sample
from lumiere_jax import train
from lumiere_jax import workdir as workdir_lib
from lumiere_jax.data import datasets
from lumiere_jax.evaluate import classifier as classifier_lib
from lumiere_jax.models import unet


def test_train_writes_checkpoints_metrics_and_samples(trained):
  config, workdir, summary = trained
  assert summary["end_step"] == config.train.steps
  steps = sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
  assert steps == [2, 4]
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl", encoding="utf-8")]
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == [2, 4]
  assert all(np.isfinite(r["loss"]) and r["step_time"] > 0 for r in train_rows)
  alignment = [r for r in rows if "eval/t2v/color_acc" in r]  # Scored: test_heldout_alignment.
  assert len(alignment) == 1 and alignment[0]["eval/t2v/num_samples"] == (
      config.train.eval_prompts * config.train.eval_seeds)
  out = workdir / "samples" / "4"
  names = sorted(os.listdir(out))
  assert "grid.png" in names and "prompts.txt" in names
  heldout = sorted(os.listdir(out / "heldout"))
  assert "grid.png" in heldout and len([n for n in heldout if n.endswith(".mp4")]) == 8
  assert len([n for n in names if n.endswith(".mp4")]) == len(config.sample.prompts)
  assert len([n for n in names if n.endswith(".gif")]) == len(config.sample.prompts)
  assert os.path.exists(workdir / "tensorboard")
  assert os.path.exists(workdir_lib.tokenizer_path(workdir))


class _Replay:
  """A stand-in text-to-video sampler that returns the given clips for any prompts and seed."""
  cond_channels = 0

  def __init__(self, clips):
    self.clips = clips

  def __call__(self, prompts, seed):
    del prompts, seed
    return self.clips


def test_heldout_alignment_scores_the_samples_against_their_captions(trained):
  """The end-of-training score: the test clips of the captions themselves score 1 on colour and
  direction, and the same clips played backwards 0 on direction (their colours still right)."""
  config, _, _ = trained
  builder = datasets.build_dataset(config.data)
  clips = classifier_lib.read_split(builder, "test", (), config.train.eval_prompts)[0]
  real = train.heldout_alignment(_Replay(clips), builder, config)[0]["t2v"]
  assert real["color_acc"] == real["direction_acc"] == 1.0, real
  assert real["background_error"] == 0.0 and real["num_samples"] == 8
  backwards = train.heldout_alignment(_Replay(clips[:, ::-1]), builder, config)[0]["t2v"]
  assert backwards["color_acc"] == 1.0 and backwards["direction_acc"] == 0.0, backwards


def test_text_encoder_params_train(trained):
  """The text pathway learns: every text-encoder leaf moves between the two checkpoints."""
  config, workdir, _ = trained
  steps = (2, 4)
  trees = [flax.traverse_util.flatten_dict(
      sample.load_params(str(workdir), config, step, use_ema=False)[1]) for step in steps]
  text = [p for p in trees[0] if p[0] == "text_encoder"]
  assert len(text) > 4
  for path in text:
    assert not np.array_equal(np.asarray(trees[0][path]), np.asarray(trees[1][path])), (
        "/".join(path) + f" did not change from step {steps[0]} to {steps[1]}")


def test_rerun_resumes_from_checkpoint_and_reproduces_the_losses(trained, tmp_path):
  """The shared run as a crash after step 2 leaves it (checkpoint 4 and later metrics gone):
  a rerun resumes at step 2 and logs step 4's loss exactly as the uninterrupted run did."""
  config, workdir, _ = trained
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)  # Other tests use the shared run as it is.
  shutil.rmtree(copy / "checkpoints" / "4")
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl", encoding="utf-8")]
  (copy / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= 2), encoding="utf-8")
  config = config.copy_and_resolve_references()
  config.train.sample_at_end = False
  summary = train.train_and_evaluate(config, str(copy))
  assert summary["start_step"] == 2 and summary["end_step"] == 4
  resumed = [json.loads(l) for l in open(copy / "metrics.jsonl", encoding="utf-8")]
  losses = lambda rs: [(r["step"], r["loss"]) for r in rs if "loss" in r]
  assert losses(resumed) == losses(rows)


def test_resume_under_a_changed_model_config_names_the_change(trained, tmp_path):
  """Not "corrupt, delete it": the step is intact, the --config is what changed; the run's own
  config.json is kept."""
  config, workdir, _ = trained
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  own_config = (copy / "config.json").read_text()
  changed = config.copy_and_resolve_references()
  changed.model.channels = (16, 48)
  with changed.unlocked():
    changed.model.new_key = 1  # A key the checkpoint's config does not have at all.
  changed.train.steps = 6
  with pytest.raises(train.ckpt_lib.CheckpointError) as error:
    train.train_and_evaluate(changed, str(copy))
  message = str(error.value)
  assert "step 4" in message and "written with another config" in message, message
  assert "model.channels: [16, 32] in the checkpoint, [16, 48] now" in message, message
  assert "model.new_key: None in the checkpoint, 1 now" in message, message
  assert "delete" not in message
  assert (copy / "config.json").read_text() == own_config


def test_two_stage_t2i_then_inflated_stunet_trains_only_temporal_params(tmp_path, data_dir):
  """Stage 1 trains the T2I U-Net; stage 2 inflates it and trains only temporal params."""
  del data_dir
  t2i = load_experiment("tiny", "test")
  t2i.model.temporal = False
  t2i.train.sample_at_end = False
  train.train_and_evaluate(t2i, str(tmp_path / "t2i"))
  stunet = load_experiment("tiny", "inflate")
  test = load_experiment("tiny", "test")
  for section in ("data", "model", "text", "train", "sample"):
    stunet[section] = test[section]
  stunet.init_from = str(tmp_path / "t2i")
  stunet.train.sample_at_end = False
  train.train_and_evaluate(stunet, str(tmp_path / "stunet"))

  source = flax.traverse_util.flatten_dict(
      sample.load_sampler(str(tmp_path / "t2i")).params)  # EMA params: what init_from copies.
  trained_params = flax.traverse_util.flatten_dict(
      sample.load_sampler(str(tmp_path / "stunet"), use_ema=False).params)
  temporal = {p for p in trained_params if unet.is_temporal_path(p)}
  assert temporal and set(trained_params) - temporal == set(source)
  for path, value in source.items():
    np.testing.assert_array_equal(np.asarray(trained_params[path]), np.asarray(value),
                                  err_msg="/".join(path))
  kernel = np.asarray(trained_params[("unet", "temporal_down_0", "conv", "kernel")])
  identity = np.zeros_like(kernel)
  identity[1] = np.eye(kernel.shape[1])
  assert not np.array_equal(kernel, identity), "temporal params did not train"


def test_ema_update_follows_its_formula():
  ema = {"a": np.array([1.0, -2.0], np.float32), "b": {"c": np.float32(4.0)}}
  params = {"a": np.array([3.0, 0.0], np.float32), "b": {"c": np.float32(0.0)}}
  for step, max_decay in ((0, 0.99), (5, 0.99), (1000, 0.99), (1000, 0.9)):
    decay = min(max_decay, (1.0 + step) / (10.0 + step))
    out = train.ema_update(ema, params, np.int32(step), max_decay)
    np.testing.assert_allclose(out["a"], decay * ema["a"] + (1 - decay) * params["a"], rtol=1e-6)
    np.testing.assert_allclose(out["b"]["c"], decay * 4.0, rtol=1e-6)
  np.testing.assert_allclose(train.ema_update(ema, params, np.int32(0), 0.99)["a"],
                             [2.8, -0.2], rtol=1e-6)  # Decay 0.1 at step 0: mostly the params.


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="not writable"):
    train.check_workdir(str(blocker / "sub"))


def test_nan_loss_stops_keeping_the_last_good_checkpoint_and_closes_writer_and_manager(
    tmp_path, data_dir, monkeypatch):
  """A NaN batch at step 3 of 4 (checkpoints every 2): the run raises, step 2's checkpoint stays
  and nothing later is saved. The batch, not the config, is poisoned, so the train step is the
  program the `trained` run compiled (a cache hit)."""
  del data_dir
  closed = []
  for cls in (train.metrics_lib.MetricWriter, train.ckpt_lib.ocp.CheckpointManager):
    original = cls.close
    monkeypatch.setattr(cls, "close", lambda self, original=original, cls=cls: (
        closed.append(cls.__name__), original(self)))
  make_global_batch, calls = train.pipeline.make_global_batch, []

  def poisoned(batch, *args):
    calls.append(1)
    if len(calls) == 3:
      batch = dict(batch, video=np.full_like(batch["video"], np.nan))
    return make_global_batch(batch, *args)

  monkeypatch.setattr(train.pipeline, "make_global_batch", poisoned)
  config = load_experiment("tiny", "test")
  config.train.sample_at_end = False
  with pytest.raises(FloatingPointError, match="non-finite loss nan at step 3.*checkpoint: 2"):
    train.train_and_evaluate(config, str(tmp_path))
  assert sorted(s for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == ["2"]
  assert sorted(closed) == ["CheckpointManager", "MetricWriter"]


def test_precomputed_text_features_train_and_sample(tmp_path, data_dir):
  """`text.kind='precomputed'`: the dataset's stored caption features feed the train step and
  the same frozen encoder turns prompts into features at sampling time."""
  del data_dir
  config = load_experiment("tiny", "test")
  config.data.text_embedding_dim = 8
  config.text.kind = "precomputed"
  config.train.update(steps=2, eval_prompts=0)
  config.sample.prompts = config.sample.prompts[:1]
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["end_step"] == 2
  assert not os.path.exists(workdir_lib.tokenizer_path(tmp_path))  # Nothing to tokenize with.
  assert len([n for n in os.listdir(tmp_path / "samples" / "2") if n.endswith(".mp4")]) == 1
  sampler = sample.load_sampler(str(tmp_path))
  videos = sampler(["a red square moves up"], seed=0)
  assert videos.shape == (1, 4, 16, 16, 3)
  np.testing.assert_array_equal(videos, sampler(["a red square moves up"], seed=0))
  config.data.text_embedding_dim = 0  # No stored features to read.
  with pytest.raises(ValueError, match=r"set data.text_embedding_dim > 0 \(their dim\), got 0"):
    train.train_and_evaluate(config, str(tmp_path / "bad"))


def _fixed_level_loss(denoise_fn, x0, text_emb, text_mask, cond, rng, diff_cfg, loss_mask=None):
  """The model's x0 error at one noise level, without noise: a per-example mean with no random
  draw, so no split of the batch can change it (the diffusion loss draws per micro-batch)."""
  del rng, diff_cfg, loss_mask
  pred = denoise_fn(0.5 * x0, jnp.full((x0.shape[0],), 0.5), text_emb, text_mask, cond)
  return jnp.mean(jnp.square(pred - x0)), {}


@pytest.fixture(scope="module")
def sgd_steps():
  """(state, batch, {grad_accum: compiled tiny:test train step}) with `_fixed_level_loss` and SGD
  (learning rate in the optimizer state: 1, so a step subtracts the gradient itself)."""
  config = load_experiment("tiny", "test")
  # The accumulation does not depend on the model: the smallest one compiles fastest.
  config.model.update(channels=(8, 16), pixel_skip=False, position_code=False, frame_film=False,
                      text_layout=False)
  mesh = train.sharding_lib.create_mesh(config.mesh, jax.devices()[:1])
  model = train.modeling.build(config, config.data.vocab_size)
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)
  params = flax.linen.meta.unbox(jax.jit(model.init)(
      jax.random.PRNGKey(0), *train.modeling.dummy_inputs(config))["params"])
  state = train.TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=params,
                           opt_state=tx.init(params), rng=jax.random.PRNGKey(1))
  rng = np.random.default_rng(0)
  x = train.modeling.dummy_inputs(config, config.train.batch_size)[0]
  tokens = rng.integers(1, config.data.vocab_size, (x.shape[0], config.data.max_text_len))
  batch = dict(video=rng.uniform(-1, 1, x.shape).astype(np.float32),
               tokens=tokens.astype(np.int32), text_mask=np.ones(tokens.shape, bool))
  steps = {}
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(train.losses, "diffusion_loss", _fixed_level_loss)
    for accum in (1, 2):
      config.train.grad_accum = accum
      step = train.make_train_step(model, tx, optax.constant_schedule(1.0), config, mesh)
      steps[accum] = jax.jit(step).lower(state, batch).compile()
  return state, batch, steps


def test_grad_accumulation_of_2_halves_equals_one_step_on_the_whole_batch(sgd_steps):
  """grad_accum=2 over a batch of 2b: the mean of two b-example gradients, which is the 2b
  gradient. Only the float32 summation order differs: tolerance 1e-5 of the largest gradient."""
  state, batch, steps = sgd_steps
  new = {accum: steps[accum](state, batch) for accum in (1, 2)}
  grads = {accum: jax.tree.map(jnp.subtract, state.params, s.params)
           for accum, (s, _) in new.items()}
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads[1]))
  diff = max(float(jnp.abs(a - b).max())
             for a, b in zip(jax.tree.leaves(grads[1]), jax.tree.leaves(grads[2])))
  print(f"largest gradient {scale:.3g}, largest difference {diff:.3g}")
  assert scale > 0 and diff <= 1e-5 * scale
  np.testing.assert_allclose(new[2][1]["loss"], new[1][1]["loss"], rtol=1e-6)


def test_loss_falls_on_a_fixed_batch(sgd_steps):
  state, batch, steps = sgd_steps
  lr = state.opt_state.hyperparams["learning_rate"]
  state = state.replace(
      opt_state=state.opt_state._replace(hyperparams={"learning_rate": 0.05 * lr}))
  losses = []
  for _ in range(10):
    state, metrics = steps[1](state, batch)
    losses.append(float(metrics["loss"]))
  print("losses on a fixed batch:", [round(l, 4) for l in losses])
  assert losses[-1] < 0.9 * losses[0]


def test_cond_model_from_a_t2v_run_starts_as_that_run(trained, tmp_path):
  """tiny.py:cond with init_from = a text-to-video run: the step-0 state has the run's (EMA)
  params and a zero `cond_in`, so the 7-channel model predicts what the run did, for any cond."""
  config, workdir, _ = trained
  cond = load_experiment("tiny", "cond")
  assert cond.model.cond_channels == 4
  for section in ("data", "text", "train", "sample"):
    cond[section] = config[section]
  cond.model = config.model.copy_and_resolve_references()
  cond.model.cond_channels = 4
  cond.init_from = str(workdir)
  source = sample.load_sampler(str(workdir))
  model = train.modeling.build(cond, source.tokenizer.vocab_size)
  mesh = train.sharding_lib.create_mesh(cond.mesh)
  init_fn, abstract, state_sh, _ = train.create_train_state(model, cond, mesh)
  mngr = train.ckpt_lib.create_manager(str(tmp_path), cond.train)
  # The start of train_and_evaluate: no checkpoint in the workdir, so init + init_from.
  state = train._restore_or_init(  # pylint: disable=protected-access
      cond, mngr, init_fn, abstract, state_sh, None)
  mngr.close()
  assert int(state.step) == 0
  assert not np.any(np.asarray(state.params["unet"]["cond_in"]["kernel"]))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2,) + source.video_shape).astype(np.float32)
  t = np.array([0.3, 0.9], np.float32)
  tokens = rng.integers(1, source.tokenizer.vocab_size, (2, config.data.max_text_len))
  tokens = tokens.astype(np.int32)
  mask = np.ones(tokens.shape, bool)
  cond_input = rng.uniform(-1, 1, x.shape[:-1] + (4,)).astype(np.float32)
  expected = jax.jit(source.model.apply)({"params": source.params}, x, t, tokens, mask)
  out = jax.jit(model.apply)({"params": jax.device_get(state.params)}, x, t, tokens, mask,
                             cond_input)
  np.testing.assert_allclose(out, expected, atol=1e-5)
