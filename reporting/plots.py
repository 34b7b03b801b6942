"""A sweep's figures: the paper's Figures 1-4, the generalisation gap over training and
what the rectifiers do inside the network (dead units, PReLU's slopes).
"""

from __future__ import annotations

import numpy as np

from reporting import paper_tables
from training import figures, records
from training.run_directory import SweepRun


_COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown",
           "tab:pink", "tab:olive")
# The per-layer statistics activations.png shows, with their axis labels and scale.
_LAYER_PANELS = ((records.DEAD, "dead units (%)", 100.0),
                 (records.NEGATIVE, "negative inputs (%)", 100.0),
                 (records.NEGATIVE_OUTPUT, "|negative| / positive output", 1.0))


def _by_setting(runs: list[SweepRun]) -> dict[str, list[SweepRun]]:
  """The runs grouped by setting, in the paper's order."""
  groups: dict[str, list[SweepRun]] = {}
  for r in sorted(runs, key=lambda r: paper_tables.setting_order(r.setting)):
    groups.setdefault(r.setting, []).append(r)
  return groups


def _common_epochs(runs: list[SweepRun]) -> list[int]:
  return sorted(set.intersection(*[{row[records.EPOCH] for row in r.rows} for r in runs]))


def _colors(settings: list[str], baseline: str | None) -> dict[str, str]:
  """The baseline in black, the others in distinct colours."""
  others = iter(_COLORS)
  return {s: "black" if s == baseline else next(others, "tab:gray") for s in settings}


def _band(ax, x, table: np.ndarray, color: str, label: str, baseline: bool) -> None:
  """Mean over the first axis of `table` with a ± one sd band (none for one run)."""
  mean = table.mean(axis=0)
  sd = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros_like(mean)
  ax.plot(x, mean, color=color, linewidth=1.6 if baseline else 1.0, marker="o" if len(x) < 20
          else None, markersize=3, label=label)
  ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.15, linewidth=0)


def plot_activations(runs: list[SweepRun], path: str, title: str = "",
                     baseline: str | None = paper_tables.BASELINE) -> bool:
  """What the rectifiers do inside the network, on the test split (rectifiers/statistics.py).
  Top row, at the final evaluation, per rectified layer in network order: dead units,
  negative inputs, and mean |negative output| / mean positive output. Bottom row: the same,
  averaged over layers, over training. Each setting's mean over seeds with a ± sd band.
  When no unit of any run ever dies, the title says so in words and the dead-unit panels
  are left out. False (nothing written) when the runs recorded no activation statistics."""
  runs = [r for r in runs
          if all(records.TEST in row.get(records.ACTIVATIONS, {}) for row in r.rows)]
  if not runs:
    return False
  layers = list(runs[0].rows[-1][records.ACTIVATIONS][records.TEST])
  groups = _by_setting(runs)
  colors = _colors(list(groups), baseline)
  any_dead = any(layer[records.DEAD] > 0 for r in runs for row in r.rows
                 for layer in row[records.ACTIVATIONS][records.TEST].values())
  panels = [p for p in _LAYER_PANELS if any_dead or p[0] != records.DEAD]
  fig = figures.figure(figsize=(4.4 * len(panels), 7))
  axes = fig.subplots(2, len(panels), squeeze=False)
  for setting, group in groups.items():
    epochs = _common_epochs(group)
    label = f"{paper_tables.display_name(setting)} (n={len(group)})"
    for col, (key, _, scale) in enumerate(panels):
      final = np.asarray([[scale * r.final[records.ACTIVATIONS][records.TEST][layer][key]
                           for layer in layers] for r in group])
      _band(axes[0, col], np.arange(len(layers)), final, colors[setting], label,
            setting == baseline)
      over_time = np.asarray([[scale * np.mean([
          s[key] for s in next(row for row in r.rows if row[records.EPOCH] == e)[
              records.ACTIVATIONS][records.TEST].values()]) for e in epochs] for r in group])
      _band(axes[1, col], epochs, over_time, colors[setting], label, setting == baseline)
  for col, (_, ylabel, _) in enumerate(panels):
    top, bottom = axes[0, col], axes[1, col]
    top.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
    bottom.set_xlabel("epoch")
    top.set_title(f"{ylabel}, final, per layer", fontsize=9)
    bottom.set_title(f"{ylabel}, mean over layers", fontsize=9)
    for ax in (top, bottom):
      ax.grid(alpha=0.3)
      ax.set_ylabel(ylabel, fontsize=8)
  axes[0, 0].legend(fontsize=7)
  fig.suptitle((title or "Inside the network: the test split's rectified layers (mean ± sd "
                "over seeds)") + ("" if any_dead else "\nNo dead units in any layer, run or "
                                  "epoch (a dead unit: no positive input on any test image)."),
               fontsize=10)
  fig.tight_layout()
  figures.save(fig, path, dpi=110)
  return True


def plot_prelu_slopes(runs: list[SweepRun], path: str) -> bool:
  """PReLU's learned slopes: left, each layer's mean slope over training (mean over seeds),
  labelled at its end; right, the final slopes of every channel of every seed per layer.
  The dotted line is the initial slope, 0.25 (He et al. 2015). False (nothing written)
  without PReLU runs that recorded them."""
  runs = [r for r in runs
          if all(records.PRELU_SLOPES in row.get(records.ACTIVATIONS, {}) for row in r.rows)]
  if not runs:
    return False
  layers = list(runs[0].rows[-1][records.ACTIVATIONS][records.PRELU_SLOPES])
  epochs = _common_epochs(runs)
  fig = figures.figure(figsize=(12, 4.2))
  left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
  import matplotlib  # pylint: disable=g-import-not-at-top  (slow; figures.figure loaded it)
  cmap = matplotlib.colormaps["viridis"]
  for i, layer in enumerate(layers):
    color = cmap(i / max(1, len(layers) - 1))
    mean = np.asarray([[next(row[records.ACTIVATIONS][records.PRELU_SLOPES][layer][
        records.SLOPE_MEAN] for row in r.rows if row[records.EPOCH] == e) for e in epochs]
                       for r in runs]).mean(axis=0)
    left.plot(epochs, mean, color=color, linewidth=1.2)
    left.annotate(layer, (epochs[-1], mean[-1]), xytext=(4, 0), textcoords="offset points",
                  fontsize=7, color=color, va="center")
  left.axhline(0.25, color="gray", linestyle=":", linewidth=1)
  left.set_xlim(epochs[0], epochs[-1] + 0.18 * max(1, epochs[-1] - epochs[0]))
  left.set(xlabel="epoch", ylabel="mean slope of the layer",
           title=f"PReLU: each layer's mean slope over training (n={len(runs)} seeds)")
  left.grid(alpha=0.3)
  finals = [np.concatenate([np.asarray(r.summary[records.PRELU_SLOPE_VECTORS][layer])
                            for r in runs
                            if r.summary and records.PRELU_SLOPE_VECTORS in r.summary]
                           or [np.zeros(0)])
            for layer in layers]
  if all(len(f) for f in finals):
    right.boxplot(finals, showfliers=True)
    right.set_xticks(range(1, len(layers) + 1), layers, rotation=45, fontsize=8)
    right.axhline(0.25, color="gray", linestyle=":", linewidth=1)
    right.set(ylabel="slope", title="final slopes, every channel of every seed")
    right.grid(alpha=0.3)
  else:
    right.axis("off")
  fig.tight_layout()
  figures.save(fig, path, dpi=110)
  return True


def _curve(runs: list[SweepRun], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Epochs, mean and sd over runs of `key` (epochs every run has)."""
  common = _common_epochs(runs)
  table = np.asarray([[next(row[key] for row in r.rows if row[records.EPOCH] == e)
                       for e in common] for r in runs], np.float64)
  sd = table.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(common))
  return np.asarray(common), table.mean(axis=0), sd


# A training-mode column and the same numbers in test mode on training images.
_TEST_MODE = {records.TRAIN_ERROR: records.TRAIN_EVAL_ERROR,
              records.TRAIN_LOSS: records.TRAIN_EVAL_LOSS}


def plot_curves(runs: list[SweepRun], path: str, title: str = "", metric: str = "error",
                baseline: str | None = paper_tables.BASELINE) -> None:
  """The paper's Figures 2-4: one column per setting other than `baseline`, train (top)
  and test (bottom) curves of the baseline and that setting, mean over seeds with a ± one
  standard deviation band; each setting alone when there is no baseline."""
  groups = _by_setting(runs)
  if baseline not in groups:
    baseline = None
  others = [s for s in groups if s != baseline] or list(groups)
  train_key, test_key = ((records.TRAIN_ERROR, records.TEST_ERROR) if metric == "error"
                         else (records.TRAIN_LOSS, records.TEST_LOSS))
  ylabel = "error rate" if metric == "error" else "log-loss"
  fig = figures.figure(figsize=(max(3.6 * len(others), 7.0), 6.2))
  axes = fig.subplots(2, len(others), squeeze=False, sharex=True, sharey="row")
  for col, s in enumerate(others):
    pair = [baseline, s] if baseline is not None and s != baseline else [s]
    for row, (key, split) in enumerate(((train_key, "train"), (test_key, "test"))):
      ax = axes[row, col]
      for setting, color in zip(pair, ("tab:gray", "tab:red")):
        epochs, mean, sd = _curve(groups[setting], key)
        name = paper_tables.display_name(setting)
        ax.plot(epochs, mean, color=color, label=f"{name} (n={len(groups[setting])})")
        ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.2, linewidth=0)
        eval_key = _TEST_MODE.get(key)
        if split == "train" and all(eval_key in r.rows[-1] for r in groups[setting]):
          epochs, mean, _ = _curve(groups[setting], eval_key)
          ax.plot(epochs, mean, color=color, linestyle="--", linewidth=1,
                  label=f"{name}, test mode")
      ax.grid(alpha=0.3)
      if row == 0:
        ax.set_title(" vs ".join(paper_tables.display_name(p) for p in pair), fontsize=10)
        ax.legend(fontsize=7)
      if row == 1:
        ax.set_xlabel("epoch")
      if col == 0:
        ax.set_ylabel(f"{split} {ylabel}" + (" (training mode)" if split == "train" else ""))
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  figures.save(fig, path, dpi=110)


def plot_gap(runs: list[SweepRun], path: str, metric: str = "error") -> bool:
  """The generalisation gap over epochs (test minus test-mode training error, or
  log-loss), one line per setting, mean over seeds with a ± one standard deviation band;
  False (nothing written) when the runs did not measure test-mode training numbers."""
  gap_of = records.generalisation_gap if metric == "error" else records.log_loss_gap
  if not runs or not all(records.TRAIN_EVAL_LOSS in r.rows[-1] for r in runs):
    return False
  fig = figures.figure(figsize=(7.5, 4.2))
  ax = fig.subplots()
  for s, group in _by_setting(runs).items():
    common = _common_epochs(group)
    table = np.asarray([[gap_of(next(row for row in r.rows if row[records.EPOCH] == e))
                         for e in common] for r in group], np.float64)
    scale = 100.0 if metric == "error" else 1.0
    mean = scale * table.mean(axis=0)
    sd = scale * (table.std(axis=0, ddof=1) if len(group) > 1 else np.zeros(len(common)))
    line, = ax.plot(common, mean, label=f"{paper_tables.display_name(s)} (n={len(group)})")
    ax.fill_between(common, mean - sd, mean + sd, color=line.get_color(), alpha=0.15,
                    linewidth=0)
  ax.axhline(0.0, color="k", linewidth=0.8)
  ax.set(xlabel="epoch", ylabel=("test − train error, test mode (points)" if metric == "error"
                                 else "test − train log-loss, test mode"),
         title="Generalisation gap over training (mean ± sd over seeds)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  figures.save(fig, path, dpi=110)
  return True


def plot_rectifiers(path: str) -> None:
  """The paper's Figure 1 on [-4, 4]: ReLU; Leaky ReLU a=100 and a=5.5; PReLU at its
  initial slope 0.25 (learned per channel); RReLU's training range of slopes 1/u..1/l =
  1/8..1/3 (a ~ U(3, 8)) and its test-time line x / 5.5; and, in a fifth panel, the
  smooth activations after 2015 that the studies compare them with (ELU, GELU, SiLU)."""
  from rectifiers import functional as F
  import jax.numpy as jnp
  x = np.linspace(-4, 4, 401)
  xj = jnp.asarray(x, jnp.float32)
  fig = figures.figure(figsize=(16, 3.4))
  axes = fig.subplots(1, 5, sharey=True)
  panels = [
      ("ReLU", [(np.asarray(F.relu(xj)), "y = max(0, x)", "-")]),
      ("Leaky ReLU (a fixed)", [(np.asarray(F.leaky_relu(xj, 100.0)), "a = 100", "-"),
                                (np.asarray(F.leaky_relu(xj, 5.5)), "a = 5.5", "--")]),
      ("PReLU (a learned)", [(np.asarray(F.prelu(xj, jnp.float32(0.25))),
                              "slope 0.25 (initial)", "-")]),
  ]
  for ax, (title, curves) in zip(axes, panels):
    for y, label, style in curves:
      ax.plot(x, y, style, label=label)
    ax.set_title(title, fontsize=10)
  ax = axes[3]
  neg = x < 0
  ax.fill_between(x[neg], x[neg] / 3.0, x[neg] / 8.0, color="tab:red", alpha=0.25,
                  label="training: a ~ U(3, 8)")
  ax.plot(x, np.asarray(F.rrelu(xj, None, 3.0, 8.0, deterministic=True)), color="tab:red",
          label="test: y = x / 5.5")
  ax.set_title("RReLU (a random in training)", fontsize=10)
  ax = axes[4]
  import jax  # pylint: disable=g-import-not-at-top
  for smooth, label, style in ((jax.nn.elu(xj), "ELU", "-"),
                               (jax.nn.gelu(xj, approximate=False), "GELU", "--"),
                               (jax.nn.silu(xj), "SiLU", ":")):
    ax.plot(x, np.asarray(smooth), style, label=label)
  ax.set_title("After the paper (smooth)", fontsize=10)
  for ax in axes:
    ax.axhline(0, color="k", linewidth=0.5)
    ax.axvline(0, color="k", linewidth=0.5)
    ax.set_xlabel("x")
    ax.set_xlim(-4, 4)
    ax.set_ylim(-1.5, 4)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
  axes[0].set_ylabel("y")
  fig.tight_layout()
  figures.save(fig, path, dpi=110)
