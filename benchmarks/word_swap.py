r"""Does a checkpoint read the caption's words? Denoising loss with the true vs a swapped word.

  python benchmarks/word_swap.py --workdir=workdirs/tiny [--num_clips=64] [--split=test]

For each of color, shape and direction, the test-split clips are noised at a few diffusion times
with the same noise, and the model's loss with the true caption is compared with the loss when
that attribute's word is replaced by another (`lumiere_jax/evaluate/word_swap.py`). A gap near 0
at every noise level means the model ignores the word. Prints one table per attribute.
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
from lumiere_jax.evaluate import word_swap

_WORKDIR = flags.DEFINE_string("workdir", None, "A text-to-video run.", required=True)
_NUM = flags.DEFINE_integer("num_clips", 64, "Clips of the split to measure on.")
_SPLIT = flags.DEFINE_string("split", "test", "Dataset split of the clips.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")


def main(argv):
  del argv
  config = ckpt_lib.load_config(_WORKDIR.value)
  model, params, tokenizer, step = sample.load_params(_WORKDIR.value, config, _STEP.value)
  builder = datasets.build_dataset(config.data)
  videos, _, captions = classifier_lib.read_split(builder, _SPLIT.value, (), _NUM.value)
  print(f"{_WORKDIR.value} step {step}, {len(captions)} {_SPLIT.value} clips")
  for attribute in ("color", "shape", "direction"):
    rows = word_swap.loss_gap(model, params, tokenizer, config, videos, captions, attribute)
    print(f"\n{attribute}: t | logSNR | loss true | loss swapped | gap (swapped - true)")
    for r in rows:
      print(f"  {r['t']:.2f} | {r['logsnr']:6.2f} | {r['true']:.4f} | {r['swapped']:.4f} | "
            f"{r['gap']:+.4f}")


if __name__ == "__main__":
  app.run(main)
