"""lumiere_jax: a TPU-native JAX/Flax reimplementation of Lumiere (space-time diffusion video).

Install with the extra for your hardware: `pip install -e .[cpu]` or `pip install -e .[tpu]`
(`jax[tpu]` pins the libtpu release built for this jax). The exact versions the tests pass with
are in `constraints.txt` (`pip install -e .[tpu] -c constraints.txt`); the ranges below only
keep out releases older than those.
"""
import setuptools

JAX_VERSION = "0.10.2"  # jax's APIs (export, sharding, topologies) change between releases.

setuptools.setup(
    name="lumiere_jax",
    version="0.1.0",
    description="Space-Time U-Net video diffusion (Lumiere) in JAX/Flax, with TFDS/grain data, "
    "Orbax checkpoints and jit-compiled sampling.",
    packages=setuptools.find_packages(include=["lumiere_jax", "lumiere_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        f"jax=={JAX_VERSION}",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "tensorflow-datasets>=4.9.10",
        "grain>=0.2.18",
        "array-record>=0.8.6",  # TFDS's array_record file format, which grain reads.
        "etils[epath]>=1.15.0",
        "sentencepiece>=0.2.3",
        "absl-py>=2.5.1",
        "ml-collections>=1.1.0",
        "einops>=0.8.2",
        "numpy>=1.26,<3",
        "scipy>=1.17.1",
        "av>=18.1.0",
        "pillow>=10,<14",
        "tensorboardX>=2.6.5",
        # TFDS 4.9.10 imports it for builders in dotted modules but only requires it on py<3.9.
        "importlib_resources>=7.1.0",
        "matplotlib>=3.11.2",
        "flatbuffers>=25.12.19",  # jax.export serialization (sample.export_sampler).
    ],
    extras_require={
        "cpu": [f"jax[cpu]=={JAX_VERSION}"],
        "tpu": [f"jax[tpu]=={JAX_VERSION}"],
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5", "portpicker>=1.6.0"],  # portpicker: free ports.
        "tensorboard": ["tensorboard>=2.21.0"],
    },
)
