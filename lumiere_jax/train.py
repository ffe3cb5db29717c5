"""Training as a library: `train_and_evaluate(config, workdir)`.

One train state pytree (params, EMA params, optimizer state, step, RNG). Its shapes come from
`jax.eval_shape`, it is created directly with its shardings (`jit(out_shardings=...)`), and the
step is `jit`-ed with donated state. Resume order: own workdir -> `config.resume` (full state of
another run) -> `config.init_from` (params only; a text-to-image run is inflated) -> fresh.
"""
import os
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from PIL import Image

from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import errors
from lumiere_jax import metrics as metrics_lib
from lumiere_jax import modeling
from lumiere_jax import progress as progress_lib
from lumiere_jax import sample as sample_lib
from lumiere_jax import sharding as sharding_lib
from lumiere_jax import workdir as workdir_lib
from lumiere_jax.data import datasets
from lumiere_jax.data import pipeline
from lumiere_jax.data import synthetic
from lumiere_jax.data import text_features
from lumiere_jax.data import tokenizer as tokenizer_lib
from lumiere_jax.diffusion import conditioning
from lumiere_jax.diffusion import losses
from lumiere_jax.evaluate import alignment
from lumiere_jax.evaluate import classifier as classifier_lib
from lumiere_jax.evaluate import i2v as i2v_lib
from lumiere_jax.models import inflate as inflate_lib
from lumiere_jax.models import model as model_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  ema_params: Any
  opt_state: Any
  rng: jax.Array


def check_workdir(workdir: str) -> str:
  """Creates the workdir and fails with one clear line if it is not writable.

  Local paths become absolute; `gs://` paths (epath) are kept for Orbax on TPU pods. The probe
  file is per process so hosts sharing the workdir do not delete each other's probe.
  """
  workdir = ckpt_lib.absolute(workdir)
  try:
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise errors.UserError(f"--workdir {workdir} is not writable: {e.strerror}") from e
  return workdir


def learning_rate_schedule(train_cfg) -> optax.Schedule:
  warmup = min(train_cfg.warmup_steps, max(train_cfg.steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train_cfg.lr, warmup_steps=warmup,
      decay_steps=max(train_cfg.steps, warmup + 1),
      end_value=train_cfg.lr * train_cfg.end_lr_fraction)


def build_optimizer(config, params_like: Any) -> tuple[optax.GradientTransformation, Any]:
  """AdamW with warmup + cosine decay and global-norm clipping; frozen params get no update."""
  schedule = learning_rate_schedule(config.train)
  tx = optax.chain(
      optax.clip_by_global_norm(config.train.grad_clip),
      optax.adamw(schedule, b1=config.train.b1, b2=config.train.b2,
                  weight_decay=config.train.weight_decay))
  if config.freeze_non_temporal:
    labels = jax.tree.map(lambda trainable: "train" if trainable else "freeze",
                          inflate_lib.temporal_mask(params_like))
    tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
  return tx, schedule


def training_condition(video: jax.Array, rng: jax.Array) -> jax.Array:
  """Random 7-channel conditioning for the conditional model: masked video + mask.

  Each example gets one of the paper's tasks: image-to-video (first frame known), inpainting
  (a box unknown in every frame), cinemagraph (a box animated, the rest frozen to frame 0).
  """
  b, t, h, w, _ = video.shape
  k_task, k_box = jax.random.split(rng)
  task = jax.random.randint(k_task, (b,), 0, 3)
  lo = jax.random.randint(k_box, (b, 2), 0, h // 2)
  size = h // 2
  ys, xs = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
  in_box = (((ys >= lo[:, :1]) & (ys < lo[:, :1] + size))[:, :, None]
            & ((xs >= lo[:, 1:]) & (xs < lo[:, 1:] + size))[:, None, :])  # (b, h, w)
  first = (jnp.arange(t) == 0)[None, :, None, None]
  i2v = jnp.broadcast_to(first, (b, t, h, w))
  inpaint = jnp.broadcast_to(~in_box[:, None], (b, t, h, w))
  frozen = inpaint
  mask = jnp.where(task[:, None, None, None] == 0, i2v,
                   jnp.where(task[:, None, None, None] == 1, inpaint, frozen))
  mask = mask[..., None].astype(video.dtype)
  known = jnp.where((task == 2)[:, None, None, None, None],
                    jnp.broadcast_to(video[:, :1], video.shape), video)
  return jnp.concatenate([known * mask, mask], axis=-1)


def ema_update(ema: Any, params: Any, step: jax.Array, max_decay: float) -> Any:
  """EMA of the params after update `step` (0-based): decay min(max_decay, (1+step)/(10+step)).

  The warm-up of the decay (0.1 at step 0) keeps the early EMA from being dominated by the
  random init, which a constant 0.99 would average over for hundreds of steps.
  """
  decay = jnp.minimum(max_decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def make_train_step(model, tx, schedule, config, mesh):
  """The pure train step: loss, grads (optionally accumulated), update, EMA.

  Traced under `mesh` and the config's logical axis rules, so the layers' activation
  constraints apply.
  """
  accum = config.train.grad_accum
  kind = modeling.model_kind(config)

  def loss_fn(params, batch, rng):
    if config.mesh.get("gather_params", False):
      params = sharding_lib.replicate(params, mesh)
    k_cond, k_loss = jax.random.split(rng)
    emb = model.apply({"params": params}, batch["tokens"], batch["text_mask"],
                      method=model.encode_text)
    video = batch["video"]
    cond, loss_mask = None, None
    if kind == "masked":
      cond = training_condition(video, k_cond)
      loss_mask = 1.0 - cond[..., 3:]  # Known pixels are pasted in at sampling: not trained on.
    elif kind == "ssr":  # The clip at low resolution, upsampled.
      cond = conditioning.ssr_condition(video, config.ssr.factor, config.ssr.upsample)

    def denoise(x, t, e, m, c):
      return model.apply({"params": params}, x, t, e, m, c, method=model.denoise)

    loss, aux = losses.diffusion_loss(denoise, video, emb, batch["text_mask"], cond, k_loss,
                                      config.diffusion, loss_mask=loss_mask)
    return loss, aux

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    batch = {k: batch[k] for k in ("video", "tokens", "text_mask")}
    if accum == 1:
      (loss, _), grads = grad_fn(state.params, batch, rng)
    else:
      micro = jax.tree.map(lambda x: x.reshape((accum, -1) + x.shape[1:]), batch)

      def body(carry, inputs):
        i, mb = inputs
        (l, _), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (l, g)), None

      zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, state.params))
      (loss, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
      loss, grads = jax.tree.map(lambda x: x / accum, (loss, grads))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_update(state.ema_params, params, state.step, config.train.ema_decay)
    metrics = dict(loss=loss, grad_norm=optax.global_norm(grads), lr=schedule(state.step))
    return TrainState(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state,
                      rng=state.rng), metrics

  return sharding_lib.under_rules(train_step, mesh, config.mesh)


# Compiler options for programs that run once per run, such as the parameter init: their
# compile time is what counts. The init is hundreds of small random-number fusions (one threefry
# per parameter); the backend's optimisation passes made its compile 2.4x as long (tiny:test
# 11.8 s vs 5.0 s, docs/benchmarks.md), while the unoptimised init still runs in milliseconds.
RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}


def create_train_state(model, config, mesh) -> tuple[Any, Any, Any, Any]:
  """Returns (init_fn, abstract state with shardings, state shardings, (tx, schedule))."""
  boxed = modeling.abstract_params(model, config)
  params_like = flax.linen.meta.unbox(boxed)
  tx, schedule = build_optimizer(config, params_like)
  p_sh = sharding_lib.logical_to_shardings(boxed, mesh, config.mesh)
  abstract_opt = jax.eval_shape(tx.init, params_like)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state_sh = TrainState(step=replicated, params=p_sh, ema_params=p_sh,
                        opt_state=sharding_lib.opt_state_shardings(tx, abstract_opt, p_sh, mesh),
                        rng=replicated)

  def init_fn(rng):
    k_init, k_train = jax.random.split(rng)
    params = flax.linen.meta.unbox(model.init(k_init, *modeling.dummy_inputs(config))["params"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=params,
                      opt_state=tx.init(params), rng=k_train)

  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, state_sh)
  jitted_init = jax.jit(sharding_lib.under_rules(init_fn, mesh, config.mesh),
                        out_shardings=state_sh)

  def init(rng):
    """The fresh train state. Compiled at each call (a run calls it once) with RUN_ONCE_OPTIONS."""
    return jitted_init.lower(rng).compile(compiler_options=RUN_ONCE_OPTIONS)(rng)

  return init, abstract, state_sh, (tx, schedule)


def _params_from(workdir: str, abstract_params_tree: Any, config) -> Any:
  """Params of another run for `config.init_from`; a text-to-image run is inflated."""
  src_cfg = ckpt_lib.load_config(workdir)
  src_abstract = abstract_params_tree
  if src_cfg.model.temporal != config.model.temporal or (
      modeling.model_kind(src_cfg) != modeling.model_kind(config)):
    src_model = modeling.build(src_cfg, sample_lib.load_text_input(workdir, src_cfg).vocab_size)
    src_boxed = modeling.abstract_params(src_model, src_cfg)
    replicated = jax.sharding.NamedSharding(
        jax.tree.leaves(abstract_params_tree)[0].sharding.mesh, jax.sharding.PartitionSpec())
    src_abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
        flax.linen.meta.unbox(src_boxed))
  src, step = ckpt_lib.restore_subtree(workdir, ("ema_params",), src_abstract)
  logging.info("init_from %s step %d", workdir, step)
  return src


class _PreemptionFlag:
  """Turns SIGTERM into a flag the loop checks, so it can save before exiting.

  Single process only: with several processes JAX's preemption service owns SIGTERM and
  `CheckpointManager.reached_preemption` makes all hosts stop at the same step (a per-process
  flag would let one host leave the collectives of the others).
  """

  def __init__(self):
    self.set = False
    self._previous = None
    self._active = jax.process_count() == 1

  def __enter__(self):
    if self._active:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and exiting.")
    self.set = True

  def __exit__(self, *exc):
    if self._active:
      signal.signal(signal.SIGTERM, self._previous)


class _IteratorPosition:
  """A snapshot of the data iterator's state, saved in place of the live iterator.

  The loop fetches the next batch while a step runs, so at save time the live iterator is one
  batch ahead of the state; the snapshot taken before that fetch makes a resumed run continue
  with exactly the batch the interrupted run would have trained on next.
  """

  def __init__(self, data_iter):
    self._state = data_iter.get_state()

  def get_state(self) -> bytes:
    return self._state


def setup_data(config, workdir: str):
  """Builds (or reuses) the dataset and tokenizer; copies the tokenizer into the workdir.

  With `text.kind='precomputed'` the dataset stores caption features and the "tokenizer" is
  the frozen encoder that made them (`text_features`), used for prompts at sampling time.

  With several processes, process 0 builds first and the others wait, so hosts sharing a data
  directory reuse its dataset instead of writing it concurrently (hosts with their own disks
  build the same deterministic dataset after the barrier).
  """
  data_dir = synthetic.resolve_data_dir(config.data)

  precomputed = config.text.kind == "precomputed"
  encoder = text_features.encoder_for(config) if precomputed else None  # Checks dims first.

  def build():
    builder = datasets.build_dataset(config.data, data_dir)
    return builder, encoder or tokenizer_lib.get_or_train_tokenizer(builder, config.data)

  if jax.process_index() == 0:
    builder, tokenizer = build()
    dst = workdir_lib.tokenizer_path(workdir)
    if not precomputed and not os.path.exists(dst):
      tokenizer.save(dst)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("lumiere_jax.setup_data")
  if jax.process_index() != 0:
    builder, tokenizer = build()
  return builder, tokenizer


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir`, resuming if possible; returns a summary of the run.

  The metric writer and the checkpoint manager are closed however the run ends, so a crash
  (e.g. a non-finite loss) still flushes the metrics and lets the last checkpoint finish writing.
  """
  workdir = check_workdir(workdir)
  is_chief = jax.process_index() == 0
  mesh = sharding_lib.create_mesh(config.mesh)
  logging.info("Mesh %s on %d devices, %d processes", dict(mesh.shape), jax.device_count(),
               jax.process_count())

  builder, tokenizer = setup_data(config, workdir)
  data_iter = pipeline.create_data_iterator(
      config.data, builder, None if config.text.kind == "precomputed" else tokenizer, "train",
      config.train.batch_size, seed=config.seed)

  model = modeling.build(config, tokenizer.vocab_size)
  init_fn, abstract_state, state_sh, (tx, schedule) = create_train_state(model, config, mesh)
  num_params = model_lib.count_params(abstract_state.params)
  logging.info("Model: %.3fM parameters", num_params / 1e6)

  mngr = ckpt_lib.create_manager(workdir, config.train)
  writer = metrics_lib.MetricWriter(workdir, enabled=is_chief)
  try:
    state = _restore_or_init(config, mngr, init_fn, abstract_state, state_sh, data_iter)
    if is_chief:  # Only once the state fits it: a failed resume keeps the run's own config.
      epath.Path(workdir_lib.config_path(workdir)).write_text(config.to_json_best_effort(indent=2))
    start_step = int(state.step)
    summary = dict(num_params=num_params, start_step=start_step, workdir=workdir)
    if start_step >= config.train.steps:
      logging.info("Already trained to step %d >= train.steps=%d", start_step,
                   config.train.steps)
    else:
      step_fn = jax.jit(make_train_step(model, tx, schedule, config, mesh),
                        in_shardings=(state_sh, sharding_lib.batch_sharding(mesh, config.mesh)),
                        # Replicated metrics: every process can read them in a multi-host run.
                        out_shardings=(state_sh, jax.sharding.NamedSharding(
                            mesh, jax.sharding.PartitionSpec())),
                        donate_argnums=(0,))
      state = _train_loop(config, step_fn, state, data_iter, mesh, mngr, writer, summary)
      if "preempted_at" in summary:
        return summary
    _sample_at_end(config, workdir, state, model, tokenizer, builder, int(state.step), writer)
    return summary
  finally:
    writer.close()
    mngr.close()


def _restore_or_init(config, mngr, init_fn, abstract_state, state_sh, data_iter):
  """The train state: the workdir's latest checkpoint (with the data iterator's position), else
  `config.resume`'s state, else fresh, optionally with params from `config.init_from`."""
  latest = mngr.latest_step()
  if latest is not None:
    logging.info("Resuming from own workdir step %d", latest)
    return ckpt_lib.restore(mngr, latest, abstract_state, data_iter, config)
  if config.resume:
    logging.info("Resuming train state from config.resume=%s", config.resume)
    state, _ = ckpt_lib.restore_subtree(config.resume, (), abstract_state)
    return TrainState(**state) if isinstance(state, dict) else state
  state = init_fn(jax.random.PRNGKey(config.seed))
  if not config.init_from:
    logging.info("Starting from scratch (no checkpoint, resume or init_from)")
    return state
  src = _params_from(config.init_from, abstract_state.params, config)
  params = jax.jit(inflate_lib.inflate, out_shardings=state_sh.params)(src, state.params)
  logging.info("Initialised params from config.init_from=%s", config.init_from)
  # A copy: one buffer in two donated leaves crashes the step (segfault on CPU).
  return state.replace(params=params, ema_params=jax.tree.map(jnp.copy, params))


def _train_loop(config, step_fn, state, data_iter, mesh, mngr, writer, summary):
  """Runs the steps from state.step to train.steps: logs, checkpoints, stops on a non-finite
  loss (keeping the last good checkpoint) or on preemption (after saving). Fills `summary`."""
  def next_batch():
    """(iterator position before the batch, global batch)."""
    position = _IteratorPosition(data_iter)
    return position, pipeline.make_global_batch(next(data_iter), mesh,
                                                sharding_lib.batch_axes(config.mesh))

  position, batch = next_batch()
  t0 = time.monotonic()
  compiled = step_fn.lower(state, batch).compile()
  compile_s = time.monotonic() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  step_flops = float(cost.get("flops", 0.0)) if cost else 0.0
  logging.info("Compiled train step in %.1fs; %.3g FLOPs per step per device", compile_s,
               step_flops)
  summary.update(compile_seconds=compile_s, step_flops=step_flops)

  step, total = int(state.step), config.train.steps
  progress = progress_lib.Progress("train", total, unit="steps", start=step)
  losses_window, t_window = [], time.monotonic()
  last_good = mngr.latest_step()
  with _PreemptionFlag() as preempted:
    while step < total:
      state, metrics = compiled(state, batch)
      step += 1
      if step < total:
        position, batch = next_batch()  # Overlaps host data work with the running step.
      else:
        position = _IteratorPosition(data_iter)
      loss = float(metrics["loss"])
      if not np.isfinite(loss):
        raise FloatingPointError(
            f"non-finite loss {loss} at step {step}; stopping. Last good checkpoint: "
            f"{last_good if last_good is not None else 'none'} (not overwritten)")
      losses_window.append(loss)
      progress.update(step, extra=f"loss {loss:.4f}")
      if step % config.train.log_every == 0 or step == total:
        dt = (time.monotonic() - t_window) / len(losses_window)
        scalars = dict(loss=float(np.mean(losses_window)), grad_norm=float(metrics["grad_norm"]),
                       learning_rate=float(metrics["lr"]), step_time=dt,
                       clips_per_second=config.train.batch_size / dt,
                       flops_per_device=step_flops / dt)
        if config.train.peak_flops_per_device:
          scalars["mfu"] = step_flops / dt / config.train.peak_flops_per_device
        writer.scalars(step, scalars)
        summary.update(last_metrics=scalars)
        losses_window, t_window = [], time.monotonic()
      must_stop = preempted.set or mngr.reached_preemption(step)
      if step % config.train.ckpt_every == 0 or step == total or must_stop:
        t_save = time.monotonic()
        ckpt_lib.save(mngr, step, state, position, config, force=True)
        logging.info("Checkpoint step %d: training blocked %.2fs (the rest is written in the "
                     "background)", step, time.monotonic() - t_save)
        last_good = step
      if must_stop:
        mngr.wait_until_finished()
        logging.warning("Preempted at step %d: checkpoint saved, exiting cleanly.", step)
        summary.update(preempted_at=step, end_step=step)
        return state
  progress.close()
  mngr.wait_until_finished()
  summary.update(end_step=step, train_seconds=time.monotonic() - t0)
  return state


def _sample_at_end(config, workdir, state, model, tokenizer, builder, step, writer):
  """Writes sample videos for the config's prompts and scores text alignment on held-out
  test-split prompts."""
  if not config.train.sample_at_end:
    return
  params = state.ema_params if config.sample.use_ema else state.params
  sampler = sample_lib.Sampler(config, model, params, tokenizer, step)
  prompts = list(config.sample.prompts)
  videos = sampler(prompts, seed=config.sample.seed, progress=True)
  out_dir = sample_lib.write_videos(videos, prompts, workdir_lib.samples_dir(workdir, step),
                                    config.data.fps)
  if jax.process_index() == 0:  # Process 0 writes the grid (`sample.write_videos`).
    writer.image(step, "samples", np.asarray(Image.open(os.path.join(out_dir, "grid.png"))))
  if config.data.name == "synthetic_clips" and config.train.eval_prompts:
    scored, (videos, prompts) = heldout_alignment(sampler, builder, config)
    # The first held-out samples as files and a grid, next to the config prompts' ones.
    sample_lib.write_videos(videos[:8], prompts[:8],
                            workdir_lib.samples_dir(workdir, step, "heldout"),
                            config.data.fps)
    for name, scores in scored.items():
      writer.scalars(step, {f"eval/{name}/{k}": v for k, v in scores.items()})
      print(f"[eval] {EVAL_SETS[name]}, step {step}: {format_alignment(scores)}", flush=True)


# The prompt sets of `heldout_alignment`, as the end-of-training lines name them.
EVAL_SETS = {"t2v": "text-to-video, held-out test prompts",
             "i2v_own": "image-to-video, test clips' first frames and own captions",
             "i2v_changed": "image-to-video, same first frames, perpendicular direction"}


def heldout_alignment(sampler, builder, config) -> tuple[dict, tuple[np.ndarray, list]]:
  """Text alignment on the test split (held-out color-shape-direction triples):
  `train.eval_prompts` clips, each sampled with `train.eval_seeds` seeds.

  Returns ({set name: scores}, (text-to-video samples, their prompts)): text-to-video from the
  captions, and for a conditional model also image-to-video from each clip's first frame, with
  its own and with a perpendicular direction (`i2v.i2v_alignment`).
  """
  videos, _, prompts = classifier_lib.read_split(builder, "test", (), config.train.eval_prompts)
  seeds = [config.sample.seed + 1 + i for i in range(config.train.eval_seeds)]
  samples = np.concatenate([sampler(prompts, seed=seed) for seed in seeds])
  scores = alignment.alignment_scores(samples, prompts * len(seeds))
  out = {"t2v": {k: v for k, v in scores.items() if k != "rows"}}
  if modeling.model_kind(config) == "masked":
    out.update({f"i2v_{k}": v for k, v in
                i2v_lib.i2v_alignment(sampler, videos, prompts, seeds).items()})
  return out, (samples, prompts * len(seeds))


def format_alignment(scores: dict) -> str:
  return (f"color {scores['color_acc']:.2f}, shape {scores['shape_acc']:.2f}, direction "
          f"{scores['direction_acc']:.2f}, all {scores['all_acc']:.2f}, background error "
          f"{scores['background_error']:.1f}/255 over {scores['num_samples']} samples")
