"""Device mesh and the mapping from logical axis names (set in layers) to mesh axes (set in config).

Layers only name their axes (`batch`, `conv_out`, `embed`, ...); `config.mesh.logical_axis_rules`
decides which mesh axis shards each name. Changing parallelism is a config change only.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lumiere_jax import errors


def mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """`shape` with its one -1 (if any) filled so that it spans `num_devices`."""
  shape = list(shape)
  if shape.count(-1) > 1:
    raise errors.UserError(f"mesh.shape {tuple(shape)} has more than one -1")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if num_devices % known:
      raise errors.UserError(f"{num_devices} devices cannot fill mesh.shape {tuple(shape)}")
    shape[shape.index(-1)] = num_devices // known
  if int(np.prod(shape)) != num_devices:
    raise errors.UserError(f"mesh.shape {tuple(shape)} needs {int(np.prod(shape))} devices, "
                           f"{num_devices} are available")
  return tuple(shape)


def create_mesh(mesh_cfg, devices: Sequence[Any] | None = None) -> Mesh:
  """Builds a mesh from `mesh_cfg.shape` (one -1 fills the rest) and `mesh_cfg.axes`."""
  devices = list(devices if devices is not None else jax.devices())
  shape, axes = list(mesh_cfg.shape), tuple(mesh_cfg.axes)
  if len(shape) != len(axes):
    raise errors.UserError(f"mesh.shape {tuple(shape)} and mesh.axes {axes} differ in length")
  shape = mesh_shape(shape, len(devices))
  # Auto axes: XLA propagates shardings from the annotated params and activations (explicit
  # axes would demand an out_sharding at every gather, e.g. the token embedding).
  return jax.make_mesh(tuple(shape), axes, axis_types=(jax.sharding.AxisType.Auto,) * len(axes),
                       devices=devices)


def rules(mesh_cfg) -> tuple:
  return tuple((name, tuple(ax) if isinstance(ax, (list, tuple)) else ax)
               for name, ax in mesh_cfg.logical_axis_rules)


def under_rules(fn: Callable[..., Any], mesh: Mesh, mesh_cfg) -> Callable[..., Any]:
  """`fn`, traced with `mesh` and the config's logical axis rules in scope.

  The layers' `nn.with_logical_constraint` calls are no-ops without both, and XLA then picks
  activation shardings itself, which can gather the whole global batch onto every chip
  (docs/benchmarks.md, "Measurements behind the design").
  """

  @functools.wraps(fn)
  def traced(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(rules(mesh_cfg)):
      return fn(*args, **kwargs)

  return traced


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Constrains every leaf to be replicated: applied to FSDP-sharded params at the start of a
  step, XLA all-gathers the weights (and reduce-scatters their gradients) instead of gathering
  activations, which are far larger for a video model (`mesh.gather_params`)."""
  replicated = NamedSharding(mesh, P())
  return jax.tree.map(lambda p: jax.lax.with_sharding_constraint(p, replicated), tree)


def _fit_spec(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
  """Drops mesh axes from dimensions they do not divide (e.g. 3 output channels over fsdp=2)."""
  fitted = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
    size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
    fitted.append(axes if size > 1 and dim % size == 0 else None)
  return P(*fitted)


def logical_to_shardings(boxed_abstract: Any, mesh: Mesh, mesh_cfg) -> Any:
  """NamedShardings for an abstract pytree whose leaves may be logically-partitioned boxes."""
  logical = nn.get_partition_spec(boxed_abstract)
  mesh_specs = nn.logical_to_mesh(logical, rules(mesh_cfg))
  unboxed = nn.meta.unbox(boxed_abstract)
  return jax.tree.map(
      lambda spec, leaf: NamedSharding(mesh, _fit_spec(spec, leaf.shape, mesh)),
      mesh_specs, unboxed, is_leaf=lambda x: isinstance(x, P))


def opt_state_shardings(tx: optax.GradientTransformation, abstract_opt_state: Any,
                        param_shardings: Any, mesh: Mesh) -> Any:
  """Optimizer moments follow their parameters' shardings; counters are replicated.

  Frozen parameters (optax.multi_transform with set_to_zero) have `MaskedNode`s instead of
  moments: they stay `MaskedNode`s, so the sharding tree matches the state tree.
  """
  replicated = NamedSharding(mesh, P())
  masked = lambda x: isinstance(x, optax.MaskedNode)
  return optax.tree_map_params(
      tx, lambda leaf, sharding: leaf if masked(leaf) else sharding, abstract_opt_state,
      param_shardings, transform_non_params=lambda _: replicated, is_leaf=masked)


def batch_axes(mesh_cfg) -> tuple:
  """Mesh axes that shard the batch dimension: whatever the `batch` logical name maps to."""
  for name, axes in rules(mesh_cfg):
    if name == "batch":
      return () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
  return ()


def batch_sharding(mesh: Mesh, mesh_cfg) -> NamedSharding:
  return NamedSharding(mesh, P(batch_axes(mesh_cfg) or None))
