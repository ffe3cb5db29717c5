r"""lumiere_jax command line: train a model or sample videos from a checkpoint.

  python -m lumiere_jax.main --config=experiments/tiny.py --workdir=workdirs/tiny --mode=train
  python -m lumiere_jax.main --workdir=workdirs/tiny --mode=sample \
      --prompt="a green square moves to the right"

--mode=sample and --mode=eval read the config from the workdir when --config is not given.

Any config value can be overridden: `--config.train.steps=100 --config.sample.guidance=5`.
"""
import logging as logging_std
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lumiere_jax import errors
from lumiere_jax import workdir as workdir_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/*.py[:variant]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_enum("mode", "train", ["train", "sample", "eval", "sweep"],
                  "train; sample videos; eval one checkpoint; sweep a grid (config.eval).")
flags.DEFINE_multi_string("prompt", None, "Prompt(s) for --mode=sample (default: config.sample.prompts).")
flags.DEFINE_integer("step", None, "Checkpoint step for --mode=sample (default: latest).")
flags.DEFINE_integer("seed", None, "Sampling seed (default: config.sample.seed).")
flags.DEFINE_string("sampler", None, "Sampler: ddim, ddpm or dpmpp_2m (DPM-Solver++(2M), few steps); "
                    "sets config.sample.sampler (--mode=sweep: config.eval.samplers).")
flags.DEFINE_integer("num_steps", None, "Sampler steps: config.sample.num_steps (--mode=sweep: "
                     "config.eval.num_steps).")
flags.DEFINE_integer("num_frames", None, "--mode=sample text-to-video length (default: "
                     "data.num_frames); longer videos run as MultiDiffusion over windows of the "
                     "training length overlapping by config.sample.overlap frames.")
flags.DEFINE_string("out_dir", None, "Where --mode=sample writes (default: workdir/samples/<step>).")
# Applications of --mode=sample (lumiere_jax/applications.py); masks: white = generated.
flags.DEFINE_string("image", None, "Image-to-video; with --mask: cinemagraph (white = animated).")
flags.DEFINE_string("video", None, "Video-to-video (SDEdit); with --mask: inpainting (white=fill).")
flags.DEFINE_string("mask", None, "Binary mask image (or video for inpainting): white = generate.")
flags.DEFINE_float("strength", None, "Video-to-video noise level in [0, 1] (default 0.6; 0=input).")
flags.DEFINE_string("style_from", None, "Workdir of a (style) text-to-image run to interpolate.")
flags.DEFINE_float("style_alpha", 0.7, "Weight of --style_from's spatial weights (0 = base model).")
flags.DEFINE_string("ssr_workdir", None, "SSR run (experiments/ssr.py): also write the videos "
                    "super-resolved.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (Cloud TPU: no args needed).")
flags.DEFINE_string("coordinator_address", None,
                    "--multihost on CPU/GPU clusters: host:port of process 0's coordinator.")
flags.DEFINE_integer("num_processes", None, "--multihost on CPU/GPU clusters: number of processes.")
flags.DEFINE_integer("process_id", None, "--multihost on CPU/GPU clusters: this process's index.")

# Errors that carry a clear message (bad input, environment, diverged training): reported as one
# line; the traceback is logged at --verbosity=1. Bad input is `errors.UserError`, not any
# ValueError: one raised by a bug (e.g. inside JAX tracing) keeps its traceback.
CLEAR_ERRORS = (errors.UserError, FileNotFoundError, NotADirectoryError, PermissionError,
                FloatingPointError)


def run(argv) -> None:
  if len(argv) > 1:
    _die(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.config is None and FLAGS.mode in ("train", "sweep"):
    _die("--config is required, e.g. --config=experiments/tiny.py")
  if not FLAGS.workdir:
    _die(f"--workdir is required for --mode={FLAGS.mode}")
  cluster = dict(coordinator_address=FLAGS.coordinator_address,
                 num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  if any(v is not None for v in cluster.values()) and not FLAGS.multihost:
    _die("--coordinator_address/--num_processes/--process_id need --multihost")
  if FLAGS.multihost:
    import jax  # pylint: disable=g-import-not-at-top
    if jax.config.jax_platforms == "cpu":
      # CPU processes need a collectives backend for cross-process all-reduces.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**{k: v for k, v in cluster.items() if v is not None})
  # Imported here so flag errors are reported before JAX starts up.
  from lumiere_jax import applications  # pylint: disable=g-import-not-at-top
  from lumiere_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from lumiere_jax import train  # pylint: disable=g-import-not-at-top
  from lumiere_jax.evaluate import sweep  # pylint: disable=g-import-not-at-top
  from lumiere_jax.diffusion import samplers  # pylint: disable=g-import-not-at-top
  if FLAGS.sampler is not None and FLAGS.sampler not in samplers.SAMPLERS:
    _die(f"--sampler must be one of {', '.join(samplers.SAMPLERS)}, got {FLAGS.sampler!r}")
  if FLAGS.num_frames is not None and FLAGS.mode != "sample":
    _die(f"--num_frames is for --mode=sample, not --mode={FLAGS.mode}")
  if FLAGS.num_steps is not None and FLAGS.num_steps < 1:
    _die(f"--num_steps must be >= 1, got {FLAGS.num_steps}")
  # A failed restore is reported as one line: Orbax's late "Event loop is closed" callbacks of
  # the abandoned reads would print tracebacks beside it.
  checkpoint.drop_late_callbacks_of_abandoned_reads()
  try:
    # Sampling and evaluating a run need no --config: the workdir holds the one it trained with.
    config = FLAGS.config if FLAGS.config is not None else checkpoint.load_config(FLAGS.workdir)
    config = _with_sampler_flags(config)
    if FLAGS.mode == "train":
      summary = train.train_and_evaluate(config, FLAGS.workdir)
      samples = workdir_lib.samples_dir(os.path.abspath(FLAGS.workdir))
      print(f"Training done ({summary.get('end_step', summary['start_step'])} steps). "
            f"Videos: {samples}", flush=True)
    elif FLAGS.mode == "sample":
      out_dirs = applications.run(
          config, FLAGS.workdir, prompts=FLAGS.prompt, image=FLAGS.image,
          video=FLAGS.video, mask=FLAGS.mask, strength=FLAGS.strength,
          style_from=FLAGS.style_from, style_alpha=FLAGS.style_alpha,
          ssr_workdir=FLAGS.ssr_workdir, step=FLAGS.step, seed=FLAGS.seed, out_dir=FLAGS.out_dir,
          num_frames=FLAGS.num_frames)
      print("\n".join(f"Videos: {d}" for d in out_dirs), flush=True)
    elif FLAGS.mode == "eval":
      out = sweep.run_eval(config, FLAGS.workdir, step=FLAGS.step)
      print(f"Results: {out['table']}", flush=True)
    elif FLAGS.mode == "sweep":
      out = sweep.run_sweep(config, FLAGS.workdir)
      print(f"Results: {out['table']}", flush=True)
  except checkpoint.CheckpointError as e:
    logging.debug("Traceback of the error below:", exc_info=True)
    print(f"error: {e}", file=sys.stderr, flush=True)
    # Nothing is being saved when a restore fails; exiting at once keeps Orbax's background
    # asyncio threads from printing "Event loop is closed" tracebacks at interpreter shutdown.
    os._exit(1)  # pylint: disable=protected-access
  except CLEAR_ERRORS as e:
    logging.debug("Traceback of the error below:", exc_info=True)
    _die(str(e))


def _with_sampler_flags(config):
  """--sampler / --num_steps written into the config's sampling (and sweep) settings."""
  if FLAGS.sampler is None and FLAGS.num_steps is None:
    return config
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for key, value in (("sampler", FLAGS.sampler), ("num_steps", FLAGS.num_steps)):
      if value is not None:
        config.sample[key] = value
        if FLAGS.mode == "sweep":
          config.eval["samplers" if key == "sampler" else key] = (value,)
  return config


def _die(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def _flag_error_line(error: Exception, argv: list[str]) -> str:
  """One line for a flag-parsing error (ml_collections raises with nested tracebacks)."""
  text = str(error).replace("\\n", "\n").replace("\\'", "'")
  if isinstance(error, (AttributeError, KeyError)):
    key = re.search(r"'(\w+)'", text)
    key = key.group(1) if key else "?"
    bad = [a.split("=")[0] for a in argv if a.startswith("--config.") and key in a]
    hint = re.search(r'Did you mean "(\w+)"', text)
    return (f"unknown config key {key!r} in {', '.join(bad) or 'the config overrides'}"
            + (f"; did you mean {hint.group(1)!r}?" if hint else ""))
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  return f"{lines[0]} {lines[-1]}" if len(lines) > 1 else (lines[0] if lines else repr(error))


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    _die(_flag_error_line(e, argv))


class _QuietLibraries(logging_std.Filter):
  """Drops INFO chatter of Orbax/grain/TFDS (dozens of lines per checkpoint); keeps warnings."""

  _NOISY = ("/orbax/", "/grain/", "/tensorflow_datasets/", "/etils/")

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or not any(
        p in record.pathname for p in self._NOISY)


def main():
  logging.get_absl_handler().addFilter(_QuietLibraries())
  app.run(run, flags_parser=_parse_flags)


if __name__ == "__main__":
  main()
