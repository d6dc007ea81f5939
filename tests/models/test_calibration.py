"""Calibration metrics on constructed cases whose answers are known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from models import calibration as cal


def test_perfectly_calibrated_classifier_has_zero_ece() -> None:
    # confidence 0.8 on 10 points, 8 of them right; confidence 0.6 on 5 points, 3 right
    probs = torch.tensor([[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 5, dtype=torch.float64)
    y = torch.tensor([0] * 8 + [1] * 2 + [1] * 3 + [0] * 2)
    assert cal.ece(probs, y) == pytest.approx(0.0, abs=1e-12)
    bins = [b for b in cal.reliability_bins(probs, y) if b.count]
    assert [(b.count, b.confidence, b.accuracy) for b in bins] == [
        (5, pytest.approx(0.6), pytest.approx(0.6)),
        (10, pytest.approx(0.8), pytest.approx(0.8)),
    ]


def test_constant_overconfident_classifier_ece_is_confidence_minus_accuracy() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05]] * 20, dtype=torch.float64)
    y = torch.tensor([0] * 13 + [1] * 7)  # accuracy 0.65
    assert cal.ece(probs, y) == pytest.approx(0.9 - 0.65)
    assert cal.accuracy(probs, y) == pytest.approx(0.65)


def test_bins_are_equal_width_and_right_closed() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    bins = cal.reliability_bins(probs, torch.tensor([0, 0, 1]), n_bins=10)
    assert len(bins) == 10 and bins[0].lower == 0 and bins[-1].upper == 1
    assert [b.count for b in bins] == [0, 0, 0, 0, 1, 0, 0, 1, 0, 1]  # 0.5 -> (0.4, 0.5]


def test_brier() -> None:
    onehot = torch.eye(3, dtype=torch.float64)
    assert cal.brier(onehot, torch.tensor([0, 1, 2])) == 0.0
    # (0.7-1)² + 0.2² + 0.1² = 0.14 and (0.5-0)² + (0.5-1)² + 0 = 0.5: mean 0.32
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]], dtype=torch.float64)
    assert cal.brier(probs, torch.tensor([0, 1])) == pytest.approx(0.32)
    assert cal.brier(onehot, torch.tensor([1, 2, 0])) == pytest.approx(2.0)  # worst case


def test_classification_nll_hand_value() -> None:
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    nll = cal.classification_nll(probs, torch.tensor([0, 1]))
    assert nll == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)


def test_gaussian_nll_hand_value() -> None:
    # -log N(1; 0, 4) = ½ log(2π·4) + 1/8
    y, mean, var = torch.ones(1, 1), torch.zeros(1, 1), torch.full((1, 1), 4.0)
    assert cal.regression_nll(y, mean, var) == pytest.approx(0.5 * math.log(8 * math.pi) + 1 / 8)
    metrics = cal.regression_metrics(y, mean, var)
    assert set(metrics) == {"nll", "rmse", "coverage_95", "width_95"}
    assert metrics["rmse"] == 1.0 and metrics["coverage_95"] == 1.0
    assert metrics["width_95"] == pytest.approx(2 * 1.959964 * 2, rel=1e-6)


def test_exact_gaussian_coverage_matches_the_level() -> None:
    g = torch.Generator().manual_seed(0)
    n = 20_000
    y = torch.randn(n, 2, generator=g, dtype=torch.float64) * 3 + 1
    mean, var = torch.ones(n, 2, dtype=torch.float64), torch.full((n, 2), 9.0, dtype=torch.float64)
    se = math.sqrt(0.95 * 0.05 / (2 * n))
    coverage, width = cal.interval_coverage(y, mean, var, 0.95)
    assert abs(coverage - 0.95) < 4 * se
    assert width == pytest.approx(2 * 1.959964 * 3, rel=1e-6)
    for point in cal.calibration_curve(y, mean, var):
        level = point["level"]
        assert abs(point["coverage"] - level) < 4 * math.sqrt(level * (1 - level) / (2 * n)) + 1e-9
    # too narrow an interval under-covers
    assert cal.interval_coverage(y, mean, var / 4, 0.95)[0] < 0.75


def test_predictive_metrics_skips_outputs_without_summaries() -> None:
    y = torch.zeros(4, 1)
    assert cal.predictive_metrics({"mean": torch.zeros(4, 1)}, y, "regression") is None
    assert cal.predictive_metrics({"logits": torch.zeros(4, 3)}, torch.zeros(4).long(), "x") is None
    out = {"mean": torch.zeros(4, 1), "total_var": torch.ones(4, 1)}
    assert cal.predictive_metrics(out, y, "regression") is not None
