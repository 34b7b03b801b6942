"""The paper's published numbers and the names and order of the settings it compares.

Tables 3 and 4 of Xu et al. (2015) give (training error, test error) for Network in
Network on CIFAR-10 and CIFAR-100; Table 5 gives (train, validation) multi-class log-loss
on NDSB; §3.1 gives RReLU's Inception-BN accuracy on CIFAR-100.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


# Tables 3 and 4: (training error, test error); Table 5: (train log-loss, validation log-loss).
PAPER_TABLES: dict[str, dict[str, Any]] = {
    "cifar10": {
        "title": "Table 3: CIFAR-10, Network in Network",
        "metric": "error",
        "values": {"relu": (0.00318, 0.1245), "leaky_relu_100": (0.0031, 0.1266),
                   "leaky_relu_5.5": (0.00362, 0.1120), "prelu": (0.00178, 0.1179),
                   "rrelu": (0.00550, 0.1119)}},
    "cifar100": {
        "title": "Table 4: CIFAR-100, Network in Network",
        "metric": "error",
        "values": {"relu": (0.1356, 0.429), "leaky_relu_100": (0.11552, 0.4205),
                   "leaky_relu_5.5": (0.08536, 0.4042), "prelu": (0.0633, 0.4163),
                   "rrelu": (0.1141, 0.4025)}},
    "cifar100_inception": {
        "title": "§3.1: CIFAR-100, Inception-BN (RReLU only: 75.68% accuracy)",
        "metric": "error",
        "values": {"rrelu": (None, 1 - 0.7568)}},
    "ndsb": {
        "title": "Table 5: NDSB, multi-class log-loss",
        "metric": "log-loss",
        "values": {"relu": (0.8092, 0.7727), "leaky_relu_100": (0.7846, 0.7601),
                   "leaky_relu_5.5": (0.7831, 0.7391), "prelu": (0.7187, 0.7454),
                   "rrelu": (0.8090, 0.7292)}},
}


DISPLAY_NAMES = {"relu": "ReLU", "leaky_relu_100": "Leaky ReLU, a=100",
                 "leaky_relu_5.5": "Leaky ReLU, a=5.5", "prelu": "PReLU",
                 "rrelu": "RReLU (y = x / 5.5 at test)", "elu": "ELU", "gelu": "GELU",
                 "silu": "SiLU"}
BASELINE = "relu"  # the paper's baseline: every table's differences are to ReLU
# Pairs the paper's observations 2-3 are about (RReLU's randomness against a fixed or a
# learned slope), reported when a sweep has both settings.
LEAKY_PAIRS = (("rrelu", "leaky_relu_5.5"), ("rrelu", "prelu"), ("prelu", "leaky_relu_5.5"))
# CIFAR-10's classes in its label order: a folder of CIFAR-10 images is the paper's data.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def display_name(setting: str) -> str:
  return DISPLAY_NAMES.get(setting, setting)


def setting_order(setting: str) -> tuple[int, str]:
  """Sort key: the paper's settings in its order, then the modern activations, then others."""
  order = list(DISPLAY_NAMES)
  return (order.index(setting) if setting in order else len(order), setting)


def paper_table_for(dataset: str, model: str, class_names: Sequence[str] | None,
                    num_classes: int | None) -> tuple[str | None, bool]:
  """The paper table a sweep compares with: (key of PAPER_TABLES, whether it is the same
  experiment), or (None, False) when the data set is not one of the paper's three. The
  paper's data under another network or width (a folder of CIFAR-10 images, NIN's
  CIFAR-10 table for Inception-BN) is compared with it as a reference."""
  names = tuple(class_names or ())
  if model == "ndsb" or num_classes == 121:
    return "ndsb", True
  if dataset == "tfds:cifar100" or num_classes == 100:
    return ("cifar100_inception" if model == "inception_bn" else "cifar100"), True
  if dataset == "tfds:cifar10":
    return "cifar10", model == "nin"
  if names == CIFAR10_CLASSES or (not names and "cifar10" in dataset and num_classes == 10):
    return "cifar10", False
  return None, False


def metric_of(table_key: str | None) -> str:
  """"error" (rates, shown in %) or "log-loss" (Table 5): what a comparison reports."""
  return PAPER_TABLES[table_key]["metric"] if table_key else "error"


def baseline_of(settings: Sequence[str], requested: str | None) -> str | None:
  """The setting the others are compared with: `requested`, else ReLU when the runs have
  it, else None (then every pair is compared)."""
  if requested is not None:
    if requested not in settings:
      raise ValueError(f"--baseline={requested} is not a setting of these runs; they have "
                       f"{', '.join(sorted(settings, key=setting_order))}.")
    return requested
  return BASELINE if BASELINE in settings else None
