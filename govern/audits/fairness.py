"""Fairness per subgroup: Fairlearn's ``MetricFrame`` for the numbers, numpy for their uncertainty.

What is measured
    For every sensitive column, and (``intersections=True``) every combination of two (up to
    ``max_intersection_size``; ``None`` = all) of them (attribute ``"a&b"``, group ``"x&y"``), Fairlearn's :class:`~fairlearn.metrics.MetricFrame`
    computes per group: ``accuracy`` (exact match on the original labels), and for each positive class
    ``selection_rate``, ``true_positive_rate`` and ``false_positive_rate``. Causal LMs get per-group
    ``loss`` and ``perplexity`` instead. Disparities are taken over the groups with enough data:
    ``demographic_parity_difference``/``_ratio`` (selection rate max − min, min / max),
    ``equalized_odds_difference``/``_ratio`` (worst of the TPR and FPR difference / ratio, Fairlearn's
    ``agg="worst_case"``), ``true_positive_rate_difference``, ``false_positive_rate_difference``,
    ``accuracy_difference`` and ``worst_group_accuracy`` (``perplexity_difference`` and
    ``worst_group_perplexity`` for causal LMs).

What "positive" means
    * ``positive_label`` given: that class is positive, every other class negative (``mode="binary"``).
    * labels in {0, 1}, {-1, 1} or {False, True} (Fairlearn's own rule): 1 / True is positive.
    * otherwise (multi-class intents, or two string classes) with ``multiclass="one_vs_rest"``: each
      class in turn is positive; ``per_class_disparities`` holds every class and ``disparities`` holds,
      per attribute and metric, the worst class (max difference, min ratio) with ``positive_label``
      naming it, so one policy threshold covers every class. ``multiclass="error"`` refuses instead.

Deliberate differences from calling Fairlearn's helpers blindly
    * A rate whose denominator is empty (TPR in a group with no positives, FPR with no negatives) is
      undefined: reported as ``None`` and left out of disparities. sklearn's confusion matrix would
      silently report 0, which invents a gap of up to 1 for a small group.
    * Groups smaller than ``min_group_size`` keep their metrics but are flagged ``insufficient_data``,
      listed in ``insufficient_groups`` and left out of disparities: never silently passed or failed.
    * Missing sensitive values (None / NaN / empty CSV cell) form their own group ``"(missing)"``.

Uncertainty
    Bootstrap percentile intervals (seeded, count recorded) for every group metric and disparity.

    Every interval is for the same quantity as its estimate. A disparity is a max over group pairs
    (max − min, min / max) and, one-vs-rest, over classes; re-taking that max in every resample
    measures a different, upward-biased quantity: with near-equal groups the resampled max − min is
    mostly noise, so the interval can sit wholly above the estimate (and ``gate_on: ci`` blocks models
    that pass). So the class, the group pair (min and max group) and, for equalized odds, the
    component (TPR or FPR) are pinned at the point estimate's argmax / argmin, and the bootstrap
    resamples that one statistic, e.g. ``SR[max group] − SR[min group]`` for the worst class. It can
    go negative (or a ratio above 1) in a resample: that is the gap reversing, kept rather than folded.
    The interval is then for the pinned pair's gap, which is the population's disparity whenever the
    worst class and pair are clear: a seeded simulation in the tests checks 93–97 % coverage of
    nominal 95 % over 1,000 data sets (ratio and difference, binary and one-vs-rest). When groups are
    nearly tied, the pinned pair is the one that looks worst by chance and its interval leans high,
    like the estimate (Fairlearn's max of noisy rates) itself: four groups with equal rates get 79 %
    coverage of the true gap 0, against 0 % when the max is re-taken in every resample.
    Resampling ``n`` rows with replacement only changes how many rows fall in each (finest group,
    label, prediction) cell, and every classification metric here is a function of those counts; the
    cell counts of a row resample are exactly ``Multinomial(n, observed cell frequencies)``. So each
    resample is one multinomial draw over the observed cells — the same distribution as row
    resampling, at a cost independent of ``n`` (100k rows, 1,000 resamples: well under a second).
    Causal-LM losses are continuous, so those resample rows (numpy ``bincount`` per resample). The
    point estimates are MetricFrame's; the tests check the numpy statistics reproduce them exactly.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, selection_rate

from govern.errors import DataError
from govern.evidence import Disparity, FairnessEvidence, GroupMetrics, MetricValue

if TYPE_CHECKING:
    from govern.policy.schema import Policy

MISSING_GROUP = "(missing)"
INTERSECTION_SEPARATOR = "&"
MulticlassMode = Literal["one_vs_rest", "error"]

#: Bootstrap resamples drawn at a time (bounds memory: chunk × cells × 8 bytes).
_BOOTSTRAP_CHUNK = 250

_DIFFERENCE_METRICS = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "true_positive_rate_difference",
    "false_positive_rate_difference",
)
_RATIO_METRICS = ("demographic_parity_ratio", "equalized_odds_ratio")


# ---------------------------------------------------------------------------------------- inputs
@dataclass
class _Prepared:
    """Validated, encoded inputs: integer class codes and string group labels per sensitive column."""

    n: int
    sensitive: dict[str, np.ndarray]  # column → group label per row (object array of str)
    classes: list[str] = field(default_factory=list)
    y_true: np.ndarray | None = None  # class codes
    y_pred: np.ndarray | None = None
    positives: list[int] = field(default_factory=list)  # class codes treated as positive
    mode: Literal["binary", "one_vs_rest", "perplexity"] = "binary"
    loss: np.ndarray | None = None
    weight: np.ndarray | None = None  # causal LM: tokens per example


def label_text(value: Any) -> str | None:
    """A label or group value as the string govern reports (``1.0`` from a NaN-widened int column is
    ``"1"``); ``None`` for a missing value."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
        return str(float(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is pd.NA or value is pd.NaT:
        return None
    text = str(value)
    return text if text != "" else None


def _encode(values: pd.Series | Sequence[Any]) -> tuple[np.ndarray, list[str | None]]:
    """Factorise a column once, then render only its distinct values: ``(codes, texts)`` where
    ``texts[code]`` is the reported string (``None`` = missing; code -1 is missing too)."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values,
                                  use_na_sentinel=True)
    return codes.astype(np.int64), [label_text(u) for u in list(uniques)]


def _group_labels(values: pd.Series | Sequence[Any]) -> np.ndarray:
    codes, texts = _encode(values)
    names = np.array([MISSING_GROUP if t is None else t for t in texts] + [MISSING_GROUP], dtype=object)
    labels: np.ndarray = names[codes]  # code -1 picks the trailing "(missing)"
    return labels


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    for col in columns:
        if col not in frame.columns:
            shown = ", ".join(map(str, frame.columns[:20]))
            raise DataError(source, f"column not found (the file has: {shown})", field=col)


def _label_texts(values: pd.Series) -> tuple[np.ndarray, list[str | None]]:
    return _encode(values)


def _label_codes(encoded: tuple[np.ndarray, list[str | None]], column: str, classes: list[str],
                 source: str) -> np.ndarray:
    codes, texts = encoded
    index = {c: i for i, c in enumerate(classes)}
    lookup = np.array([index.get(t, -2) if t is not None else -1 for t in texts] + [-1], dtype=np.int64)
    mapped: np.ndarray = lookup[codes]
    bad = np.flatnonzero(mapped < 0)
    if bad.size:
        row = int(bad[0])
        if mapped[row] == -1:
            raise DataError(source, "missing value (labels and predictions must be present)", record=row, field=column)
        raise DataError(source, "value is not one of the model's classes", record=row, field=column)
    return mapped


def _binary_positive(classes: Sequence[str]) -> str | None:
    """Fairlearn's rule: labels within {0, 1} or {-1, 1} have positive label 1 (and True for booleans)."""
    present = set(classes)
    if present <= {"0", "1"} or present <= {"-1", "1"}:
        return "1"
    if present <= {"False", "True"}:
        return "True"
    return None


def prepare_classification(
    frame: pd.DataFrame,
    *,
    label: str,
    pred: str,
    sensitive: Sequence[str],
    classes: Sequence[str] | None = None,
    positive_label: str | None = None,
    multiclass: MulticlassMode = "one_vs_rest",
    source: str = "<predictions>",
) -> _Prepared:
    """Check columns and encode labels; decide which classes are "positive" (see module docstring)."""
    _require_columns(frame, [label, pred, *sensitive], source)
    if not sensitive:
        raise DataError(source, "no sensitive columns given: name at least one to audit fairness")
    if len(frame) == 0:
        raise DataError(source, "no predictions to audit")
    label_enc, pred_enc = _label_texts(frame[label]), _label_texts(frame[pred])
    if classes is None:
        classes = sorted({t for t in [*label_enc[1], *pred_enc[1]] if t is not None})
    class_list = [str(c) for c in classes]
    if positive_label is None:
        implicit = _binary_positive(class_list)
        if implicit is not None and implicit not in class_list:
            class_list.append(implicit)
        positive_label = implicit
        if positive_label is None and multiclass == "error":
            raise DataError(
                source,
                f"labels take {len(class_list)} values, not 0/1: selection rate, TPR and FPR are binary "
                "metrics and need a positive label (--positive-label, or audits.fairness.positive_label; "
                "or multiclass: one_vs_rest)",
                field=label,
            )
    elif positive_label not in class_list:
        raise DataError(source, "the positive label occurs in neither the label nor the prediction column",
                        field=label)
    y_true = _label_codes(label_enc, label, class_list, source)
    y_pred = _label_codes(pred_enc, pred, class_list, source)
    if positive_label is not None:
        positives, mode = [class_list.index(positive_label)], "binary"
    else:
        positives, mode = list(range(len(class_list))), "one_vs_rest"
    return _Prepared(
        n=len(frame),
        sensitive={c: _group_labels(frame[c]) for c in sensitive},
        classes=class_list,
        y_true=y_true,
        y_pred=y_pred,
        positives=positives,
        mode=mode,  # type: ignore[arg-type]  # one of the modes chosen above
    )


def prepare_perplexity(
    frame: pd.DataFrame,
    *,
    loss: str,
    sensitive: Sequence[str],
    tokens: str | None = None,
    source: str = "<predictions>",
) -> _Prepared:
    """Causal LM: per-example mean token loss (and optionally its token count, used as the weight)."""
    _require_columns(frame, [loss, *sensitive, *([tokens] if tokens else [])], source)
    if not sensitive:
        raise DataError(source, "no sensitive columns given: name at least one to audit fairness")
    if len(frame) == 0:
        raise DataError(source, "no predictions to audit")
    losses = pd.to_numeric(frame[loss], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise DataError(source, "loss must be a finite number", record=int(bad[0]), field=loss)
    weight = None
    if tokens:
        weight = pd.to_numeric(frame[tokens], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~(weight > 0))
        if bad.size:
            raise DataError(source, "token count must be a positive number", record=int(bad[0]), field=tokens)
    return _Prepared(n=len(frame), sensitive={c: _group_labels(frame[c]) for c in sensitive},
                     mode="perplexity", loss=losses, weight=weight)


def prepare_arrays(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    sensitive_features: dict[str, Sequence[Any] | np.ndarray],
    *,
    classes: Sequence[str] | None = None,
    positive_label: str | None = None,
    multiclass: MulticlassMode = "one_vs_rest",
    source: str = "<predictions>",
) -> _Prepared:
    """Same as :func:`prepare_classification` for in-memory arrays; lengths must agree."""
    n = len(y_true)
    if len(y_pred) != n:
        raise DataError(source, f"predictions have {len(y_pred)} rows but labels have {n}", field="pred")
    for col, values in sensitive_features.items():
        if len(values) != n:
            raise DataError(source, f"sensitive column has {len(values)} rows but labels have {n}", field=col)
    frame = pd.DataFrame({"__label": list(y_true), "__pred": list(y_pred)})
    for col, values in sensitive_features.items():
        frame[col] = pd.Series(list(values), dtype=object)
    return prepare_classification(frame, label="__label", pred="__pred", sensitive=list(sensitive_features),
                                  classes=classes, positive_label=positive_label, multiclass=multiclass,
                                  source=source)


# --------------------------------------------------------------------------- fairlearn metric set
def _rate(numerator_pred: int, denominator_true: int) -> Callable[..., float]:
    """P(ŷ = numerator_pred | y = denominator_true) on binarised labels, weighted.

    The same arithmetic as Fairlearn's ``true_positive_rate``/``false_positive_rate`` (sklearn's
    row-normalised confusion matrix: weighted count / weighted row total; the tests check equality)
    without sklearn's per-call input validation, which dominates the cost when MetricFrame calls it
    for every group, metric and class. An empty denominator gives NaN instead of sklearn's silent 0.
    """

    def metric(y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        yt, yp = np.asarray(y_true), np.asarray(y_pred)
        w = np.ones(yt.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        in_row = yt == denominator_true
        total = w[in_row].sum()
        if not np.any(in_row):
            return float("nan")
        return float(w[in_row & (yp == numerator_pred)].sum() / total)

    return metric


def _one_vs_rest(metric: Callable[..., float], code: int) -> Callable[..., float]:
    def binarised(y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        return metric((np.asarray(y_true) == code).astype(np.int64), (np.asarray(y_pred) == code).astype(np.int64),
                      sample_weight=sample_weight)

    return binarised


def _selection_rate_for(code: int) -> Callable[..., float]:
    def metric(y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        return float(selection_rate(y_true, y_pred, pos_label=code, sample_weight=sample_weight))

    return metric


def _accuracy(y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
    """sklearn's ``accuracy_score`` arithmetic (``np.average`` of matches) minus its validation."""
    return float(np.average(np.asarray(y_true) == np.asarray(y_pred), weights=sample_weight))


def metric_name(base: str, prep: _Prepared, code: int) -> str:
    """Per-group metric key: ``selection_rate`` (binary) or ``selection_rate[billing]`` (one-vs-rest)."""
    return base if prep.mode == "binary" else f"{base}[{prep.classes[code]}]"


def classification_metric_functions(prep: _Prepared) -> dict[str, Callable[..., float]]:
    """The MetricFrame metric set on class codes: accuracy + (selection rate, TPR, FPR) per positive
    class. Every function takes ``sample_weight`` (see :func:`metric_frame`)."""
    fns: dict[str, Callable[..., float]] = {"accuracy": _accuracy}
    for code in prep.positives:
        fns[metric_name("selection_rate", prep, code)] = _selection_rate_for(code)
        fns[metric_name("true_positive_rate", prep, code)] = _one_vs_rest(_rate(1, 1), code)
        fns[metric_name("false_positive_rate", prep, code)] = _one_vs_rest(_rate(1, 0), code)
    return fns


def _weighted_mean_loss(y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
    return float(np.average(np.asarray(y_true, dtype=float), weights=sample_weight))


def _perplexity(y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
    return float(np.exp(_weighted_mean_loss(y_true, y_pred, sample_weight)))


# ------------------------------------------------------------------------------------ attributes
@dataclass
class _Attribute:
    name: str
    codes: np.ndarray  # group index per row
    groups: list[str]  # group label per index


def attributes_for(prep: _Prepared, intersections: bool, max_size: int | None = None) -> list[_Attribute]:
    """Each sensitive column, then (``intersections``) every combination of 2 to ``max_size`` columns
    (``None``: up to all of them)."""
    columns = list(prep.sensitive)
    combos: list[tuple[str, ...]] = [(c,) for c in columns]
    if intersections:
        for size in range(2, min(len(columns), max_size or len(columns)) + 1):
            combos.extend(itertools.combinations(columns, size))
    singles: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for col in columns:
        names, codes = np.unique(prep.sensitive[col].astype(str), return_inverse=True)
        singles[col] = (names, codes.astype(np.int64))
    out = []
    for combo in combos:
        if len(combo) == 1:
            names, codes = singles[combo[0]]
            out.append(_Attribute(combo[0], codes, names.tolist()))
            continue
        # Combine codes arithmetically, then name only the combinations that occur.
        key = np.zeros(prep.n, dtype=np.int64)
        for col in combo:
            key = key * len(singles[col][0]) + singles[col][1]
        present, codes = np.unique(key, return_inverse=True)
        parts = np.unravel_index(present, tuple(len(singles[c][0]) for c in combo))
        groups = [INTERSECTION_SEPARATOR.join(str(singles[c][0][i[j]]) for c, i in zip(combo, parts, strict=True))
                  for j in range(present.size)]
        out.append(_Attribute(INTERSECTION_SEPARATOR.join(combo), codes.astype(np.int64), groups))
    return out


def metric_frame(prep: _Prepared, attribute: _Attribute) -> MetricFrame:
    """Fairlearn's MetricFrame for one attribute (the source of every point estimate).

    Classification metrics depend only on how many rows share each (group, label, prediction), so
    MetricFrame gets one row per observed cell weighted by its count. Integer counts make the
    weighted sums exact, so the numbers are bit-identical to MetricFrame over the raw rows (a test
    checks it) while Fairlearn's per-row Python overhead (``np.stack`` over every row of every
    group for every metric: ~40 s at 100k rows) disappears.
    """
    if prep.mode == "perplexity":
        assert prep.loss is not None
        sensitive = pd.Series(np.asarray(attribute.groups, dtype=object)[attribute.codes], name=attribute.name)
        params = {"sample_weight": prep.weight} if prep.weight is not None else {}
        return MetricFrame(
            metrics={"loss": _weighted_mean_loss, "perplexity": _perplexity},
            y_true=prep.loss, y_pred=prep.loss, sensitive_features=sensitive,
            sample_params={"loss": params, "perplexity": params} if params else None,
        )
    counts = observed_counts(prep, attribute)
    group_idx, true_idx, pred_idx = np.nonzero(counts)
    weight = counts[group_idx, true_idx, pred_idx].astype(np.float64)
    sensitive = pd.Series(np.asarray(attribute.groups, dtype=object)[group_idx], name=attribute.name)
    metrics = classification_metric_functions(prep)
    return MetricFrame(metrics=metrics, y_true=true_idx, y_pred=pred_idx, sensitive_features=sensitive,
                       sample_params={name: {"sample_weight": weight} for name in metrics})


# ------------------------------------------------------------------------------ numpy statistics
def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def classification_stats(conf: np.ndarray, prep: _Prepared) -> dict[str, np.ndarray]:
    """Per-group metrics from confusion counts ``conf[..., group, true, pred]``: shape ``[..., group]``.

    The same formulas Fairlearn/sklearn apply (integer counts divided once), so on the observed counts
    they reproduce MetricFrame's numbers exactly.
    """
    conf = conf.astype(np.float64)
    n = conf.sum(axis=(-2, -1))
    correct = np.trace(conf, axis1=-2, axis2=-1)
    stats = {"accuracy": _div(correct, n)}
    for code in prep.positives:
        tp = conf[..., code, code]
        positives = conf[..., code, :].sum(axis=-1)
        predicted = conf[..., :, code].sum(axis=-1)
        fp = predicted - tp
        stats[metric_name("selection_rate", prep, code)] = _div(predicted, n)
        stats[metric_name("true_positive_rate", prep, code)] = _div(tp, positives)
        stats[metric_name("false_positive_rate", prep, code)] = _div(fp, n - positives)
    return stats


def perplexity_stats(weighted_loss: np.ndarray, weight: np.ndarray) -> dict[str, np.ndarray]:
    mean = _div(weighted_loss, weight)
    with np.errstate(over="ignore", invalid="ignore"):
        return {"loss": mean, "perplexity": np.exp(mean)}


def _nan_reduce(reduce: Callable[..., np.ndarray], values: np.ndarray) -> np.ndarray:
    """``np.nanmax``/``np.nanmin`` over the last axis; NaN where there is nothing (or only NaN)."""
    if values.shape[-1] == 0:
        return np.full(values.shape[:-1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(values, axis=-1)


def _spread(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(max − min, min / max, argmin, argmax) over the last axis, NaN-skipping like pandas."""
    hi = _nan_reduce(np.nanmax, values)
    lo = _nan_reduce(np.nanmin, values)
    if values.shape[-1] == 0:
        empty = np.zeros(values.shape[:-1], dtype=np.int64)
        return hi - lo, _div(lo, hi), empty, empty
    filled_lo = np.where(np.isnan(values), np.inf, values)
    filled_hi = np.where(np.isnan(values), -np.inf, values)
    return hi - lo, _div(lo, hi), np.argmin(filled_lo, axis=-1), np.argmax(filled_hi, axis=-1)


def _nan_worst(a: np.ndarray, b: np.ndarray, worst: Callable[..., np.ndarray]) -> np.ndarray:
    """Elementwise worst of two arrays where a NaN on one side defers to the other."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return worst(np.stack([a, b]), axis=0)


@dataclass
class _DisparityValues:
    """Disparity arrays (shape ``[...]``) per (metric, positive class code or None), and with a
    bootstrap, each one's resampled values at the pinned groups (shape ``[B, ...]``)."""

    values: dict[tuple[str, int | None], np.ndarray]
    lo_group: dict[tuple[str, int | None], np.ndarray]
    hi_group: dict[tuple[str, int | None], np.ndarray]
    samples: dict[tuple[str, int | None], np.ndarray] = field(default_factory=dict)


def _pick(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[..., index]`` per element: ``values`` is ``[B, ..., G]`` (or ``[..., G]``), ``index``
    is ``[...]`` (one group per data set); the result drops the group axis."""
    index = np.asarray(index, dtype=np.int64)
    if values.shape[-1] == 0:
        return np.full(values.shape[:-1], np.nan)
    extra = values.ndim - 1 - index.ndim  # leading resample axis, if any
    return np.take_along_axis(values, index.reshape((1,) * extra + index.shape + (1,)), axis=-1)[..., 0]


def disparities_from_stats(stats: dict[str, np.ndarray], prep: _Prepared, keep: np.ndarray,
                           resampled: dict[str, np.ndarray] | None = None) -> _DisparityValues:
    """Disparities over the groups in ``keep`` (the ones with enough data), per positive class.

    ``stats`` are the observed per-group metrics (``[..., group]``; ``...`` may batch data sets).
    With ``resampled`` (``[B, ..., group]``), each disparity's bootstrap values are taken at the
    groups (and, for equalized odds, the TPR/FPR component) that the observed value picked, so the
    interval is for the same quantity as the estimate (see the module docstring).
    """
    values: dict[tuple[str, int | None], np.ndarray] = {}
    lo_g: dict[tuple[str, int | None], np.ndarray] = {}
    hi_g: dict[tuple[str, int | None], np.ndarray] = {}
    samples: dict[tuple[str, int | None], np.ndarray] = {}
    kept = {k: v[..., keep] for k, v in stats.items()}
    boot = {k: v[..., keep] for k, v in resampled.items()} if resampled is not None else None

    def pinned(metric: str, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Resampled (hi − lo, lo / hi) of one per-group metric at the observed min/max groups."""
        if boot is None:
            return None
        b_lo, b_hi = _pick(boot[metric], lo), _pick(boot[metric], hi)
        return b_hi - b_lo, _div(b_lo, b_hi)

    def put(key: tuple[str, int | None], value: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None,
            sample: np.ndarray | None) -> None:
        values[key] = value
        if lo is not None:
            lo_g[key] = lo
        if hi is not None:
            hi_g[key] = hi
        if sample is not None:
            samples[key] = sample

    if prep.mode == "perplexity":
        diff, _, lo, hi = _spread(kept["perplexity"])
        pair = pinned("perplexity", lo, hi)
        put(("perplexity_difference", None), diff, lo, hi, pair[0] if pair else None)
        put(("worst_group_perplexity", None), _nan_reduce(np.nanmax, kept["perplexity"]), None, hi,
            _pick(boot["perplexity"], hi) if boot is not None else None)
        return _DisparityValues(values, lo_g, hi_g, samples)
    diff, _, lo, hi = _spread(kept["accuracy"])
    pair = pinned("accuracy", lo, hi)
    put(("accuracy_difference", None), diff, lo, hi, pair[0] if pair else None)
    put(("worst_group_accuracy", None), _nan_reduce(np.nanmin, kept["accuracy"]), lo, None,
        _pick(boot["accuracy"], lo) if boot is not None else None)
    for code in prep.positives:
        sr, tpr, fpr = (metric_name(m, prep, code) for m in ("selection_rate", "true_positive_rate",
                                                             "false_positive_rate"))
        sr_d, sr_r, sr_lo, sr_hi = _spread(kept[sr])
        tpr_d, tpr_r, tpr_lo, tpr_hi = _spread(kept[tpr])
        fpr_d, fpr_r, fpr_lo, fpr_hi = _spread(kept[fpr])
        sr_b, tpr_b, fpr_b = pinned(sr, sr_lo, sr_hi), pinned(tpr, tpr_lo, tpr_hi), pinned(fpr, fpr_lo, fpr_hi)
        put(("demographic_parity_difference", code), sr_d, sr_lo, sr_hi, sr_b[0] if sr_b else None)
        put(("demographic_parity_ratio", code), sr_r, sr_lo, sr_hi, sr_b[1] if sr_b else None)
        put(("true_positive_rate_difference", code), tpr_d, tpr_lo, tpr_hi, tpr_b[0] if tpr_b else None)
        put(("false_positive_rate_difference", code), fpr_d, fpr_lo, fpr_hi, fpr_b[0] if fpr_b else None)
        # Fairlearn's agg="worst_case": the larger of the TPR/FPR differences, the smaller ratio;
        # the bootstrap keeps the component the estimate took.
        tpr_worse = np.nan_to_num(tpr_d, nan=-np.inf) >= np.nan_to_num(fpr_d, nan=-np.inf)
        put(("equalized_odds_difference", code), _nan_worst(tpr_d, fpr_d, np.nanmax),
            np.where(tpr_worse, tpr_lo, fpr_lo), np.where(tpr_worse, tpr_hi, fpr_hi),
            np.where(tpr_worse, tpr_b[0], fpr_b[0]) if tpr_b and fpr_b else None)
        tpr_ratio_worse = np.nan_to_num(tpr_r, nan=np.inf) <= np.nan_to_num(fpr_r, nan=np.inf)
        put(("equalized_odds_ratio", code), _nan_worst(tpr_r, fpr_r, np.nanmin),
            np.where(tpr_ratio_worse, tpr_lo, fpr_lo), np.where(tpr_ratio_worse, tpr_hi, fpr_hi),
            np.where(tpr_ratio_worse, tpr_b[1], fpr_b[1]) if tpr_b and fpr_b else None)
    return _DisparityValues(values, lo_g, hi_g, samples)


def worst_over_classes(values: dict[tuple[str, int | None], np.ndarray], prep: _Prepared,
                       metric: str) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest aggregate: max difference / min ratio over the positive classes, and which class."""
    stacked = np.stack([values[(metric, c)] for c in prep.positives], axis=-1)
    is_ratio = metric in _RATIO_METRICS
    filled = np.where(np.isnan(stacked), np.inf if is_ratio else -np.inf, stacked)
    which = np.argmin(filled, axis=-1) if is_ratio else np.argmax(filled, axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        worst = np.nanmin(stacked, axis=-1) if is_ratio else np.nanmax(stacked, axis=-1)
    return worst, np.asarray(prep.positives)[which]


def worst_class_disparity(observed: _DisparityValues, prep: _Prepared,
                          metric: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One-vs-rest: (worst value over classes, its bootstrap values at the pinned class, class code).

    The class is pinned at the point estimate's worst class and its resamples are that class's own
    (already group-pinned) ones, not a fresh max over classes per resample (biased upward)."""
    worst, which = worst_over_classes(observed.values, prep, metric)
    if not observed.samples:
        return worst, None, which
    stacked = np.stack([observed.samples[(metric, c)] for c in prep.positives], axis=-1)
    position = np.searchsorted(np.asarray(prep.positives), which)  # positives are sorted codes
    return worst, _pick(stacked, position), which


# ------------------------------------------------------------------------------------- bootstrap
class _Bootstrap:
    """Resampled per-attribute statistics: one multinomial draw over the observed finest cells per
    resample (classification), or row indices + bincount (causal LM)."""

    def __init__(self, prep: _Prepared, attributes: list[_Attribute], resamples: int, seed: int) -> None:
        self.prep = prep
        self.attributes = attributes
        self.resamples = resamples
        self.rng = np.random.default_rng(seed)

    def classification_counts(self) -> list[np.ndarray]:
        """Per attribute: resampled confusion counts, shape ``[B, groups, K, K]``."""
        prep = self.prep
        assert prep.y_true is not None and prep.y_pred is not None
        k = len(prep.classes)
        # Finest cell: (group of every attribute, label, prediction). The intersection of all
        # single columns determines every attribute's group, so we key on the single columns.
        singles = [a for a in self.attributes if INTERSECTION_SEPARATOR not in a.name]
        key = np.zeros(prep.n, dtype=np.int64)
        for a in singles:
            key = key * len(a.groups) + a.codes
        key = (key * k + prep.y_true) * k + prep.y_pred
        cells, first_row, counts = np.unique(key, return_index=True, return_counts=True)
        probabilities = counts / counts.sum()
        draws = np.empty((self.resamples, cells.size), dtype=np.int64)
        for start in range(0, self.resamples, _BOOTSTRAP_CHUNK):
            stop = min(start + _BOOTSTRAP_CHUNK, self.resamples)
            draws[start:stop] = self.rng.multinomial(prep.n, probabilities, size=stop - start)
        out = []
        for a in self.attributes:
            target = (a.codes[first_row] * k + prep.y_true[first_row]) * k + prep.y_pred[first_row]
            size = len(a.groups) * k * k
            dense = np.zeros((self.resamples, size), dtype=np.int64)
            order = np.argsort(target, kind="stable")
            uniq, starts = np.unique(target[order], return_index=True)
            dense[:, uniq] = np.add.reduceat(draws[:, order], starts, axis=1)
            out.append(dense.reshape(self.resamples, len(a.groups), k, k))
        return out

    def perplexity_sums(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per attribute: resampled (Σ weight·loss, Σ weight) per group, shape ``[B, groups]``."""
        prep = self.prep
        assert prep.loss is not None
        weight = prep.weight if prep.weight is not None else np.ones(prep.n)
        weighted = weight * prep.loss
        sums = [(np.empty((self.resamples, len(a.groups))), np.empty((self.resamples, len(a.groups))))
                for a in self.attributes]
        for b in range(self.resamples):
            idx = self.rng.integers(0, prep.n, size=prep.n)
            for (wl, w), a in zip(sums, self.attributes, strict=True):
                codes = a.codes[idx]
                wl[b] = np.bincount(codes, weights=weighted[idx], minlength=len(a.groups))
                w[b] = np.bincount(codes, weights=weight[idx], minlength=len(a.groups))
        return sums


def observed_counts(prep: _Prepared, attribute: _Attribute) -> np.ndarray:
    """Confusion counts ``[groups, K, K]`` of the observed data for one attribute."""
    assert prep.y_true is not None and prep.y_pred is not None
    k = len(prep.classes)
    flat = (attribute.codes * k + prep.y_true) * k + prep.y_pred
    return np.bincount(flat, minlength=len(attribute.groups) * k * k).reshape(len(attribute.groups), k, k)


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(samples, [alpha, 100 - alpha], axis=0)
    return low, high


def _num(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) or math.isinf(v) else v


# ------------------------------------------------------------------------------------- the audit
def _make_disparity(attribute: str, kept_groups: list[str], metric: str, value: Any, samples: np.ndarray | None,
                    lo: Any, hi: Any, positive_label: str | None, ci_level: float) -> Disparity:
    """One disparity; ``None`` (not a pass, not a fail) when fewer than two groups have enough data
    (one suffices for a worst-group number) or the metric is undefined in every group."""
    compared = len(kept_groups)
    usable = compared >= 2 or (metric.startswith("worst_group") and compared >= 1)
    point = _num(value) if usable else None
    low = high = None
    if samples is not None and point is not None:
        lo_ci, hi_ci = _percentiles(samples, ci_level)
        low, high = _num(lo_ci), _num(hi_ci)
    return Disparity(
        attribute=attribute, metric=metric, value=point, ci_low=low, ci_high=high, positive_label=positive_label,
        min_group=kept_groups[int(lo)] if point is not None and lo is not None else None,
        max_group=kept_groups[int(hi)] if point is not None and hi is not None else None,
        groups_compared=compared,
    )


def compute_fairness(
    prep: _Prepared,
    *,
    min_group_size: int,
    intersections: bool = True,
    max_intersection_size: int | None = 2,
    bootstrap: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> FairnessEvidence:
    """Per-group metrics and disparities with bootstrap intervals (see the module docstring)."""
    started = time.perf_counter()
    attributes = attributes_for(prep, intersections, max_intersection_size)
    boot = _Bootstrap(prep, attributes, bootstrap, seed) if bootstrap > 0 else None
    resampled: list[Any] = []
    if boot is not None:
        resampled = boot.perplexity_sums() if prep.mode == "perplexity" else boot.classification_counts()

    groups_out: list[GroupMetrics] = []
    disparities: list[Disparity] = []
    per_class: list[Disparity] = []
    insufficient: list[str] = []
    for index, attribute in enumerate(attributes):
        frame = metric_frame(prep, attribute)
        by_group = frame.by_group
        sizes = np.bincount(attribute.codes, minlength=len(attribute.groups))
        keep = sizes >= min_group_size
        metric_names = list(by_group.columns)
        point = {m: by_group[m].reindex(attribute.groups).to_numpy(dtype=float) for m in metric_names}

        boot_stats: dict[str, np.ndarray] | None = None
        if boot is not None:
            if prep.mode == "perplexity":
                wl, w = resampled[index]
                boot_stats = perplexity_stats(wl, w)
            else:
                boot_stats = classification_stats(resampled[index], prep)
        cis = {m: _percentiles(boot_stats[m], ci_level) for m in metric_names} if boot_stats else {}

        for g, group in enumerate(attribute.groups):
            metrics = {}
            for m in metric_names:
                low = high = None
                if m in cis:
                    low, high = _num(cis[m][0][g]), _num(cis[m][1][g])
                metrics[m] = MetricValue(value=_num(point[m][g]), ci_low=low, ci_high=high)
            short = not keep[g]
            if short:
                insufficient.append(f"{attribute.name}={group}")
            groups_out.append(GroupMetrics(attribute=attribute.name, group=group, n=int(sizes[g]),
                                           insufficient_data=short, metrics=metrics))

        observed = disparities_from_stats(point, prep, keep, boot_stats)
        kept_groups = [grp for grp, k in zip(attribute.groups, keep, strict=True) if k]

        for (metric, code), value in observed.values.items():
            item = _make_disparity(
                attribute.name, kept_groups, metric, value, observed.samples.get((metric, code)),
                observed.lo_group.get((metric, code)), observed.hi_group.get((metric, code)),
                None if code is None else prep.classes[code], ci_level,
            )
            if code is None or prep.mode == "binary":
                disparities.append(item)
            else:
                per_class.append(item)
        if prep.mode == "one_vs_rest":
            for metric in (*_DIFFERENCE_METRICS, *_RATIO_METRICS):
                worst, worst_samples, which = worst_class_disparity(observed, prep, metric)
                code = int(which)
                disparities.append(_make_disparity(
                    attribute.name, kept_groups, metric, worst, worst_samples,
                    observed.lo_group[(metric, code)], observed.hi_group[(metric, code)],
                    prep.classes[code], ci_level,
                ))

    method = None
    if bootstrap > 0:
        method = ("percentile; rows resampled with replacement (causal LM: row indices, bincount); "
                  "each disparity resampled at the group pair its estimate picked"
                  if prep.mode == "perplexity" else
                  "percentile; row resampling drawn as Multinomial(n, observed cell frequencies) over "
                  "(group, label, prediction) cells; each disparity resampled at the class, group pair "
                  "and TPR/FPR component its estimate picked")
    return FairnessEvidence(
        sensitive_columns=list(prep.sensitive),
        intersections=intersections,
        max_intersection_size=max_intersection_size if intersections else None,
        bootstrap=bootstrap,
        seed=seed,
        min_group_size=min_group_size,
        positive_label=prep.classes[prep.positives[0]] if prep.mode == "binary" else None,
        groups=groups_out,
        disparities=disparities,
        insufficient_groups=insufficient,
        mode=prep.mode,
        classes=prep.classes,
        n=prep.n,
        attributes=[a.name for a in attributes],
        ci_level=ci_level,
        bootstrap_method=method,
        per_class_disparities=per_class,
        duration_s=time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------------------- files
def read_predictions(path: Path) -> pd.DataFrame:
    """A predictions file (CSV, JSONL or Parquet, by suffix) as a DataFrame; CSV cells stay strings
    and an empty cell is missing, as everywhere in govern."""
    from govern.data.io import detect_format

    path = Path(path)
    fmt = detect_format(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        return pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read {fmt} predictions: {type(exc).__name__}") from None


def audit_fairness(
    predictions: Path,
    label: str,
    pred: str,
    sensitive: list[str],
    policy: Policy | None = None,
    *,
    positive_label: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    intersections: bool = True,
    max_intersection_size: int | None = 2,
    multiclass: MulticlassMode = "one_vs_rest",
    min_group_size: int | None = None,
    ci_level: float = 0.95,
) -> FairnessEvidence:
    """Audit a predictions file from a model trained anywhere (``govern audit fairness``).

    ``min_group_size`` defaults to the policy's ``fairness.min_group_size`` (30 without a policy).
    The caller (``govern.api``) records the result in the lineage DB and evaluates the policy.
    """
    if min_group_size is None:
        min_group_size = policy.fairness.min_group_size if policy is not None else 30
    frame = read_predictions(predictions)
    prep = prepare_classification(frame, label=label, pred=pred, sensitive=sensitive,
                                  positive_label=positive_label, multiclass=multiclass, source=str(predictions))
    return compute_fairness(prep, min_group_size=min_group_size, intersections=intersections,
                            max_intersection_size=max_intersection_size, bootstrap=bootstrap, seed=seed,
                            ci_level=ci_level)
