"""Every configuration key, with its default; the other configs start from this one.

`configs/validation.py` rejects keys that are not here, so a typo fails before anything
compiles.
"""

import ml_collections


def model_options(model: str, **values) -> ml_collections.ConfigDict:
  """Every option of `models.create(model, ...)` at its default, with `values` set: a config
  lists them all, so `--config.model_options.KEY=VALUE` works for each of them."""
  import models  # pylint: disable=g-import-not-at-top
  options = models.default_options(model)
  if unknown := sorted(set(values) - set(options)):
    raise ValueError(f"{model} has no option(s) {unknown}; its options: {sorted(options)}.")
  return ml_collections.ConfigDict({**options, **values})


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data: "digits", "tfds:NAME" or "folder:PATH" (see input_pipeline.load).
  config.dataset = "digits"
  config.data_dir = ""        # TFDS data directory; "" is TFDS's default (~/tensorflow_datasets).
  config.train_split = "train"
  config.test_split = "test"
  config.image_size = 0       # folder: resize every image to this square size; 0 keeps the size.
  config.grayscale = False    # folder: decode as one channel.
  config.holdout = 0          # folder without a test/ folder: stratified hold-out size.
  config.skip_corrupt = False  # folder: skip unreadable images (counted in the log) instead of failing.
  # folder: images of more pixels (width x height) are refused by name before decoding.
  config.max_image_pixels = 40_000_000
  config.cache_dir = ""       # decoded folders, TFDS mean images; "" is $RECTIFIERS_CACHE
                              # or else ~/.cache/rectifiers (input_pipeline.load).
  config.worker_count = 0     # grain worker processes for the training iterator.
  # Train on a stratified subset of the training split (class proportions kept): 0 uses all
  # of it. Subsets of one subset_seed are nested (500 examples lie inside 2,000).
  config.train_examples = 0
  config.subset_seed = 0

  # Inputs are raw pixels minus the per-pixel training mean (the paper's "raw images"),
  # times input_scale: 1/255 keeps the public recipes' learning rates stable on 0-255 data.
  config.input_scale = 1 / 255

  # On-device preprocessing (input_pipeline.augment.AugmentConfig); all off by default.
  config.augment = ml_collections.ConfigDict()
  config.augment.crop = "none"        # "none" | "pad" | "random"
  config.augment.crop_padding = 4
  config.augment.crop_size = 0
  config.augment.flip = False
  config.augment.ndsb = False
  # The NDSB warp (ndsb=True): rotation in [-rotation, rotation] degrees, shear factor in
  # [-shear, shear], aspect ratio and scale uniform in their ranges, `fill` (a raw pixel
  # value) outside the image. rotation=0, shear=0, aspect=scale=(1, 1) turn the warp off.
  config.augment.rotation = 180.0
  config.augment.shear = 0.5
  config.augment.aspect = (0.5, 1.5)
  config.augment.scale = (0.3, 1.7)
  config.augment.fill = 255.0
  # The NDSB crop is drawn from a canvas of scale x the image's side clamped to this
  # (min, max): cxxnet's min_img_size/max_img_size; (0, 1e10) does not clamp.
  config.augment.canvas = (0.0, 1e10)

  # Model: models.create(model, num_classes=..., rectifier=rectifier, **model_options); the
  # options are the model's (models.default_options), each listed with its default.
  config.model = "nin"
  config.rectifier = "relu"   # a name of rectifiers.linen.rectifier_factory, e.g. "rrelu".
  config.model_options = model_options(config.model)
  config.dtype = "float32"    # computation dtype: "float32" or "bfloat16"; parameters stay float32.

  # Optimisation: SGD with momentum, L2 weight decay on the parameters named in
  # weight_decay_on (He et al. 2015: none on biases, BatchNorm and PReLU slopes).
  config.batch_size = 128     # global, over all devices and processes.
  config.num_epochs = 10
  config.steps_per_epoch = 0  # 0: the training split's size // batch_size; > 0 for smoke runs.
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.nesterov = False
  config.weight_decay = 1e-4
  config.weight_decay_on = ("kernel",)
  config.warmup_epochs = 0.0
  config.lr_decay_epochs = ()  # epochs at which the learning rate is multiplied by lr_decay_factor.
  config.lr_decay_factor = 0.1

  # Devices. On CPU: 0 = one single-threaded XLA device per core this process may use (the
  # fastest layout measured here, training/devices.py); 1 = XLA's one multi-threaded device;
  # N = N single-threaded devices. Ignored on GPU/TPU, where every device is used. A batch
  # that does not divide over the devices uses fewer of them.
  config.cpu_devices = 0

  # Evaluation, logging and checkpoints.
  config.eval_batch_size = 0  # 0: batch_size.
  config.eval_every_epochs = 1
  # Each evaluation also measures the deterministic-mode (test-time) error and log-loss on a
  # fixed random subset of this many training examples (all if fewer): train_eval_error and
  # train_eval_loss; test_error - train_eval_error is the generalisation gap. 0 turns it off.
  config.train_eval_examples = 2000
  # At each evaluation, what the rectifiers do inside the network (rectifiers/statistics.py),
  # from the same test-mode passes: per rectified layer the fraction of dead units, of
  # negative inputs and the negative side's relative output, on the test split and the
  # train-eval subset; PReLU's slopes; RReLU's realised training-mode slope. Histograms of
  # the pre-activations at the first and last evaluation and every
  # activation_histogram_every_epochs (0: every quarter of the run).
  config.activation_statistics = True
  config.activation_histogram_every_epochs = 0
  config.log_every_steps = 50
  # A jax.profiler trace of this many training steps, from the end of the first logged
  # interval, into WORKDIR/profile/ (training/profiler.py; `tensorboard --logdir
  # WORKDIR/profile`). 0: none.
  config.profile_steps = 0
  config.checkpoint_every_epochs = 1
  config.keep_checkpoints = 2

  # Go on from another run's checkpoint, "WORKDIR:STEP" (or "WORKDIR": its newest), under
  # this config, in a new workdir: e.g. after a divergence, with a lower learning_rate. The
  # new run starts at that step with the parent's parameters, optimiser state and data
  # position, and records the parent, the step and the changed keys in parent.json. The
  # parent is only read. Its network and data must be this config's. "": from scratch.
  config.init_from = ""
  return config
