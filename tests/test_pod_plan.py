"""The pod planner's bookkeeping: model FLOPs for MFU, OOM parsing, job specs, the summary.

The TPU compiles themselves are in `test_tpu_compile.py` (they need libtpu); everything here
runs on CPU.
"""
import os
import sys

import jax
import pytest

from conftest import load_experiment, pinned_versions

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import pod_plan  # pylint: disable=g-import-not-at-top,wrong-import-position

# What libtpu 0.0.52 raised for the base model on v5p:4x8x8 before activation constraints.
OOM = ("RESOURCE_EXHAUSTED: E1000: CompileTimeHbmOom: Ran out of memory on HBM, the total memory "
       "required for HLO temporaries (334.05G) exceeds available HBM (95.73G). HLO module: "
       "jit_train_step.")


def test_oom_message_gives_needed_temporaries():
  assert pod_plan.oom_temporaries_gib(OOM) == pytest.approx(334.05)
  assert pod_plan.oom_temporaries_gib(OOM.replace("334.05G", "512.00M")) == pytest.approx(0.5)
  used = ("RESOURCE_EXHAUSTED: E1000: CompileTimeHbmOom: XLA:TPU compile permanent error. Ran "
          "out of memory in memory space hbm. Used 16.16G of 15.75G hbm. Exceeded hbm capacity "
          "by 421.62M.")
  assert pod_plan.oom_temporaries_gib(used) == pytest.approx(16.16)
  assert pod_plan.oom_temporaries_gib("INTERNAL: something else") is None
  assert pod_plan.oom_temporaries_gib(None) is None


@pytest.mark.parametrize("spec", ["v5p/256", "v5p/256/zero", "v7/256/fsdp", "v5e/512/fsdp",
                                  "v5p/256/fsdp/all", "v5p/many/fsdp", "v6e/256/fsdp+frames4",
                                  "v6e/256/fsdp+remat+frames0", "v5e/8/fsdp+remat+height16"])
def test_bad_job_specs_are_rejected(spec):
  with pytest.raises(ValueError, match="--jobs entry"):
    pod_plan.parse_jobs([spec])


def test_job_specs_parse():
  assert pod_plan.parse_jobs(["v5p/256/fsdp+remat/search", "v4/64/dp",
                              "v6e/256/fsdp+remat+frames4"]) == [
      ("v5p", 256, "fsdp+remat", True), ("v4", 64, "dp", False),
      ("v6e", 256, "fsdp+remat+frames4", False)]


def test_split_strategies_build_the_split_config():
  assert pod_plan.strategy_variant("fsdp+remat+height8") == "height8"
  config = pod_plan.config_for("base", "frames4", 256, 2)
  assert config.mesh.shape == (64, 4)  # 64 groups of 4 chips, each holding 2 clips.
  assert config.train.batch_size == 128
  assert config.model.remat
  rules = dict(config.mesh.logical_axis_rules)
  assert rules["batch"] == "data" and rules["frames"] == "fsdp" and rules["height"] is None
  with pytest.raises(ValueError, match="groups of 4"):
    pod_plan.config_for("base", "frames4", 2, 1)


def test_model_flops_do_not_count_remat_recompute(monkeypatch):
  def tiny(name, variant, remat):
    del name, variant
    config = load_experiment("tiny", "test")
    config.model.remat = remat
    return config

  monkeypatch.setattr(pod_plan.experiments, "load", lambda n, v: tiny(n, v, remat=True))
  with_remat_config = pod_plan.model_flops_per_clip("tiny", "test")
  remat_config = pod_plan.config_for("tiny", "test", 1, 1)
  lowered, _ = pod_plan.lower_train(remat_config, jax.devices("cpu")[:1])
  recompute_counted = float(lowered.cost_analysis()["flops"])
  monkeypatch.setattr(pod_plan.experiments, "load", lambda n, v: tiny(n, v, remat=False))
  plain = pod_plan.model_flops_per_clip("tiny", "test")
  assert with_remat_config == plain > 0
  assert recompute_counted > 1.05 * plain  # The forward pass runs again in the backward pass.


def test_summary_mfu_uses_model_flops_and_oom_rows_show_the_need():
  chip = pod_plan.CHIPS["v5p"]
  fits = dict(topology="v5p:4x8x8", per_chip_batch=1, fits=True, compile_s=1.0,
              memory=dict(peak=44 * pod_plan.GIB, arguments=0.1 * pod_plan.GIB,
                          temporaries=43.9 * pod_plan.GIB),
              flops=1.25 * chip.peak_flops, bytes=0.5 * chip.hbm_bw,  # 1.25 s compute bound.
              params=1_500_000_000)
  oom = dict(topology="v5p:4x8x8", per_chip_batch=1, fits=False, error=OOM.splitlines()[0],
             error_detail=OOM)
  results = dict(model_flops_per_clip=1.0 * chip.peak_flops, train={
      "v5p/256/fsdp+remat": dict(first=fits, largest_per_chip_batch=1, searched=False),
      "v5p/256/dp": dict(first=oom, largest_per_chip_batch=0, searched=False)})
  results["train"]["v6e/256/fsdp+remat"] = dict(first=dict(oom, topology="v6e:16x16"),
                                                 largest_per_chip_batch=0, searched=False)
  rows = {r["strategy"]: r for r in pod_plan.summarize(results) if r["chip"] == "v5p"}
  # All-gather params + reduce-scatter grads in float32: 8 bytes/param over 1200 GB/s of ICI.
  ici = 8 * 1.5e9 * 255 / 256 / 1200e9
  assert rows["fsdp+remat"]["ici_s"] == pytest.approx(ici)
  assert rows["fsdp+remat"]["step_s"] == pytest.approx(1.25 + ici)
  assert rows["fsdp+remat"]["bound"] == "compute"
  assert rows["fsdp+remat"]["mfu"] == pytest.approx(1.0 / (1.25 + ici))
  assert rows["dp"]["needed_temp_gib"] == pytest.approx(334.05)
  split = dict(fits, topology="v6e:16x16", flops=0.25 * pod_plan.CHIPS["v6e"].peak_flops,
               bytes=0.0, params=0)
  results["train"]["v6e/256/fsdp+remat+frames4"] = dict(first=split, largest_per_chip_batch=1,
                                                        searched=True)
  all_rows = pod_plan.summarize(results)
  split_row = next(r for r in all_rows if r["strategy"].endswith("frames4"))
  # A quarter clip per chip: a quarter of the model FLOPs in the 0.25 s step.
  assert split_row["mfu"] == pytest.approx(chip.peak_flops / 4 / pod_plan.CHIPS["v6e"].peak_flops
                                           / 0.25)
  assert split_row["max_global_batch"] == 64
  rec = pod_plan.recommend(all_rows)
  assert rec == {"v5p/256": "fsdp+remat", "v6e/256": "fsdp+remat+frames4"}
  verdicts = pod_plan.recommendations(all_rows, rec)
  assert "fsdp+remat" in verdicts["v5p/256"] and "79%" in verdicts["v5p/256"]
  assert "1/4 clip/chip" in verdicts["v6e/256"]
  del results["train"]["v6e/256/fsdp+remat+frames4"]
  results["train"]["v4/64/fsdp"] = dict(
      first=dict(topology="v4", per_chip_batch=1, fits=False, not_compiled="one per core"),
      largest_per_chip_batch=0, searched=False)
  rows = pod_plan.summarize(results)
  verdicts = pod_plan.recommendations(rows, pod_plan.recommend(rows))
  assert verdicts["v4/64"] == "not compiled: one per core."
  assert "nothing compiled within 32 GiB" in verdicts["v6e/256"]
  assert "334.1 GiB" in verdicts["v6e/256"]
  del results["model_flops_per_clip"]
  assert pod_plan.summarize(results)[0]["mfu"] is None  # Not known: not made up.


def test_planner_libtpu_is_the_one_jax_tpu_pins():
  pin = pod_plan.required_libtpu()
  assert pod_plan.libtpu_matches(pinned_versions()["libtpu"], pin)
  assert pod_plan.libtpu_matches("0.0.42", "0.0.42.*")
  assert pod_plan.libtpu_matches("0.0.42.1", "0.0.42.*")
  assert not pod_plan.libtpu_matches("0.0.420", "0.0.42.*")
  assert not pod_plan.libtpu_matches("0.0.52", "0.0.42.*")
  assert not pod_plan.libtpu_matches("0.0.42.1", "0.0.42")


def test_ssr_sampling_windows_per_call_cut_the_compiled_memory():
  """The SSR row compiles the real Sampler: its windows, one per model call, need less memory
  than all at once (on CPU devices here; on v5e this is what makes the paper's SSR fit)."""
  config = load_experiment("ssr", "test")  # 4-frame windows, overlap 2: 7 windows on 16 frames.
  config.train.batch_size = 1
  peaks, flops = {}, {}
  for per_call in (0, 1):
    config.sample.windows_per_call = per_call
    row = pod_plan.compile_sample_step(config, jax.devices("cpu")[:1], num_frames=16)
    peaks[per_call], flops[per_call] = row["memory"]["temporaries"], row["flops"]
    assert row["model_calls"] == (7 if per_call else 1)
  assert peaks[1] < peaks[0] / 2, peaks
  # The same work: XLA counts the scanned calls' body once, the row counts it 7 times (and the
  # sampler's update outside the loop 7 times too, ~16% of this tiny model's step).
  assert 0.95 < flops[1] / flops[0] < 1.25, flops


@pytest.mark.parametrize("variant,mesh_shape", [("fsdp", (1, 8)), ("dp", (8, 1))])
def test_strategies_keep_their_own_mesh(variant, mesh_shape):
  """An `fsdp` row shards the params over every chip: a (chips, 1) mesh would replicate them
  (the planner did that for a while, and its rows then described data parallelism)."""
  config = pod_plan.config_for("base", variant, 8, 1)
  assert tuple(config.mesh.shape) == mesh_shape
  mesh = pod_plan.sharding_lib.create_mesh(config.mesh, jax.devices("cpu")[:8])
  model = pod_plan.modeling.build(config, config.data.vocab_size)
  state = pod_plan.train_lib.create_train_state(model, config, mesh)[1]
  kernel = state.params["unet"]["down_1_res_0"]["conv_2"]["kernel"]
  per_chip = kernel.sharding.shard_shape(kernel.shape)
  assert (per_chip == kernel.shape) == (variant == "dp"), (per_chip, kernel.shape)
