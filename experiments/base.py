r"""Paper-scale base STUNet (80 frames @ 16 fps, 128x128) and its CPU-benchmark sibling.

Variants (`--config=experiments/base.py:VARIANT`):
  (none)  paper scale: ~1.5B-parameter STUNet inflated from an Imagen-size T2I U-Net, bfloat16
          compute, precomputed T5-XXL embeddings, FSDP over all chips of a pod slice.
  fsdp    same as the default (named for pod-plan tables).
  dp      pure data parallel: params replicated, batch over all chips.
  remat   FSDP + rematerialized res blocks (activations recomputed in the backward pass).
  framesK FSDP + remat with each clip split across K chips by frames (e.g. `frames4`): for
          chips whose HBM cannot hold one clip's activations (v4, v5e, v6e). Mesh (-1, K): the
          batch over `data`, the frames of every activation over `fsdp`, params over both.
  heightK the same with each frame's rows split across K chips (e.g. `height8`).
  mid     a mid-size model that trains on 2 CPU cores (benchmarks/cpu.py measures its MFU).

Temporal downsampling at all 3 level transitions: 80 frames -> 40 -> 20 -> 10 at the coarsest
level, so most compute runs at coarse space-time resolution (the paper's central point).
`benchmarks/pod_plan.py` AOT-compiles these configs for TPU topologies (docs/pod_plan.md).
"""
import importlib.util
import os
import re

import ml_collections


def _tiny_config() -> ml_collections.ConfigDict:
  """tiny.py's config as the common base; loaded by path like `--config` loads this file."""
  spec = importlib.util.spec_from_file_location(
      "lumiere_tiny_config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


VARIANTS = ("fsdp", "dp", "remat", "mid", "framesK", "heightK")
_SPLIT = re.compile(r"(frames|height)([1-9][0-9]*)")


def _paper(c: ml_collections.ConfigDict) -> None:
  c.data.update(num_frames=80, resolution=128, fps=16, max_text_len=128)
  c.model.update(
      channels=(256, 512, 1024, 2048), num_res_blocks=3, attn_levels=(2, 3), num_heads=0,
      head_dim=64, temporal_downsample=(True, True, True), temporal_attn_levels=None,
      space_to_depth=1, norm_groups=32, pixel_skip=False, dtype="bfloat16",
      param_dtype="float32",
      # The motion modules of tiny.py are off: the per-position layout queries are a table over
      # the clip's tokens (80x128x128 here), and position codes in every attention block would
      # add 4.3% parameters (68M) that were measured only on the CPU recipe; docs/pod_plan.md
      # was compiled without them.
      position_code=False, frame_film=False, text_layout=False)
  # The noise-level tail was measured only on the CPU recipe; the paper's uniform sampling here.
  c.diffusion.t_tail_frac = 0.0
  c.text.update(kind="precomputed", width=1024)
  c.data.text_embedding_dim = 4096  # T5-XXL features stored with the clips.
  c.train.update(steps=500_000, batch_size=256, lr=1e-4, warmup_steps=10_000,
                 weight_decay=0.0, ema_decay=0.9999, sample_at_end=False, eval_prompts=0)
  # Long videos (--num_frames > 80): windows overlap by 16 frames, a multiple of the 8x temporal
  # downsampling.
  c.sample.update(num_steps=256, guidance=8.0, batch_size=8, overlap=16)
  # FSDP: params and optimizer moments sharded over every chip ("fsdp" axis); the batch over
  # both axes. `pod_plan.py` sets mesh.shape per topology.
  c.mesh.update(shape=(1, -1))
  # Replicate params at the start of the step: without it the partitioner kept conv weights
  # sharded and gathered the (larger) activations instead (docs/benchmarks.md).
  c.mesh.gather_params = True


def _mid(c: ml_collections.ConfigDict) -> None:
  """A mid-size STUNet: wide enough that matmul-shaped work dominates on CPU."""
  c.data.update(num_frames=16, resolution=32)
  c.model.update(channels=(128, 256, 256), num_res_blocks=2, attn_levels=(2,), num_heads=4,
                 temporal_downsample=(True, True), space_to_depth=2, norm_groups=32,
                 pixel_skip=False, position_code=False, frame_film=False, text_layout=False)
  c.text.update(width=128, num_layers=2, num_heads=4, mlp_dim=256)
  c.train.update(batch_size=4)


def _split_clips(c: ml_collections.ConfigDict, axis: str, k: int) -> None:
  """Each clip's activations split across the K chips of an `fsdp` group along `axis`.

  XLA's SPMD partitioner inserts the halo exchanges of the convolutions along the split axis
  and gathers it where an op needs it whole (attention along it). Params stay sharded over
  all chips. The global batch is (chips / K) * clips per group.
  """
  c.model.remat = True
  c.mesh.shape = (-1, k)
  split = {"batch": "data", axis: "fsdp", "conv_out": ("data", "fsdp"),
           "embed": ("data", "fsdp")}
  c.mesh.logical_axis_rules = tuple((name, split.get(name, axes))
                                    for name, axes in c.mesh.logical_axis_rules)


def get_config(arg: str = ""):
  variant = arg or "fsdp"
  split = _SPLIT.fullmatch(variant)
  if variant not in VARIANTS[:4] and not split:
    raise ValueError(f"unknown base variant {arg!r}; use one of {VARIANTS}")
  c = _tiny_config()
  c.variant = variant
  if variant == "mid":
    _mid(c)
    return c
  _paper(c)
  if variant == "dp":
    c.mesh.update(shape=(-1, 1), logical_axis_rules=tuple(
        (name, None if name in ("conv_out", "embed") else axes)
        for name, axes in c.mesh.logical_axis_rules))
  if variant == "remat":
    c.model.remat = True
  if split:
    _split_clips(c, split.group(1), int(split.group(2)))
  return c
