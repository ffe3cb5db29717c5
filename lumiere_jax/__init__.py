"""lumiere_jax: a JAX/Flax Space-Time U-Net text-to-video model (docs/design.md)."""
from lumiere_jax import xla_flags as _xla_flags

_xla_flags.apply()
