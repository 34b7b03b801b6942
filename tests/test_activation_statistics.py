"""Per-layer activation statistics (rectifiers/statistics.py) against planted cases, and
as every training run records, reports and shows them."""

import functools
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evaluate
import models
import report
import train
from input_pipeline import augment
from rectifiers import linen as L
from rectifiers import statistics
from tests.helpers import REPO, sweep_of_copies, tiny_config
from training import checkpoints, evaluation, steps, tensorboard

NIN_LAYERS = ["conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4", "conv3", "cccp5", "cccp6"]


def sown_summary(module, x, mask=None, variables=None, **apply_kwargs):
  """The module's statistics and mean slope on x (rectifiers/statistics.py)."""
  y, sown = module.apply(variables or {}, x, mutable=[statistics.COLLECTION, statistics.SLOPES],
                         **apply_kwargs)
  mask = jnp.ones(x.shape[0], bool) if mask is None else mask
  out = {}
  for collection in (statistics.COLLECTION, statistics.SLOPES):
    sums = statistics.masked_sums(sown[collection], mask)
    out.update(statistics.summarize(jax.device_get(sums))[""])
  return y, out


def test_a_known_sign_pattern_gives_the_exact_negative_fraction_and_dead_channels():
  # 2 examples, 3 x 3 positions, 4 channels; channel 3 is never positive (dead).
  rng = np.random.RandomState(0)
  x = np.abs(rng.randn(2, 3, 3, 4)).astype(np.float32) + 0.1
  sign = rng.choice([-1.0, 1.0], size=x.shape).astype(np.float32)
  sign[..., 3] = -1.0
  x = x * sign
  x[0, 0, 0, 3] = 0.0  # zero is on the negative side, and keeps the channel dead
  x[1, 2, 2, 0] = 0.0
  prelu = {"params": {"slope": jnp.full((4,), 0.3, jnp.float32)}}
  for module, slope, variables in ((L.LeakyReLU(a=5.5), 1 / 5.5, None), (L.ReLU(), 0.0, None),
                                   (L.PReLU(), 0.3, prelu)):
    _, s = sown_summary(module, jnp.asarray(x), variables=variables)
    assert s["negative"] == np.sum(x <= 0) / x.size
    assert s["dead"] == 0.25
    expected = np.sum(-x[x <= 0] * slope) / np.sum(x <= 0) / np.mean(x[x > 0])
    assert s["negative_output"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert s["mean_slope"] == pytest.approx(slope, rel=1e-6)


def test_a_negative_prelu_slope_does_not_turn_negative_inputs_positive():
  # y = -0.5 x > 0 where x < 0: the signs must come from the input, not the output.
  x = jnp.asarray(np.random.RandomState(4).randn(3, 4, 4, 2), jnp.float32)
  x = x.at[..., 1].set(-jnp.abs(x[..., 1]))  # channel 1 dead
  y, s = sown_summary(L.PReLU(), x, variables={"params": {"slope": jnp.full((2,), -0.5)}})
  x = np.asarray(x)
  assert s["negative"] == np.sum(x <= 0) / x.size
  assert s["dead"] == 0.5
  expected = np.mean(-np.asarray(y)[x <= 0]) / np.mean(x[x > 0])
  assert s["negative_output"] == pytest.approx(expected, rel=1e-6)


def test_relu_carries_nothing_on_the_negative_side():
  x = jnp.asarray(np.random.RandomState(1).randn(3, 4, 4, 5), jnp.float32)
  _, s = sown_summary(L.ReLU(), x)
  assert s["negative_output"] == 0.0 and s["mean_slope"] == 0.0


def test_masked_examples_do_not_count():
  x = np.ones((3, 2, 2, 2), np.float32)
  x[2] = -1.0  # a padding example, all negative
  _, s = sown_summary(L.ReLU(), jnp.asarray(x), mask=jnp.asarray([True, True, False]))
  assert (s["negative"], s["dead"]) == (0.0, 0.0)


def test_nothing_is_recorded_unless_the_collection_is_mutable():
  variables = L.ReLU().init(jax.random.key(0), jnp.ones((1, 2, 2, 3)))
  assert statistics.COLLECTION not in variables
  jaxpr = jax.make_jaxpr(lambda x: L.ReLU().apply({}, x))(jnp.ones((2, 4, 4, 3)))
  assert "reduce_sum" not in str(jaxpr)  # the training step computes no statistics


def test_a_layer_whose_bias_forces_every_input_negative_has_every_unit_dead():
  model = models.create("nin", num_classes=10, rectifier="relu", width=0.0625,
                        kernel_init="he")
  x = jnp.asarray(np.random.RandomState(0).randn(4, 8, 8, 1), jnp.float32)
  # Both jitted: op by op, each of the network's operations compiles on its own (8 s here).
  params = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)["params"]
  params["conv1"]["bias"] = jnp.full_like(params["conv1"]["bias"], -1e4)
  state = steps.TrainState(step=0, params=params, batch_stats=None, opt_state=None)
  batch = {"image": jnp.zeros((4, 8, 8, 1), jnp.uint8), "label": jnp.zeros(4, jnp.int32),
           "mask": jnp.ones(4, bool)}
  eval_step = jax.jit(functools.partial(steps.eval_step, model=model,
                                        augment_config=augment.AugmentConfig(), input_scale=1.0,
                                        activation_statistics=True))
  out = eval_step(state, batch, jnp.zeros((8, 8, 1)))
  stats = evaluation.layer_statistics(jax.device_get(out["activations"]), NIN_LAYERS)
  assert list(stats) == NIN_LAYERS
  assert stats["conv1"] == {"dead": 1.0, "negative": 1.0, "negative_output": 0.0}
  # Nothing reaches the next layer but its bias.
  assert stats["cccp1"]["negative"] in (0.0, 1.0)


def test_rrelus_realised_training_slope_matches_its_expectation():
  x = -jnp.abs(jnp.asarray(np.random.RandomState(2).randn(8, 16, 16, 48), jnp.float32)) - 1e-3
  expected = np.log(8 / 3) / (8 - 3)  # E[1/a], a ~ U(3, 8)
  sd = np.sqrt((1 / 3 - 1 / 8) / 5 - expected ** 2)  # sd of 1/a
  for sample, mean in (("divisor", expected), ("slope", (1 / 3 + 1 / 8) / 2)):
    _, s = sown_summary(L.RReLU(sample=sample), x, deterministic=False,
                        rngs={"rrelu": jax.random.key(3)})
    assert s["mean_slope"] == pytest.approx(mean, abs=5 * sd / np.sqrt(x.size))
  assert evaluation.rrelu_expected_slope("rrelu") == pytest.approx(expected, rel=1e-12)
  assert evaluation.rrelu_expected_slope("prelu") is None


def test_every_evaluation_row_records_the_statistics_in_network_order(prelu_run):
  rows = [json.loads(line) for line in open(prelu_run / "metrics.jsonl")]
  for row in rows:
    a = row["activations"]
    assert list(a["test"]) == NIN_LAYERS and list(a["train_eval"]) == NIN_LAYERS
    assert list(a["prelu_slopes"]) == NIN_LAYERS
    assert "rrelu_training_slope" not in a
    for stats in a["test"].values():
      assert 0 <= stats["dead"] <= 1 and 0 <= stats["negative"] <= 1
  # Histograms at the first and the last evaluation; each counts every input of the batch.
  assert all("histograms" in r["activations"] for r in rows)
  h = rows[-1]["activations"]["histograms"]["conv1"]
  assert len(h["edges"]) == 31 and sum(h["counts"]) == steps.PROBE_EXAMPLES * 8 * 8 * 12


def test_prelu_slopes_recorded_equal_the_parameters(prelu_run):
  final = checkpoints.load_checkpoint(str(prelu_run))["state"]["params"]
  slopes = statistics.prelu_slopes(final)
  summary = json.loads((prelu_run / "summary.json").read_text())
  assert list(summary["prelu_slope_vectors"]) == NIN_LAYERS
  for layer in NIN_LAYERS:
    np.testing.assert_array_equal(np.float32(summary["prelu_slope_vectors"][layer]),
                                  slopes[layer])
    recorded = summary["activations"]["prelu_slopes"][layer]
    assert recorded == {"mean": float(slopes[layer].mean()), "min": float(slopes[layer].min()),
                        "max": float(slopes[layer].max())}
  first = checkpoints.load_checkpoint(str(prelu_run), step=3)["state"]["params"]
  row = json.loads(open(prelu_run / "metrics.jsonl").readline())
  assert row["activations"]["prelu_slopes"]["conv1"]["max"] == float(
      np.max(first["conv1_act"]["slope"]))


@pytest.mark.slow
def test_rrelu_runs_record_their_realised_training_slope(tmp_path):
  summary = train.train_and_evaluate(tiny_config("rrelu", activation_statistics=True,
                                                 activation_histogram_every_epochs=5),
                                     str(tmp_path))
  slopes = summary["activations"]["rrelu_training_slope"]
  assert list(slopes) == NIN_LAYERS
  for layer, s in slopes.items():
    assert s["expected"] == pytest.approx(0.19617, abs=1e-5)
    assert s["realised"] == pytest.approx(s["expected"], abs=0.02), layer
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert "histograms" in rows[0]["activations"] and "histograms" in rows[-1]["activations"]


def test_statistics_can_be_turned_off(digits_run):
  workdir, summary = digits_run  # tests/helpers.tiny_config turns them off
  assert tiny_config().activation_statistics is False
  assert "activations" not in summary
  assert "activations" not in json.loads(open(workdir / "metrics.jsonl").readline())


@pytest.mark.slow
def test_the_statistics_are_the_same_on_one_and_two_devices(prelu_run, tmp_path):
  one = evaluate.evaluate_run(str(prelu_run), name="one-device")["activations"]
  env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
         + " --xla_force_host_platform_device_count=2"}
  out = subprocess.run([sys.executable, "evaluate.py", f"--workdir={prelu_run}",
                        "--name=two-devices", "--cpu_devices=2"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  two = json.loads((prelu_run / "evaluations" / "two-devices.json").read_text())["activations"]
  assert list(two) == list(one) == NIN_LAYERS
  for layer in NIN_LAYERS:
    assert two[layer]["dead"] == one[layer]["dead"]
    assert two[layer]["negative"] == one[layer]["negative"]
    assert two[layer]["negative_output"] == pytest.approx(one[layer]["negative_output"],
                                                          rel=1e-5)


def test_tensorboard_shows_the_statistics_per_layer(prelu_run):
  scalars = tensorboard.read_scalars(str(prelu_run))
  for layer in NIN_LAYERS:
    assert [s for s, _ in scalars[f"dead/test/{layer}"]] == [3, 6]
    assert f"prelu_slope/mean/{layer}" in scalars
  histograms = [v.tag for e in tensorboard.read_events(str(prelu_run))
                for v in e.summary.value if v.HasField("histo")]
  assert "preactivations/conv1" in histograms


def test_report_draws_dead_units_per_layer_and_prelu_slopes(prelu_run, tmp_path):
  root = sweep_of_copies(prelu_run, tmp_path / "sweep")
  paths = report.write_report(root)
  assert os.path.getsize(paths["activations.png"]) > 10_000
  assert os.path.getsize(paths["prelu_slopes.png"]) > 10_000
  assert "Inside the network" in open(paths["results.md"]).read()
