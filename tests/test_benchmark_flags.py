"""The benchmark scripts that tests import can share one process: their absl flags do not clash.

pytest-xdist may run any two test files in one worker, and a flag defined twice raises at import
(`DuplicateFlagError`), failing whichever test file imports second.
"""
import os
import subprocess
import sys

from conftest import REPO

IMPORTED_BY_TESTS = ("cpu", "long_video", "peer", "pod_plan", "word_swap")


def test_benchmark_scripts_import_together():
  code = f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); " + "; ".join(
      f"import {name}" for name in IMPORTED_BY_TESTS)
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), check=False)
  assert done.returncode == 0, done.stderr[-3000:]
