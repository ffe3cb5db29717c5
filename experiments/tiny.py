r"""The CPU default: a small STUNet trained in minutes on 2 cores on synthetic captioned clips.

Variants (`--config=experiments/tiny.py:VARIANT`):
  (none)  text-to-video STUNet trained from scratch (the default job).
  t2i     the text-to-image U-Net trained on single frames (stage 1 of the two-stage path).
  inflate STUNet initialised from a `t2i` workdir (`config.init_from`), temporal params only.
  precomputed  text-to-video conditioned on caption features stored in the dataset (a frozen
          stand-in encoder, `data/text_features.py`), the way paper-scale runs use T5-XXL.
  cond    7-channel conditional STUNet (image-to-video, inpainting, cinemagraphs) fine-tuned from
          a text-to-video checkpoint (`config.init_from`).
  slow    text-to-video on the "slow" data, 6000 steps: the object covers 0.45 of its range per
          clip from a random start, so its motion can go on past the clip. Long videos
          (`--num_frames` > 8, temporal MultiDiffusion) need it: in the default data every
          clip crosses the whole frame, so overlapping windows cannot both follow it.
  test    the smallest shapes, for unit tests and CI.

Space-to-depth at the input, 8 frames at 32x32, channels 32/64, cross-attention to the text +
FiLM and batch 16 are what learns fast on a CPU (the probes that chose them: docs/benchmarks.md,
"Measurements behind the design"). Space-to-depth is 4 (32x32x3 -> 8x8x48 tokens); a token is
wider than the first level's 32 channels, so `model.pixel_skip` (an identity path from the
input pixels to the output, gated per pixel from the last features:
`model.pixel_gate_from_features`) carries the per-pixel detail that denoising at low noise needs;
without the per-pixel gate samples kept ~10 grey levels of speckle on the background.

Motion that follows the prompt needs training at the noise levels where the caption alone
decides where the object is: at lower noise the noisy clip already shows it, so a direction word
changes the loss only for t > ~0.95, which uniform t visits 5% of the time
(`diffusion.t_tail_frac=0.5` of the examples are drawn from [t_tail_start, 1]). Without the tail,
held-out direction accuracy stayed at chance; with it, it learned with or without the text
layout path (`model.text_layout`: learned per-position queries attending to the caption), which
is kept for a small gain in shape. Shape is learned last, hence 3000 steps. The evidence for
each choice: docs/motion.md.
"""
import ml_collections

SAMPLE_PROMPTS = (
    "a red square moves to the left",
    "a green circle moves up",
    "a blue triangle moves to the right",
    "a yellow square moves down",
    "a magenta circle moves to the left",
    "a cyan triangle moves up",
)


def get_config(arg: str = ""):
  variant = arg or "t2v"
  if variant not in ("t2v", "t2i", "inflate", "cond", "precomputed", "slow", "test"):
    raise ValueError(
        f"unknown tiny variant {arg!r}; use t2i, inflate, cond, precomputed, slow or test")
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.seed = 0
  # Where to start from when the workdir has no checkpoint: a workdir (its latest step) whose
  # params are copied in (`resume` continues its whole train state, `init_from` only params).
  c.resume = ""
  c.init_from = ""
  c.freeze_non_temporal = False

  c.data = ml_collections.ConfigDict(dict(
      name="synthetic_clips", variant="simple", data_dir="",
      num_frames=8, resolution=32, fps=8,
      num_train=8000, num_validation=256, num_test=256, builder_seed=0,
      max_text_len=16, vocab_size=128,
      text_embedding_dim=0,  # > 0: store frozen caption features (for text.kind='precomputed').
      random_flip=False, random_temporal_flip=False, worker_count=0,
  ))

  c.model = ml_collections.ConfigDict(dict(
      temporal=True, channels=(32, 64), num_res_blocks=1, attn_levels=(1,), num_heads=4,
      head_dim=None, temporal_downsample=(True,), temporal_attn_levels=None,
      temporal_text_attn=True, space_to_depth=4, cond_channels=0, out_channels=3, dropout=0.0,
      norm_groups=8, remat=False, pixel_skip=True, pixel_gate_from_features=True,
      position_code=True, frame_film=True,
      text_layout=True, dtype="float32", param_dtype="float32",
  ))
  c.text = ml_collections.ConfigDict(dict(
      kind="transformer", width=64, num_layers=2, num_heads=4, mlp_dim=128,
  ))

  c.diffusion = ml_collections.ConfigDict(dict(
      schedule="cosine", logsnr_min=-15.0, logsnr_max=15.0, logsnr_shift=0.0,
      prediction="v", loss_weighting="none", cfg_dropout=0.1,
      t_sampling="uniform", t_logit_mean=0.0, t_logit_std=1.0,
      # Half of the examples at the noise levels where only the caption fixes the layout.
      t_tail_frac=0.5, t_tail_start=0.95, min_snr_gamma=5.0,
  ))

  c.train = ml_collections.ConfigDict(dict(
      steps=3000, batch_size=16, grad_accum=1,
      lr=2e-3, warmup_steps=30, end_lr_fraction=0.1, weight_decay=0.0,
      b1=0.9, b2=0.99, grad_clip=1.0, ema_decay=0.99,
      log_every=50, ckpt_every=500, max_to_keep=3, async_checkpointing=True,
      sample_at_end=True,
      # Text alignment (analytic detector) at the end: this many held-out test-split captions,
      # each sampled with eval_seeds seeds.
      eval_prompts=24, eval_seeds=2,
      peak_flops_per_device=0.0,  # 0: MFU is not logged (set the chip's peak on TPU).
  ))

  c.sample = ml_collections.ConfigDict(dict(
      sampler="ddim", num_steps=32, guidance=3.0, eta=0.0, seed=0, clip_x0=True,
      spacing="uniform",
      prompts=SAMPLE_PROMPTS, use_ema=True, batch_size=8,
      # Frames shared by neighbouring windows of a video longer than data.num_frames
      # (--num_frames): half a window, so 16, 32 and 64 frames tile with stride 4.
      overlap=4,
      # MultiDiffusion windows per model call, run one call after another (0: all windows in
      # one call). Fewer bound the activation memory of long videos and of SSR; same videos.
      windows_per_call=0,
  ))

  # Evaluation sweeps (--mode=sweep; --mode=eval runs one checkpoint with c.sample's settings):
  # every combination below is one cell of workdir/eval/results.jsonl, skipped when rerun.
  c.eval = ml_collections.ConfigDict(dict(
      checkpoints="all",  # "all", "latest" or steps like "500,1100".
      guidance=(1.0, 3.0, 5.0), samplers=("ddim",), num_steps=(32,), seeds=(0,),
      prompt_sets=("grid", "test"),  # grid: alignment.grid_prompts; test: held-out captions.
      num_samples=24,  # Prompts per cell (per prompt set).
      num_videos=4,  # mp4 + gif files written per cell (grid.png shows all samples).
      fvd=True,  # Domain Frechet distance with the project's classifier (synthetic data).
      i3d_weights="",  # A Kinetics I3D .npz (docs/metrics.md): also the standard FVD.
      classifier=ml_collections.ConfigDict(dict(
          labels=("color", "shape", "direction"), space_to_depth=4, channels=(32, 64),
          feature_dim=64, steps=300, batch_size=32, lr=3e-3, max_train_examples=2048, seed=0)),
  ))

  c.mesh = ml_collections.ConfigDict(dict(
      shape=(-1, 1), axes=("data", "fsdp"),
      # Gather every FSDP-sharded param (replicate it) at the start of the step, so that the
      # partitioner cannot keep a conv's weights sharded and gather its activations instead.
      gather_params=False,
      logical_axis_rules=(
          ("batch", ("data", "fsdp")),
          ("conv_out", "fsdp"), ("embed", "fsdp"), ("mlp", None), ("heads", None),
          ("kv", None), ("conv_in", None), ("vocab", None), ("length", None),
          ("frames", None), ("height", None), ("width", None),
          ("pixels", None),  # Space-to-depth pixel values (the pixel skip's small matrices).
      ),
  ))

  if variant == "t2i":
    c.model.temporal = False  # Frames fold into the batch: every frame is one image.
  if variant == "inflate":
    c.freeze_non_temporal = True
  if variant == "cond":
    c.model.cond_channels = 4
    c.train.steps = 1000
  if variant == "precomputed":
    c.data.text_embedding_dim = 64
    c.text.kind = "precomputed"
  if variant == "slow":
    c.data.variant = "slow"
    # Slow motion from a random start is learnt later than the default data's: at 3000 steps
    # held-out direction was 0.21, at 6000 1.00 (docs/benchmarks.md, "Long videos").
    c.train.steps = 6000
    # Long videos: windows 2 frames apart agree on where the object is far more often than
    # windows 4 apart (direction across window borders, docs/benchmarks.md "Long videos").
    c.sample.overlap = 6
  if variant == "test":
    c.data.update(num_frames=4, resolution=16, num_train=64, num_validation=16, num_test=16,
                  vocab_size=64)
    c.model.update(channels=(16, 32), norm_groups=4, num_heads=2)
    c.text.update(width=32, num_layers=1, num_heads=2, mlp_dim=64)
    c.train.update(steps=4, batch_size=8, log_every=2, ckpt_every=2, warmup_steps=1,
                   async_checkpointing=False)
    c.sample.update(num_steps=4, prompts=SAMPLE_PROMPTS[:2], overlap=2)
    c.train.eval_prompts = 4
    c.eval.update(guidance=(1.0, 3.0), num_steps=(2,), num_samples=4, num_videos=1)
    c.eval.classifier.update(steps=5, channels=(8,), feature_dim=8, max_train_examples=64)
  return c
