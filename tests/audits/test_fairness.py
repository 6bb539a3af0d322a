"""Fairness audit: govern's numbers are Fairlearn's, gaps are gated by the policy, odd groups behave."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from govern.audits.fairness import (
    MISSING_GROUP,
    attributes_for,
    audit_fairness,
    classification_stats,
    compute_fairness,
    metric_frame,
    observed_counts,
    prepare_arrays,
    prepare_classification,
    prepare_perplexity,
)
from govern.errors import DataError, GovernError
from govern.evidence import FairnessEvidence
from govern.policy.schema import Policy


def _random_predictions(n: int, seed: int) -> pd.DataFrame:
    """Binary predictions whose error rate depends on the groups (so disparities are not zero)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "sex": rng.choice(["F", "M"], n),
        "age": rng.choice(["18-29", "30-44", "45+"], n, p=[0.3, 0.4, 0.3]),
        "region": rng.choice(["north", "south"], n),
    })
    y = rng.integers(0, 2, n)
    flip = rng.random(n) < np.where(frame["sex"] == "F", 0.15, 0.3) + np.where(frame["age"] == "45+", 0.1, 0)
    frame["label"] = y
    frame["pred"] = np.where(flip, 1 - y, y)
    return frame


def _disparity(ev: FairnessEvidence, attribute: str, metric: str) -> float | None:
    [d] = [d for d in ev.disparities if d.attribute == attribute and d.metric == metric]
    return d.value


def _group(ev: FairnessEvidence, attribute: str, group: str):  # noqa: ANN202
    [g] = [g for g in ev.groups if g.attribute == attribute and g.group == group]
    return g


def _policy(**fairness: object) -> Policy:
    return Policy.model_validate({"apiVersion": "govern.dev/v1", "kind": "Policy",
                                  "metadata": {"name": "test", "version": "1"}, "fairness": fairness})


# ------------------------------------------------------------------------- equality with Fairlearn
def test_group_metrics_and_disparities_equal_fairlearn_on_the_same_predictions() -> None:
    frame = _random_predictions(1500, seed=1)
    prep = prepare_classification(frame, label="label", pred="pred", sensitive=["sex", "age", "region"])
    ev = compute_fairness(prep, min_group_size=1, bootstrap=0, max_intersection_size=None)
    y, p = frame["label"].to_numpy(), frame["pred"].to_numpy()
    assert ev.attributes == ["sex", "age", "region", "sex&age", "sex&region", "age&region", "sex&age&region"]
    pairs = compute_fairness(prep, min_group_size=1, bootstrap=0)  # default: pairs only
    assert pairs.attributes == ["sex", "age", "region", "sex&age", "sex&region", "age&region"]
    assert pairs.max_intersection_size == 2

    assert ev.mode == "binary" and ev.positive_label == "1"
    for attribute in (["sex"], ["age"], ["sex", "age"], ["sex", "age", "region"]):
        name = "&".join(attribute)
        features = frame[attribute] if len(attribute) > 1 else frame[attribute[0]]
        direct = MetricFrame(
            metrics={"accuracy": accuracy_score, "selection_rate": selection_rate,
                     "true_positive_rate": true_positive_rate, "false_positive_rate": false_positive_rate},
            y_true=y, y_pred=p, sensitive_features=features)
        for key, row in direct.by_group.iterrows():
            group = "&".join(key) if isinstance(key, tuple) else key
            got = _group(ev, name, group)
            assert got.n == int(np.sum(np.all(frame[attribute].to_numpy() == np.array(key if isinstance(key, tuple)
                                                                                          else [key]), axis=1)))
            for metric in ("accuracy", "selection_rate", "true_positive_rate", "false_positive_rate"):
                assert got.metrics[metric].value == row[metric], (name, group, metric)
        kwargs = {"sensitive_features": features}
        assert _disparity(ev, name, "demographic_parity_difference") == demographic_parity_difference(y, p, **kwargs)
        assert _disparity(ev, name, "demographic_parity_ratio") == demographic_parity_ratio(y, p, **kwargs)
        assert _disparity(ev, name, "equalized_odds_difference") == equalized_odds_difference(y, p, **kwargs)
        assert _disparity(ev, name, "equalized_odds_ratio") == equalized_odds_ratio(y, p, **kwargs)
        assert _disparity(ev, name, "accuracy_difference") == direct.difference()["accuracy"]
        assert _disparity(ev, name, "worst_group_accuracy") == direct.group_min()["accuracy"]


def test_numpy_bootstrap_statistics_reproduce_metricframe_exactly_on_the_observed_data() -> None:
    frame = _random_predictions(3000, seed=2)
    frame["label"] = np.array(["billing", "shipping", "account"])[frame["label"] + (frame.index % 2)]
    frame["pred"] = np.array(["billing", "shipping", "account"])[frame["pred"] + (frame.index % 3 == 0)]
    prep = prepare_classification(frame, label="label", pred="pred", sensitive=["sex", "age"])
    assert prep.mode == "one_vs_rest"
    for attribute in attributes_for(prep, intersections=True):
        by_group = metric_frame(prep, attribute).by_group
        stats = classification_stats(observed_counts(prep, attribute), prep)
        assert set(stats) == set(by_group.columns)
        for metric, values in stats.items():
            expected = by_group[metric].reindex(attribute.groups).to_numpy(dtype=float)
            np.testing.assert_array_equal(values, expected, err_msg=f"{attribute.name} {metric}")


def test_one_vs_rest_reports_every_class_and_gates_on_the_worst_one() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    classes = np.array(["account", "billing", "shipping"])
    frame = pd.DataFrame({"region": rng.choice(["north", "south"], n), "label": rng.choice(classes, n)})
    # In the south, a third of "billing" requests are misread as "shipping": a class-specific gap.
    misread = (frame["region"] == "south") & (frame["label"] == "billing") & (rng.random(n) < 0.33)
    frame["pred"] = np.where(misread, "shipping", frame["label"])
    ev = audit_fairness_frame(frame)

    per_class = {d.positive_label: d.value for d in ev.per_class_disparities
                 if d.attribute == "region" and d.metric == "demographic_parity_difference"}
    for c in classes:
        expected = demographic_parity_difference((frame["label"] == c).astype(int), (frame["pred"] == c).astype(int),
                                                 sensitive_features=frame["region"])
        assert per_class[c] == expected
    [worst] = [d for d in ev.disparities if d.attribute == "region" and d.metric == "demographic_parity_difference"]
    assert worst.value == max(per_class.values())
    assert worst.positive_label in ("billing", "shipping")
    [eo] = [d for d in ev.disparities if d.attribute == "region" and d.metric == "equalized_odds_difference"]
    billing_tpr = equalized_odds_difference((frame["label"] == "billing").astype(int),
                                            (frame["pred"] == "billing").astype(int),
                                            sensitive_features=frame["region"])
    assert eo.value == billing_tpr and eo.positive_label == "billing"
    assert "selection_rate[billing]" in _group(ev, "region", "south").metrics
    # one entry per (attribute, metric) in `disparities`, so one policy threshold covers every class
    keys = [(d.attribute, d.metric) for d in ev.disparities]
    assert len(keys) == len(set(keys))


def audit_fairness_frame(frame: pd.DataFrame, **kwargs: object) -> FairnessEvidence:
    prep = prepare_classification(frame, label="label", pred="pred", sensitive=["region"])
    return compute_fairness(prep, min_group_size=30, bootstrap=0, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------- hand-checked fixture and policy
def _hand_checked(gap: bool) -> pd.DataFrame:
    """Two groups of 100. Group A: 50 positives, 50 negatives; predictions select 30 + 10 = 40.
    Group B: same labels; selects 45 + 5 = 50 (gap) or 30 + 12 = 42 (no gap).

    gap:    selection A 0.40, B 0.50 → DP difference 0.10, ratio 0.80;
            TPR A 0.60, B 0.90 (diff 0.30); FPR A 0.20, B 0.10 (diff 0.10) → EO difference 0.30.
    no gap: selection A 0.40, B 0.42 → difference 0.02, ratio 0.952…; TPR equal, FPR 0.20 vs 0.24
            → EO difference 0.04.
    """
    rows = []
    b_tp, b_fp = (45, 5) if gap else (30, 12)
    for group, tp, fp in (("A", 30, 10), ("B", b_tp, b_fp)):
        rows += [{"group": group, "label": 1, "pred": 1}] * tp + [{"group": group, "label": 1, "pred": 0}] * (50 - tp)
        rows += [{"group": group, "label": 0, "pred": 1}] * fp + [{"group": group, "label": 0, "pred": 0}] * (50 - fp)
    return pd.DataFrame(rows)


def test_hand_checked_disparity_gives_the_expected_numbers_and_the_policy_blocks_then_passes() -> None:
    from govern.policy import evaluate

    policy = _policy(min_group_size=30, max_difference={"equalized_odds_difference": 0.1},
                     min_ratio={"demographic_parity_ratio": 0.8})
    gap = compute_fairness(prepare_classification(_hand_checked(True), label="label", pred="pred",
                                                  sensitive=["group"]), min_group_size=30, bootstrap=200, seed=0)
    assert _disparity(gap, "group", "demographic_parity_difference") == pytest.approx(0.10)
    assert _disparity(gap, "group", "demographic_parity_ratio") == pytest.approx(0.80)
    assert _disparity(gap, "group", "true_positive_rate_difference") == pytest.approx(0.30)
    assert _disparity(gap, "group", "false_positive_rate_difference") == pytest.approx(0.10)
    assert _disparity(gap, "group", "equalized_odds_difference") == pytest.approx(0.30)
    assert _disparity(gap, "group", "equalized_odds_ratio") == pytest.approx(min(0.6 / 0.9, 0.1 / 0.2))
    assert _group(gap, "group", "B").metrics["true_positive_rate"].value == pytest.approx(0.9)
    [eo] = [d for d in gap.disparities if d.metric == "equalized_odds_difference"]
    assert (eo.min_group, eo.max_group) == ("A", "B")
    assert eo.ci_low is not None and eo.ci_high is not None and eo.ci_low < 0.30 < eo.ci_high

    decision = evaluate(policy, {"fairness": gap.model_dump(mode="json")})
    failed = {r.rule_id for r in decision.results if r.status == "fail"}
    assert decision.decision == "block"
    assert "fairness.max_difference.equalized_odds_difference" in failed

    fair = compute_fairness(prepare_classification(_hand_checked(False), label="label", pred="pred",
                                                   sensitive=["group"]), min_group_size=30, bootstrap=200, seed=0)
    assert _disparity(fair, "group", "equalized_odds_difference") == pytest.approx(0.04)
    assert _disparity(fair, "group", "demographic_parity_ratio") == pytest.approx(0.40 / 0.42)
    assert evaluate(policy, {"fairness": fair.model_dump(mode="json")}).decision == "pass"

    # gate_on: ci uses the bound least favourable to passing: the fair model's upper EO bound is > 0.1
    strict = _policy(min_group_size=30, gate_on="ci", max_difference={"equalized_odds_difference": 0.1})
    assert evaluate(strict, {"fairness": fair.model_dump(mode="json")}).decision == "block"


def test_shipped_default_policy_gates_error_rate_parity_and_the_four_fifths_rule() -> None:
    from govern.policy import evaluate, load_policy

    policy = load_policy("default").policy
    assert policy.fairness.max_difference.get("equalized_odds_difference") == 0.1
    assert policy.fairness.min_ratio.get("demographic_parity_ratio") == 0.8
    for gap, expected in ((True, "block"), (False, "pass")):
        ev = compute_fairness(prepare_classification(_hand_checked(gap), label="label", pred="pred",
                                                     sensitive=["group"]), min_group_size=30, bootstrap=0)
        results = evaluate(policy, {"fairness": ev.model_dump(mode="json")}).results
        fairness = [r for r in results if r.rule_id.startswith("fairness.")]
        assert any(r.status == "fail" for r in fairness) is (expected == "block")


# ------------------------------------------------------------------------------- bootstrap behaviour
def test_bootstrap_is_seeded_recorded_and_brackets_the_estimate() -> None:
    frame = _random_predictions(2000, seed=4)
    prep = prepare_classification(frame, label="label", pred="pred", sensitive=["sex"])
    a = compute_fairness(prep, min_group_size=30, bootstrap=300, seed=7)
    b = compute_fairness(prep, min_group_size=30, bootstrap=300, seed=7)
    c = compute_fairness(prep, min_group_size=30, bootstrap=300, seed=8)
    assert a.bootstrap == 300 and a.seed == 7 and a.ci_level == 0.95 and a.bootstrap_method
    assert a.disparities == b.disparities and a.groups == b.groups
    assert a.disparities != c.disparities
    for g in a.groups:
        for m in g.metrics.values():
            assert m.ci_low is not None and m.ci_high is not None and m.ci_low <= m.value <= m.ci_high
    [dp] = [d for d in a.disparities if d.metric == "demographic_parity_difference"]
    assert dp.ci_low < dp.ci_high
    none = compute_fairness(prep, min_group_size=30, bootstrap=0)
    assert all(d.ci_low is None for d in none.disparities) and none.bootstrap_method is None


# --------------------------------------------------------------------- intersections, missing, tiny
def test_intersections_missing_values_and_tiny_groups_behave_as_specified() -> None:
    frame = _random_predictions(1200, seed=5)
    frame["sex"] = frame["sex"].astype(object)
    frame.loc[:39, "sex"] = None
    frame.loc[40:44, "sex"] = np.nan
    frame.loc[45:49, "sex"] = ""
    frame.loc[50:54, "sex"] = "X"  # a real but tiny group
    prep = prepare_classification(frame, label="label", pred="pred", sensitive=["sex", "region"])
    ev = compute_fairness(prep, min_group_size=30, bootstrap=100, seed=0)

    assert ev.attributes == ["sex", "region", "sex&region"]
    missing = _group(ev, "sex", MISSING_GROUP)
    assert missing.n == 50 and not missing.insufficient_data
    tiny = _group(ev, "sex", "X")
    assert tiny.n == 5 and tiny.insufficient_data
    assert tiny.metrics["accuracy"].value is not None  # shown, but not gated
    assert "sex=X" in ev.insufficient_groups
    cross = _group(ev, "sex&region", f"{MISSING_GROUP}&north")
    assert cross.n == int(((frame.index < 50) & (frame["region"] == "north")).sum())
    assert all(g.n >= 30 or g.insufficient_data for g in ev.groups)

    # the disparity over sex excludes the tiny group: equal to Fairlearn on the other rows
    kept = frame[frame.index.isin(range(50, 55)) == False]  # noqa: E712
    sex = kept["sex"].map(lambda v: MISSING_GROUP if v is None or v == "" or v != v else v)
    assert _disparity(ev, "sex", "demographic_parity_difference") == demographic_parity_difference(
        kept["label"], kept["pred"], sensitive_features=sex)
    [dp] = [d for d in ev.disparities if d.attribute == "sex" and d.metric == "demographic_parity_difference"]
    assert dp.groups_compared == 3


def test_insufficient_data_is_reported_not_passed_or_failed() -> None:
    from govern.policy import evaluate

    frame = _hand_checked(True)
    prep = prepare_classification(frame, label="label", pred="pred", sensitive=["group"])
    ev = compute_fairness(prep, min_group_size=150, bootstrap=0)
    assert sorted(ev.insufficient_groups) == ["group=A", "group=B"]
    assert all(d.value is None for d in ev.disparities)
    decision = evaluate(_policy(min_group_size=150, max_difference={"equalized_odds_difference": 0.1}),
                        {"fairness": ev.model_dump(mode="json")})
    statuses = {r.rule_id: r.status for r in decision.results}
    assert statuses["fairness.max_difference.equalized_odds_difference"] == "skipped"
    assert statuses["fairness.insufficient_data"] == "fail" and decision.decision == "warn"


def test_a_rate_without_a_denominator_is_undefined_not_zero() -> None:
    frame = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 40, "label": [1, 0] * 20 + [0] * 40,
                          "pred": [1, 0] * 20 + [1, 0] * 20})
    ev = compute_fairness(prepare_classification(frame, label="label", pred="pred", sensitive=["g"]),
                          min_group_size=30, bootstrap=50)
    assert _group(ev, "g", "b").metrics["true_positive_rate"].value is None
    # TPR is compared over group a alone → no TPR difference; EO falls back to the FPR difference (0.5 − 0)
    assert _disparity(ev, "g", "true_positive_rate_difference") == 0.0
    assert _disparity(ev, "g", "equalized_odds_difference") == 0.5


def test_causal_lm_perplexity_per_group() -> None:
    rng = np.random.default_rng(6)
    n = 400
    frame = pd.DataFrame({"dialect": rng.choice(["a", "b"], n), "tokens": rng.integers(5, 40, n)})
    frame["loss"] = np.where(frame["dialect"] == "a", 2.0, 2.5) + rng.normal(0, 0.1, n)
    prep = prepare_perplexity(frame, loss="loss", tokens="tokens", sensitive=["dialect"])
    ev = compute_fairness(prep, min_group_size=30, bootstrap=100, seed=0)
    assert ev.mode == "perplexity"
    per_group = {}
    for g in ("a", "b"):
        rows = frame[frame["dialect"] == g]
        per_group[g] = float(np.exp(np.average(rows["loss"], weights=rows["tokens"])))
        assert _group(ev, "dialect", g).metrics["perplexity"].value == pytest.approx(per_group[g], rel=1e-12)
    assert _disparity(ev, "dialect", "perplexity_difference") == pytest.approx(per_group["b"] - per_group["a"])
    [worst] = [d for d in ev.disparities if d.metric == "worst_group_perplexity"]
    assert worst.max_group == "b" and worst.ci_low < worst.value < worst.ci_high


# ----------------------------------------------------------------------------------------- bad input
def test_bad_input_gets_a_clear_error_naming_file_and_column(tmp_path: Path) -> None:
    frame = _random_predictions(100, seed=7)
    path = tmp_path / "preds.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as missing:
        audit_fairness(path, "label", "pred", ["sex", "ethnicity"], None)
    assert missing.value.field == "ethnicity" and str(path) in str(missing.value)

    with pytest.raises(DataError) as mismatch:
        prepare_arrays([0, 1, 1], [0, 1], {"sex": ["F", "M", "F"]})
    assert "2 rows" in str(mismatch.value) and mismatch.value.field == "pred"
    with pytest.raises(DataError) as short_sensitive:
        prepare_arrays([0, 1, 1], [0, 1, 0], {"sex": ["F", "M"]})
    assert short_sensitive.value.field == "sex"

    multi = frame.assign(label=np.array(["a", "b", "c", "a"] * 25), pred=np.array(["a", "b", "c", "c"] * 25))
    multi_path = tmp_path / "multi.jsonl"
    multi.to_json(multi_path, orient="records", lines=True)
    with pytest.raises(DataError) as non_binary:
        audit_fairness(multi_path, "label", "pred", ["sex"], None, multiclass="error")
    assert non_binary.value.field == "label" and "positive label" in str(non_binary.value)
    with pytest.raises(DataError, match="positive label occurs in neither"):
        audit_fairness(multi_path, "label", "pred", ["sex"], None, positive_label="zzz")
    # with a positive label the same multi-class file is audited as that class vs the rest
    ev = audit_fairness(multi_path, "label", "pred", ["sex"], None, positive_label="c", bootstrap=0)
    assert ev.mode == "binary" and ev.positive_label == "c"

    holes = frame.astype({"pred": object})
    holes.loc[17, "pred"] = None
    with pytest.raises(DataError) as missing_pred:
        prepare_classification(holes, label="label", pred="pred", sensitive=["sex"], source="preds.parquet")
    assert missing_pred.value.record == 17 and missing_pred.value.field == "pred"
    assert isinstance(missing_pred.value, GovernError)


def test_audit_reads_csv_jsonl_and_parquet_alike_and_uses_the_policy_group_size(tmp_path: Path) -> None:
    frame = _random_predictions(600, seed=8)
    frame.to_csv(tmp_path / "p.csv", index=False)
    frame.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "p.parquet")
    policy = _policy(min_group_size=80)
    results = [audit_fairness(tmp_path / f"p.{ext}", "label", "pred", ["sex", "age"], policy, bootstrap=50, seed=1)
               for ext in ("csv", "jsonl", "parquet")]
    for ev in results:
        ev.duration_s = 0.0
    assert results[0] == results[1] == results[2]
    assert results[0].min_group_size == 80
    assert results[0].insufficient_groups  # some sex&age cells have fewer than 80 rows


def test_no_warnings_escape() -> None:
    frame = _random_predictions(500, seed=9)
    frame.loc[:5, "sex"] = "tiny"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prep = prepare_classification(frame, label="label", pred="pred", sensitive=["sex", "age"])
        compute_fairness(prep, min_group_size=30, bootstrap=100)


def test_evidence_is_plain_json() -> None:
    frame = _random_predictions(300, seed=10)
    ev = compute_fairness(prepare_classification(frame, label="label", pred="pred", sensitive=["sex"]),
                          min_group_size=30, bootstrap=20)
    text = json.dumps(ev.model_dump(mode="json"), allow_nan=False)
    assert FairnessEvidence.model_validate_json(text) == ev


def test_cli_audit_fairness_prints_json_evidence_and_reports_bad_columns(workdir: Path) -> None:
    from typer.testing import CliRunner

    from govern.cli import app

    frame = _hand_checked(True)
    path = workdir / "preds.parquet"
    frame.to_parquet(path)
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "fairness", "--predictions", str(path), "--label", "label", "--pred", "pred",
                                 "--sensitive", "group", "--bootstrap", "100", "--format", "json"])
    payload = json.loads(result.stdout)
    evidence = FairnessEvidence.model_validate(payload["evidence"])
    assert evidence.bootstrap == 100 and evidence.min_group_size == 30  # the shipped default policy's size
    assert _disparity(evidence, "group", "equalized_odds_difference") == pytest.approx(0.30)
    # the shipped default policy blocks an equalized-odds gap of 0.30 (limit 0.1): exit 1, recorded
    assert payload["decision"] == "block" and result.exit_code == 1 and payload["run_id"]
    assert any(r["rule_id"] == "fairness.max_difference.equalized_odds_difference" and r["status"] == "fail"
               for r in payload["results"])
    fair = workdir / "fair.parquet"
    _hand_checked(False).to_parquet(fair)
    passed = runner.invoke(app, ["audit", "fairness", "--predictions", str(fair), "--label", "label", "--pred", "pred",
                                 "--sensitive", "group", "--format", "json"])
    assert json.loads(passed.stdout)["decision"] == "pass" and passed.exit_code == 0

    bad = runner.invoke(app, ["audit", "fairness", "--predictions", str(path), "--label", "label", "--pred", "pred",
                              "--sensitive", "group,ethnicity"])
    assert isinstance(bad.exception, DataError) and bad.exception.field == "ethnicity"


# ------------------------------------------------------------ intervals are for the estimate's quantity
QUICKSTART_EVAL = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "eval.jsonl"


def test_every_interval_on_the_quickstart_eval_set_contains_its_estimate() -> None:
    """The quickstart's groups are balanced by construction, so the observed gaps are far smaller than
    noise: a bootstrap that re-took the worst class and group pair in every resample put 23 of 24
    disparity intervals wholly above their estimates, and ``gate_on: ci`` blocked on them."""
    frame = pd.read_json(QUICKSTART_EVAL, lines=True)
    rng = np.random.default_rng(0)
    intents = sorted(frame["intent"].unique())
    wrong = rng.random(len(frame)) < 0.1  # a 90 %-accurate intent classifier
    frame["pred"] = np.where(wrong, rng.choice(intents, len(frame)), frame["intent"])
    prep = prepare_classification(frame, label="intent", pred="pred",
                                  sensitive=["age_band", "region", "language_variety"])
    ev = compute_fairness(prep, min_group_size=30, intersections=False, bootstrap=200, seed=0)
    assert ev.mode == "one_vs_rest" and len(ev.disparities) == 24
    for d in [*ev.disparities, *ev.per_class_disparities]:
        assert d.value is not None and d.ci_low is not None and d.ci_high is not None
        assert d.ci_low <= d.value <= d.ci_high, (d.attribute, d.metric, d.positive_label, d.value, d.ci_low,
                                                  d.ci_high)
    for g in ev.groups:
        for name, m in g.metrics.items():
            if m.value is not None:
                assert m.ci_low <= m.value <= m.ci_high, (g.attribute, g.group, name)
    # the worst-class entry and its class's own entry are the same number with the same interval
    for d in ev.disparities:
        if d.positive_label is not None:
            [own] = [c for c in ev.per_class_disparities
                     if (c.attribute, c.metric, c.positive_label) == (d.attribute, d.metric, d.positive_label)]
            assert (own.value, own.ci_low, own.ci_high, own.min_group, own.max_group) == (
                d.value, d.ci_low, d.ci_high, d.min_group, d.max_group)


def _cells(priors: list[list[float]], weights: list[float], confusion: list[np.ndarray]) -> np.ndarray:
    """A population: P(group, true class, predicted class) from group weights, per-group class priors
    and per-group confusion rows."""
    return (np.asarray(weights)[:, None, None] * np.asarray(priors)[:, :, None] * np.asarray(confusion))


def _coverage(population: np.ndarray, classes: list[str], n: int, *, sets: int = 1000, resamples: int = 1000,
              seed: int = 0) -> dict[str, tuple[float, float]]:
    """Draw ``sets`` data sets of ``n`` rows from ``population`` and run govern's own interval code
    (per-group statistics, pinned disparities, worst class, percentiles) on all of them at once; the
    bootstrap is govern's: a Multinomial(n, observed cell frequencies) per resample. Returns, per
    metric, (share of intervals containing the population's disparity, share containing the estimate)."""
    from govern.audits.fairness import _percentiles, disparities_from_stats, worst_class_disparity

    prep = prepare_arrays(classes, classes, {"g": ["x"] * len(classes)})
    groups, k, _ = population.shape
    keep = np.ones(groups, dtype=bool)
    metrics = ("demographic_parity_difference", "demographic_parity_ratio")

    def disparities(stats: dict[str, np.ndarray], boot: dict[str, np.ndarray] | None = None) -> dict:  # type: ignore[type-arg]
        values = disparities_from_stats(stats, prep, keep, boot)
        if prep.mode == "binary":
            return {m: (values.values[(m, prep.positives[0])], values.samples.get((m, prep.positives[0])))
                    for m in metrics}
        return {m: worst_class_disparity(values, prep, m)[:2] for m in metrics}

    truth = {m: float(v) for m, (v, _) in disparities(classification_stats(population, prep)).items()}
    rng = np.random.default_rng(seed)
    covered = dict.fromkeys(metrics, 0)
    contains = dict.fromkeys(metrics, 0)
    for start in range(0, sets, 100):
        batch = min(100, sets - start)
        observed = rng.multinomial(n, population.ravel(), size=batch)
        boot = rng.multinomial(n, observed / n, size=(resamples, batch))
        results = disparities(classification_stats(observed.reshape(batch, groups, k, k), prep),
                              classification_stats(boot.reshape(resamples, batch, groups, k, k), prep))
        for m, (value, samples) in results.items():
            low, high = _percentiles(samples, 0.95)
            covered[m] += int(np.sum((low <= truth[m]) & (truth[m] <= high)))
            contains[m] += int(np.sum((low <= value) & (value <= high)))
    return {m: (covered[m] / sets, contains[m] / sets) for m in metrics}


def test_nominal_95_percent_intervals_cover_the_population_disparity_93_to_97_percent_of_the_time() -> None:
    # binary: three groups with selection rates 0.305, 0.38, 0.45 (DP difference 0.145, ratio 0.678)
    binary = _cells([[0.7, 0.3], [0.6, 0.4], [0.5, 0.5]], [0.3, 0.3, 0.4],
                    [np.array([[0.95, 0.05], [0.1, 0.9]]), np.array([[0.9, 0.1], [0.2, 0.8]]),
                     np.array([[0.8, 0.2], [0.3, 0.7]])])
    # three intents; in the third group half of the "b" requests are misread as "a" or "c", so "b" has
    # the worst gap (DP difference 0.133, ratio 0.6) and the other two half of it
    base = np.full((3, 3), 0.05) + np.eye(3) * 0.85
    misread = base.copy()
    misread[1] = [0.25, 0.5, 0.25]
    multi = _cells([[1 / 3] * 3] * 3, [0.3, 0.3, 0.4], [base, base, misread])
    for population, classes, n in ((binary, ["0", "1"], 2000), (multi, ["a", "b", "c"], 3000)):
        for metric, (covered, contains) in _coverage(population, classes, n).items():
            assert 0.93 <= covered <= 0.97, (classes, metric, covered)
            assert contains == 1.0, (classes, metric, contains)
