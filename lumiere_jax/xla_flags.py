"""XLA flags the project sets for every process that imports it, before JAX starts a backend.

On the CPU, XLA 0.10's YNNPACK runs each convolution as its own kernel call, and its convolution
kernels are 4-7x slower than XLA's own Eigen convolutions for the weight gradients of the small
3x3 and 1D temporal convolutions of the STUNet. Turning only that fusion off keeps YNNPACK for
the rest (docs/benchmarks.md has the measurements). The flag is a no-op on TPU and GPU.
A flag the user already set in XLA_FLAGS wins.
"""
import os

DEFAULT_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": "-individual_convolution"}


def with_defaults(xla_flags: str, defaults: dict = DEFAULT_FLAGS) -> str:
  """xla_flags with each of `defaults` appended unless it is already set there."""
  set_names = {f.lstrip("-").split("=", 1)[0] for f in xla_flags.split()}
  extra = [f"--{name}={value}" for name, value in defaults.items() if name not in set_names]
  return " ".join([xla_flags.strip()] + extra).strip()


def apply() -> None:
  os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))
