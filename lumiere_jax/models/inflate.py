"""Pytree surgery between the T2I U-Net and the STUNet: inflation, freezing, interpolation.

All selection is by path: a leaf is temporal iff some key on its path starts with `temporal_`.
Works on plain or logically-boxed (`nn.Partitioned`) param trees.
"""
import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from lumiere_jax import errors
from lumiere_jax.models import unet as unet_lib

# Modules a target tree may have that its source lacks, besides temporal ones: the zero-init
# conditioning input conv and the cond's gated pixel skip (with both of its gates), so `inflate`
# also turns a no-cond checkpoint into a cond model.
NEW_MODULES = ("cond_in", "cond_pixel_skip", "cond_pixel_skip_gate", "cond_pixel_skip_pixel_gate")


def _unbox(leaf):
  return leaf.unbox() if isinstance(leaf, nn.meta.AxisMetadata) else leaf


def _rebox(like, value):
  return like.replace_boxed(value) if isinstance(like, nn.meta.AxisMetadata) else value


def _flat(params):
  return traverse_util.flatten_dict(params)


def _is_new(path) -> bool:
  return unet_lib.is_temporal_path(path) or any(k in NEW_MODULES for k in path)


def inflate(t2i_params, stunet_params_init):
  """Copies every T2I leaf into the STUNet tree; temporal (and `cond_in`) leaves keep their init.

  Temporal branches start with zero outputs and temporal down/upsampling as nearest neighbour in
  time (keep the even frames, duplicate them), so the result computes the T2I model per frame on
  a static clip, and on any clip without temporal downsampling. On a moving clip, a frame that
  the downsampling drops sees the previous kept frame at the coarser levels.
  """
  src, dst = _flat(t2i_params), _flat(stunet_params_init)
  for path in src:
    name = "/".join(map(str, path))
    if path not in dst:
      raise errors.UserError(f"T2I param {name} has no counterpart in the STUNet tree")
    if np.shape(_unbox(src[path])) != np.shape(_unbox(dst[path])):
      raise errors.UserError(f"shape mismatch at {name}: T2I {np.shape(_unbox(src[path]))} vs "
                             f"STUNet {np.shape(_unbox(dst[path]))}")
  for path in dst:
    if path not in src and not _is_new(path):
      raise errors.UserError(f"STUNet param {'/'.join(map(str, path))} is neither temporal nor in "
                             "the T2I tree (do the two model configs differ?)")
  out = {p: _rebox(v, _unbox(src[p])) if p in src else v for p, v in dst.items()}
  return traverse_util.unflatten_dict(out)


def temporal_mask(params):
  """Pytree of bools (True = temporal, trainable) for `optax.masked` / `optax.multi_transform`.

  E.g. labels = jax.tree.map(lambda m: 'train' if m else 'freeze', temporal_mask(params)).
  """
  return jax.tree_util.tree_map_with_path(lambda p, _: unet_lib.is_temporal_path(p), params)


def interpolate_spatial(params_a, params_b, alpha: float):
  """(1 - alpha) * a + alpha * b on non-temporal leaves; temporal leaves come from `a`.

  `params_b` may be a T2I tree (e.g. a style-fine-tuned T2I), which has no temporal leaves.
  """
  a, b = _flat(params_a), _flat(params_b)
  out = {}
  for path, va in a.items():
    if unet_lib.is_temporal_path(path):
      out[path] = va
      continue
    if path not in b:
      raise errors.UserError(f"param {'/'.join(map(str, path))} is missing from params_b")
    xa, xb = _unbox(va), _unbox(b[path])
    if np.shape(xa) != np.shape(xb):
      raise errors.UserError(f"shape mismatch at {'/'.join(map(str, path))}: {np.shape(xa)} vs "
                             f"{np.shape(xb)}")
    out[path] = _rebox(va, ((1 - alpha) * xa + alpha * xb).astype(xa.dtype))
  return traverse_util.unflatten_dict(out)
