r"""Does a checkpoint denoise at every noise level? Its x0 estimate's error on real clips.

  python benchmarks/denoise_levels.py --workdir=workdirs/tiny [--num_clips=48] [--split=test]

Real clips of a split are noised to fixed diffusion times (the same noise for every checkpoint)
and the model's x0 estimate is compared with the clean clip (`lumiere_jax/evaluate/levels.py`):
its background and object errors in grey levels, next to the background error of the noisy
input x_t / alpha. An estimate no better than its input means the model does not denoise there.
"""
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import sample
from lumiere_jax.data import datasets
from lumiere_jax.evaluate import classifier as classifier_lib
from lumiere_jax.evaluate import levels

_WORKDIR = flags.DEFINE_string("workdir", None, "A text-to-video run.", required=True)
_NUM = flags.DEFINE_integer("num_clips", 48, "Clips of the split to measure on.")
_SPLIT = flags.DEFINE_string("split", "test", "Dataset split of the clips.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")


def main(argv):
  del argv
  config = ckpt_lib.load_config(_WORKDIR.value)
  model, params, tokenizer, step = sample.load_params(_WORKDIR.value, config, _STEP.value)
  builder = datasets.build_dataset(config.data)
  videos, _, captions = classifier_lib.read_split(builder, _SPLIT.value, (), _NUM.value)
  print(f"{_WORKDIR.value} step {step}, {len(captions)} {_SPLIT.value} clips, "
        f"prediction={config.diffusion.prediction}")
  print("t | logSNR | loss | background error | of the input x_t/alpha | object error")
  for r in levels.denoising_errors(model, params, tokenizer, config, videos, captions):
    print(f"{r['t']:.2f} | {r['logsnr']:6.2f} | {r['loss']:.4f} | {r['background_error']:6.2f} | "
          f"{r['input_background_error']:6.2f} | {r['object_error']:6.2f}")


if __name__ == "__main__":
  app.run(main)
