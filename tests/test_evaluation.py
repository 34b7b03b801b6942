"""training/evaluation.py: the one evaluation component, against an independent reference
(the network applied to every test image at once, numpy's error and log-loss)."""

import jax
import numpy as np
import pytest

from training import builder, evaluation, steps
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def evaluated():
  # 360 test images in batches of 160: the last batch is padded and its padding masked.
  config = tiny_config("prelu", eval_batch_size=160, activation_statistics=True)
  s = builder.setup(config, builder.load_data(config))
  state = s.parts.init(jax.random.key(0))
  return s, state, s.evaluator.metrics(state, s.dataset.test)


def test_metrics_visit_every_example_once_and_match_the_network_on_the_whole_split(evaluated):
  s, state, metrics = evaluated
  test = s.dataset.test
  images = np.stack([test[i]["image"] for i in range(len(test))])
  labels = np.array([test[i]["label"] for i in range(len(test))])
  x = (images.astype(np.float32) - s.dataset.mean_image) * s.config.input_scale
  logits = np.asarray(s.parts.model.apply(steps.model_variables(state), x, train=False),
                      np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  p = np.clip(p, 1e-15, 1 - 1e-15)
  p /= p.sum(1, keepdims=True)
  assert metrics["examples"] == len(test) == 360
  assert metrics["error"] == pytest.approx(np.mean(logits.argmax(1) != labels), abs=1e-6)
  assert metrics["loss"] == pytest.approx(-np.log(p[np.arange(len(labels)), labels]).mean(),
                                          rel=1e-5)


def test_metrics_carry_each_rectified_layers_statistics_in_network_order(evaluated):
  s, _, metrics = evaluated
  assert list(metrics["activations"]) == list(s.evaluator.layers)
  for layer in metrics["activations"].values():
    assert set(layer) == {"dead", "negative", "negative_output"}
    assert all(0 <= v <= 1 for v in layer.values())


def test_a_rows_columns_name_both_splits_and_prelu_slopes(evaluated):
  s, state, _ = evaluated
  row = s.evaluator.evaluate(state, s.dataset.test, s.train_eval, histograms=True)
  assert row["test_examples"] == 360 and row["train_eval_examples"] == len(s.train_eval)
  activations = row["activations"]
  assert list(activations["prelu_slopes"]) == list(s.evaluator.layers)
  assert list(activations["histograms"]) == list(s.evaluator.layers)
  counts = activations["histograms"]["conv1"]["counts"]
  assert sum(counts) > 0 and len(activations["histograms"]["conv1"]["edges"]) == len(counts) + 1


def test_metrics_of_divides_the_sums_by_the_count():
  assert evaluation.metrics_of({"errors": 3, "loss": 6.0, "count": 12}) == {
      "error": 0.25, "loss": 0.5, "examples": 12}


def test_in_order_puts_layers_in_network_order_and_unknown_ones_last_by_name():
  got = evaluation.in_order({"z": 1, "conv2": 2, "a": 3, "conv1": 4}, ["conv1", "conv2"])
  assert list(got) == ["conv1", "conv2", "a", "z"]


@pytest.mark.parametrize("epoch,expected", [(1, True), (2, False), (3, True), (4, False),
                                            (6, True), (11, False), (12, True)])
def test_histograms_are_taken_at_the_first_the_last_and_every_quarter_of_the_run(epoch, expected):
  config = tiny_config(num_epochs=12, eval_every_epochs=1, activation_statistics=True,
                       activation_histogram_every_epochs=0)
  assert evaluation.wants_histograms(config, epoch) is expected
