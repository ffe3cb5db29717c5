r"""Sampling time of the base model and of base + SSR, and the seams of MultiDiffusion.

  python benchmarks/cascade.py --base_workdir=<tiny t2v run> --ssr_workdir=<experiments/ssr.py run> \
      [--num_videos=8] [--out=benchmarks/results/cascade.json]

Both samplers are compiled first (one warm-up call), so the times are steady-state seconds per
video with each config's sampler settings. The seam metric (`multidiffusion.seam_metric`: mean
frame difference across window borders / inside windows, 1 = no seam) is measured on the same
base videos lifted three ways: MultiDiffusion with the config's window and overlap, independent
windows (overlap 0, the naive way to run a short-window model on a long video), and the input
itself upsampled (the reference: what the motion alone gives). Fidelity: PSNR of the SSR output
box-downsampled back to the base resolution against the base video.

On real clips (the SSR config's dataset, test split, at the base model's frame count): each clip
is box-downsampled by the SSR factor and lifted back; PSNR against the original clip for SSR and
for bilinear upsampling, and the seam ratio of the originals for reference.
"""
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax.numpy as jnp
import numpy as np

from lumiere_jax import sample
from lumiere_jax.data import datasets
from lumiere_jax.diffusion import conditioning
from lumiere_jax.diffusion import multidiffusion
from lumiere_jax.evaluate import alignment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BASE = flags.DEFINE_string("base_workdir", None, "Text-to-video run (e.g. the default job's).")
_SSR = flags.DEFINE_string("ssr_workdir", None, "SSR run (experiments/ssr.py).")
_NUM = flags.DEFINE_integer("num_videos", 8, "Videos per timed call (grid prompts).")
_OUT = flags.DEFINE_string("out", os.path.join(REPO, "benchmarks/results/cascade.json"),
                           "Where to write the JSON results.")


def timed(fn):
  """(result, seconds) of the second call; the first one compiles."""
  fn()
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
  return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def main(argv):
  del argv
  if not _BASE.value or not _SSR.value:
    raise app.UsageError("--base_workdir and --ssr_workdir are required")
  prompts = alignment.grid_prompts(_NUM.value)
  base = sample.load_sampler(_BASE.value)
  ssr = sample.load_sampler(_SSR.value)
  low, base_s = timed(lambda: base(prompts, seed=0))
  high, ssr_s = timed(lambda: ssr.super_resolve(low, prompts, seed=0))

  window, overlap = int(ssr.config.ssr.window), int(ssr.config.ssr.overlap)
  naive_cfg = ssr.config.copy_and_resolve_references()
  naive_cfg.ssr.overlap = 0
  naive = sample.Sampler(naive_cfg, ssr.model, ssr.params, ssr.tokenizer)
  high_naive = naive.super_resolve(low, prompts, seed=0)
  factor = int(ssr.config.ssr.factor)
  upsampled = np.asarray(conditioning.upsample_video(jnp.asarray(low, jnp.float32), factor,
                                                     "nearest"))
  seams = {}
  for name, (w, o) in {"multidiffusion_borders": (window, overlap),
                       "independent_borders": (window, 0)}.items():
    seams[name] = {what: multidiffusion.seam_metric(v, w, o)
                   for what, v in (("multidiffusion", high), ("independent_windows", high_naive),
                                   ("upsampled_input", upsampled))}
  down = lambda v: np.asarray(conditioning.downsample_video(jnp.asarray(v, jnp.float32), factor))
  result = dict(
      num_videos=len(prompts), base_shape=list(low.shape[1:]), ssr_shape=list(high.shape[1:]),
      base_sampler={k: base.config.sample[k] for k in ("sampler", "num_steps", "guidance")},
      ssr_sampler={k: ssr.config.sample[k] for k in ("sampler", "num_steps", "guidance")},
      window=window, overlap=overlap,
      base_s_per_video=base_s / len(prompts), ssr_s_per_video=ssr_s / len(prompts),
      cascade_s_per_video=(base_s + ssr_s) / len(prompts),
      psnr_ssr_down_vs_base=psnr(down(high), low),
      psnr_independent_down_vs_base=psnr(down(high_naive), low), seams=seams)
  result["real_clips"] = real_clip_fidelity(ssr, low.shape[1], len(prompts), window, overlap)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(f"| stage | shape | s/video |\n|---|---|---|\n"
        f"| base | {tuple(low.shape[1:])} | {result['base_s_per_video']:.3f} |\n"
        f"| SSR (MultiDiffusion, window {window}, overlap {overlap}) | "
        f"{tuple(high.shape[1:])} | {result['ssr_s_per_video']:.3f} |\n"
        f"| base + SSR | | {result['cascade_s_per_video']:.3f} |\n")
  print("Seam ratio (border / inside frame difference; 1 = seamless):")
  for borders, rows in seams.items():
    print(f"  at {borders}: " + ", ".join(f"{k} {v['ratio']:.3f}" for k, v in rows.items()))
  print(f"PSNR of SSR output downsampled vs. base video: MultiDiffusion "
        f"{result['psnr_ssr_down_vs_base']:.1f} dB, independent windows "
        f"{result['psnr_independent_down_vs_base']:.1f} dB")
  real = result["real_clips"]
  print(f"Real test clips ({real['num_clips']} x {real['num_frames']} frames, "
        f"{real['resolution']}px): PSNR vs. original: SSR {real['psnr_ssr']:.1f} dB, bilinear "
        f"{real['psnr_bilinear']:.1f} dB; seam ratio SSR {real['seam_ssr']['ratio']:.3f}, "
        f"originals {real['seam_original']['ratio']:.3f}")
  print(f"Wrote {_OUT.value}")


def real_clip_fidelity(ssr, num_frames: int, num_clips: int, window: int, overlap: int) -> dict:
  """SSR of box-downsampled real test clips against the clips themselves (see module doc)."""
  data_cfg = ssr.config.data.copy_and_resolve_references()
  data_cfg.num_frames = num_frames
  source = datasets.build_dataset(data_cfg).as_data_source("test")
  clips = np.stack([source[i]["video"] for i in range(num_clips)])
  captions = [source[i]["caption"] for i in range(num_clips)]
  captions = [c.decode() if isinstance(c, bytes) else c for c in captions]
  factor = int(ssr.config.ssr.factor)
  low = np.asarray(conditioning.downsample_video(jnp.asarray(clips, jnp.float32), factor))
  low = np.clip(np.round(low), 0, 255).astype(np.uint8)
  high = ssr.super_resolve(low, captions, seed=0)
  bilinear = np.asarray(conditioning.upsample_video(jnp.asarray(low, jnp.float32), factor,
                                                    "bilinear"))
  return dict(num_clips=num_clips, num_frames=num_frames, resolution=int(clips.shape[2]),
              psnr_ssr=psnr(high, clips), psnr_bilinear=psnr(np.clip(bilinear, 0, 255), clips),
              seam_ssr=multidiffusion.seam_metric(high, window, overlap),
              seam_original=multidiffusion.seam_metric(clips, window, overlap))


if __name__ == "__main__":
  app.run(main)
