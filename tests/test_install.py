"""setup.py declares every third-party import, and constraints.txt pins what setup.py asks for.

setup.py is run with `setuptools.setup` replaced, so the checks read the file as it is now, not
the metadata of an earlier install.
"""
import ast
import importlib.metadata
import re
import runpy
import sys
from unittest import mock

import pytest

from conftest import REPO, normalize_distribution, pinned_versions


@pytest.fixture(scope="module")
def setup_py():
  """(module globals, keyword arguments of setuptools.setup) of setup.py."""
  with mock.patch("setuptools.setup") as setup:
    module = runpy.run_path(str(REPO / "setup.py"))
  return module, setup.call_args.kwargs


def requirement_name(requirement: str) -> str:
  return normalize_distribution(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def third_party_imports() -> dict:
  """{top-level module: a file importing it} for every import in lumiere_jax/ that is neither
  the standard library nor the package itself, function-level imports included."""
  found = {}
  for path in sorted((REPO / "lumiere_jax").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names = [node.module]
      else:
        continue
      for name in names:
        top = name.split(".")[0]
        if top not in sys.stdlib_module_names and top != "lumiere_jax":
          found.setdefault(top, str(path.relative_to(REPO)))
  return found


def test_every_third_party_import_is_declared(setup_py):
  _, kwargs = setup_py
  declared = {requirement_name(r) for r in kwargs["install_requires"]}
  imports = third_party_imports()
  # Module-level (scipy, etils) and function-level (matplotlib) imports are both seen.
  assert {"jax", "scipy", "etils", "matplotlib"} <= set(imports)
  providers = importlib.metadata.packages_distributions()
  undeclared = {f"{module} (in {where})": providers.get(module)
                for module, where in imports.items()
                if not declared & {normalize_distribution(d) for d in providers.get(module, ())}}
  assert not undeclared, f"imported but not in setup.py's install_requires: {undeclared}"


def test_constraints_pin_every_requirement_and_the_jax_version(setup_py):
  module, kwargs = setup_py
  requirements = list(kwargs["install_requires"])
  for extra in ("cpu", "tpu", "test", "tensorboard"):
    requirements += kwargs["extras_require"][extra]
  pins = pinned_versions()
  unpinned = {requirement_name(r) for r in requirements} - set(pins)
  assert not unpinned, f"in setup.py but not in constraints.txt: {sorted(unpinned)}"
  assert pins["jax"] == pins["jaxlib"] == module["JAX_VERSION"]
  for requirement in requirements:  # Every exact pin of setup.py is the constraints' version.
    if "==" in requirement:
      assert requirement.split("==")[1] == pins[requirement_name(requirement)], requirement


def test_core_requirements_leave_the_platform_to_the_extras(setup_py):
  module, kwargs = setup_py
  assert f"jax=={module['JAX_VERSION']}" in kwargs["install_requires"]
  core = {requirement_name(r) for r in kwargs["install_requires"]}
  assert not core & {"jaxlib", "libtpu"}  # jax[cpu] / jax[tpu] choose them.
  assert kwargs["extras_require"]["tpu"] == [f"jax[tpu]=={module['JAX_VERSION']}"]
  assert kwargs["extras_require"]["cpu"] == [f"jax[cpu]=={module['JAX_VERSION']}"]
