"""Checkpoint helpers that the end-to-end resume tests in test_train_distributed.py do not isolate."""
import sys
import types

from lumiere_jax import checkpoint as ckpt_lib


def _unraisable(exc):
  return types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=None,
                               err_msg=None, object=None)


def test_failed_restore_drops_only_the_closed_loop_callbacks(monkeypatch):
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", seen.append)
  ckpt_lib._drop_late_callbacks_of_abandoned_reads()
  installed = sys.unraisablehook
  ckpt_lib._drop_late_callbacks_of_abandoned_reads()  # A second failed restore must not re-wrap.
  assert sys.unraisablehook is installed

  sys.unraisablehook(_unraisable(RuntimeError("Event loop is closed")))
  assert seen == []
  other = [_unraisable(RuntimeError("something else")), _unraisable(ValueError("bad"))]
  for unraisable in other:
    sys.unraisablehook(unraisable)
  assert seen == other
