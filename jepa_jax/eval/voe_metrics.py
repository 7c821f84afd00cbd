"""Violation-of-expectation metrics (pairwise accuracy, rank AUROC, per type) and plots."""

import numpy as np

from jepa_jax.eval.stats import average_ranks, wilson_interval


def pairwise_accuracy(s_possible_P, s_impossible_P) -> float:
  """Share of matched pairs whose possible video is less surprising than its twin (ties 1/2)."""
  a, b = np.asarray(s_possible_P, np.float64), np.asarray(s_impossible_P, np.float64)
  if a.shape != b.shape or a.ndim != 1 or not len(a):
    raise ValueError(f"need two equal non-empty 1-D score arrays, got {a.shape} and {b.shape}")
  return float(np.mean((a < b) + 0.5 * (a == b)))


def auroc(scores, labels) -> float:
  """Area under the ROC curve of `scores` for binary `labels` (1 = impossible), via the
  Mann-Whitney U statistic: P(score of a random positive > a random negative), ties 1/2."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
  n_pos, n_neg = labels.sum(), (~labels).sum()
  if scores.shape != labels.shape or n_pos == 0 or n_neg == 0:
    raise ValueError("auroc needs scores and labels of one shape with both classes present")
  ranks = average_ranks(scores)
  u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
  return float(u / (n_pos * n_neg))


def voe_report(s_possible_P, s_impossible_P, types_P) -> dict:
  """-> {type: {'pairwise_acc', 'pairwise_ci95', 'auroc', 'n'}, ..., 'mean': averages over
  types}. pairwise_ci95: the 95 % Wilson interval of the pairwise accuracy (ties counted 1/2);
  with 40 pairs per type it is about +-12 points at 80 %, so a per-type bar needs many pairs."""
  a, b = np.asarray(s_possible_P), np.asarray(s_impossible_P)
  types_P = np.asarray(types_P)
  out = {}
  for kind in dict.fromkeys(types_P.tolist()):   # first-seen order
    m = types_P == kind
    acc = pairwise_accuracy(a[m], b[m])
    out[kind] = {"pairwise_acc": acc,
                 "pairwise_ci95": list(wilson_interval(acc * m.sum(), int(m.sum()))),
                 "auroc": auroc(np.concatenate([a[m], b[m]]),
                                np.r_[np.zeros(m.sum()), np.ones(m.sum())]),
                 "n": int(m.sum())}
  kinds = list(out)
  out["mean"] = {k: float(np.mean([out[t][k] for t in kinds])) for k in ("pairwise_acc", "auroc")}
  out["mean"]["n"] = int(len(a))
  return out


def shared_context_accuracy(curve_possible_PK, curve_impossible_PK, context_end_K, end_K,
                            t_violation_P, types_P) -> dict:
  """Diagnostic, not a benchmark score (it uses the violation frame): over the windows whose
  every context frame precedes the violation (last context frame `context_end_K`, for the
  longest context) and whose predicted frames reach it (last frame `end_K`), the twins'
  predictions are identical, so a model is right exactly when the possible future is closer to
  its prediction than the impossible one. Per pair: the share of such windows it gets right
  (ties 1/2); per type: the mean over pairs that have one. It separates the predictor's quality
  from the aggregation over windows.
  -> {type: {'accuracy', 'n'}, ..., 'mean': {'accuracy', 'n'}}"""
  a, b = np.asarray(curve_possible_PK, np.float64), np.asarray(curve_impossible_PK, np.float64)
  context_end, end = np.asarray(context_end_K)[None, :], np.asarray(end_K)[None, :]
  t_v = np.asarray(t_violation_P)[:, None]
  usable = (context_end < t_v) & (t_v <= end)
  right = (a < b) + 0.5 * (a == b)
  has = usable.any(1)
  per_pair = np.where(has, (right * usable).sum(1) / np.maximum(usable.sum(1), 1), np.nan)
  types_P = np.asarray(types_P)
  out = {}
  for kind in dict.fromkeys(types_P.tolist()):
    m = (types_P == kind) & has
    out[kind] = {"accuracy": float(per_pair[m].mean()) if m.any() else float("nan"),
                 "n": int(m.sum())}
  out["mean"] = {"accuracy": float(np.nanmean([v["accuracy"] for v in out.values()])),
                 "n": int(has.sum())}
  return out


def text_table(rows: dict, columns: list, cell_width: int = 16, header_rows=()) -> str:
  """rows: model name -> one formatted cell per column; right-aligned columns under a 'model'
  column as wide as the longest name (at least 14); header_rows: extra lines of header cells."""
  w = max(14, *(len(n) + 1 for n in rows))
  head = [["model", *columns], *(["", *h] for h in header_rows)]
  return "\n".join(f"{r[0]:<{w}}" + "".join(f"{c:>{cell_width}}" for c in r[1:])
                   for r in head + [[n, *cells] for n, cells in rows.items()])


def table(reports: dict) -> str:
  """reports: model name -> voe_report(...). Pairwise accuracy / AUROC per type, in %."""
  kinds = list(next(iter(reports.values())))
  rows = {n: [f"{100 * r[k]['pairwise_acc']:.1f} /{100 * r[k]['auroc']:>5.1f}" for k in kinds]
          for n, r in reports.items()}
  return text_table(rows, kinds, header_rows=[["pair / AUROC"] * len(kinds)])


def ci_table(reports: dict) -> str:
  """reports: model name -> voe_report(...). The 95 % interval of each pairwise accuracy, in %."""
  kinds = [k for k in next(iter(reports.values())) if k != "mean"]
  rows = {n: ["[{:.1f}, {:.1f}]".format(*(100 * v for v in r[k]["pairwise_ci95"])) for k in kinds]
          for n, r in reports.items()}
  return text_table(rows, kinds)


def plot_surprise_curves(path: str, curves: list[dict], title: str = ""):
  """curves: dicts with 'x' (window end frames), 'possible', 'impossible' (per-window surprise),
  't_violation', 'label'. One panel each; the violation frame is a dashed vertical line."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cols = min(len(curves), 5)
  rows = -(-len(curves) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
  for ax, c in zip(axes.flat, curves):
    ax.plot(c["x"], c["possible"], "o-", color="tab:blue", label="possible", ms=3)
    ax.plot(c["x"], c["impossible"], "o-", color="tab:red", label="impossible", ms=3)
    ax.axvline(c["t_violation"], color="k", ls="--", lw=1, label="violation")
    ax.set_title(c["label"], fontsize=8)
    ax.set_xlabel("window end frame", fontsize=7)
    ax.tick_params(labelsize=7)
  for ax in list(axes.flat)[len(curves):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=6)
  axes.flat[0].set_ylabel("surprise", fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_accuracy_bars(path: str, panels: dict, bar: float | None = None, chance: float = 0.5):
  """panels: panel title -> {model name -> {type: accuracy in [0, 1]}} (e.g. pairwise accuracy
  per aggregate, and the prediction check). Grouped bars per type, one colour per model; dashed
  lines at chance and, if given, at the bar to reach."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
  for ax, (title, by_model) in zip(axes.flat, panels.items()):
    names = list(by_model)
    kinds = list(by_model[names[0]])
    width = 0.8 / len(names)
    for j, name in enumerate(names):
      x = np.arange(len(kinds)) + (j - (len(names) - 1) / 2) * width
      ax.bar(x, [100 * by_model[name][k] for k in kinds], width, label=name)
    ax.axhline(100 * chance, color="k", ls="--", lw=1)
    if bar is not None:
      ax.axhline(100 * bar, color="tab:purple", ls=":", lw=1.5, label=f"bar {100 * bar:.0f} %")
    ax.set_xticks(np.arange(len(kinds)), kinds, fontsize=7, rotation=20)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
  axes.flat[0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
