"""Checkpoint helpers that the end-to-end resume tests in test_train_distributed.py do not isolate."""
import json
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from conftest import load_experiment
from lumiere_jax import checkpoint as ckpt_lib
from lumiere_jax import modeling


def _unraisable(exc):
  return types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=None,
                               err_msg=None, object=None)


def test_failed_restore_drops_only_the_closed_loop_callbacks(monkeypatch):
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", seen.append)
  ckpt_lib.drop_late_callbacks_of_abandoned_reads()
  installed = sys.unraisablehook
  ckpt_lib.drop_late_callbacks_of_abandoned_reads()  # Installing twice must not re-wrap.
  assert sys.unraisablehook is installed

  sys.unraisablehook(_unraisable(RuntimeError("Event loop is closed")))
  assert seen == []
  other = [_unraisable(RuntimeError("something else")), _unraisable(ValueError("bad"))]
  for unraisable in other:
    sys.unraisablehook(unraisable)
  assert seen == other


def test_library_restore_leaves_the_process_unraisablehook_alone(tmp_path, monkeypatch):
  """Only the command line installs the filter: a failed library restore keeps the hook."""
  sentinel = lambda unraisable: None  # pylint: disable=unnecessary-lambda-assignment
  monkeypatch.setattr(sys, "unraisablehook", sentinel)
  train_cfg = ml_collections.ConfigDict(dict(max_to_keep=2, async_checkpointing=False))
  mngr = ckpt_lib.create_manager(str(tmp_path), train_cfg)
  ckpt_lib.save(mngr, 1, {"w": jnp.ones((4,))}, None, ml_collections.ConfigDict(), force=True)
  mngr.wait_until_finished()
  wrong = {"w": jax.ShapeDtypeStruct((5,), jnp.float32)}  # Not the saved shape: restore fails.
  with pytest.raises(ckpt_lib.CheckpointError):
    ckpt_lib.restore(mngr, 1, wrong)
  with pytest.raises(ckpt_lib.CheckpointError):
    ckpt_lib.restore_subtree(str(tmp_path), ("w",), jax.ShapeDtypeStruct((5,), jnp.float32))
  assert sys.unraisablehook is sentinel


@pytest.mark.parametrize("has_embedding_dim", [True, False])
def test_old_config_json_loads_without_the_removed_text_keys(tmp_path, has_embedding_dim):
  """text.max_len / text.precomputed_dim duplicated data.max_text_len / data.text_embedding_dim;
  a workdir saved with them loads (into the data keys when a config predates those)."""
  config = load_experiment("tiny", "precomputed")
  old = ckpt_lib.config_to_dict(config)
  old["text"].update(max_len=old["data"]["max_text_len"],
                     precomputed_dim=old["data"]["text_embedding_dim"])
  if not has_embedding_dim:
    del old["data"]["text_embedding_dim"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  loaded = ckpt_lib.load_config(str(tmp_path))
  assert ckpt_lib.config_to_dict(loaded) == ckpt_lib.config_to_dict(config)
  assert "max_len" not in loaded.text and "precomputed_dim" not in loaded.text
  shapes = [jax.tree.map(lambda a: a.shape, modeling.abstract_params(modeling.build(c, 0), c))
            for c in (loaded, config)]
  assert shapes[0] == shapes[1]
