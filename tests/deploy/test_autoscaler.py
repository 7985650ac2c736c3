"""KEDA's Kafka-scaler rule as the local autoscaler applies it, and its check of a record."""

import csv

import pytest

from deploy.autoscaler import ScaleIn, ScaleRule, Tick, desired_replicas, follows_the_rule
from deploy.scale_demo import write_reports

pytestmark = pytest.mark.unit

RULE = ScaleRule(lag_threshold=40, activation_lag_threshold=5, min_replicas=1, max_replicas=4)


@pytest.mark.parametrize(
    ("rule", "lag", "partitions", "desired"),
    [
        (RULE, 0, 12, 1),  # idle: the minimum
        (RULE, 5, 12, 1),  # at the activation threshold: still inactive
        (RULE, 6, 12, 1),  # active: ceil(6 / 40) = 1
        (RULE, 40, 12, 1),
        (RULE, 41, 12, 2),
        (RULE, 120, 12, 3),
        (RULE, 10_000, 12, 4),  # clamped to the maximum
        (RULE, 10_000, 2, 2),  # never more replicas than partitions
        (ScaleRule(40, 0, 0, 12), 0, 12, 0),  # a minimum of 0 scales to zero
        (ScaleRule(40, 0, 0, 12), 1, 12, 1),
        (ScaleRule(10, 0, 2, 12), 1, 12, 2),  # the minimum holds under any lag
        (ScaleRule(10, 0, 1, 12), 500, 12, 12),
    ],
)
def test_desired_replicas_follow_kedas_kafka_scaler(rule, lag, partitions, desired):
    assert desired_replicas(rule, lag, partitions) == desired


def test_a_rule_that_cannot_work_is_refused():
    with pytest.raises(ValueError):
        ScaleRule(lag_threshold=0)
    with pytest.raises(ValueError):
        ScaleRule(lag_threshold=10, min_replicas=3, max_replicas=2)


def test_scale_out_is_at_once_and_scale_in_waits_for_the_window():
    window = ScaleIn(window_s=30)
    assert window.replicas(0, desired=4, current=1) == 4
    assert window.replicas(10, desired=1, current=4) == 4  # 4 was asked 10 s ago
    assert window.replicas(29, desired=2, current=4) == 4
    assert window.replicas(31, desired=1, current=4) == 2  # 4 left the window; 2 is in it
    assert window.replicas(60, desired=1, current=2) == 1


def ticks_of(rows):
    return [Tick(t, "g", 12, lag, desired, replicas) for t, lag, desired, replicas in rows]


def test_a_record_that_follows_the_rule_passes_and_one_that_does_not_is_named():
    rule = ScaleRule(lag_threshold=40, max_replicas=4, cooldown_s=30)
    followed = ticks_of([(0, 0, 1, 1), (3, 150, 4, 4), (6, 0, 1, 4), (40, 0, 1, 1)])
    assert follows_the_rule(rule, followed, initial=1) == []
    early = ticks_of([(0, 0, 1, 1), (3, 150, 4, 4), (6, 0, 1, 1)])  # scaled in too soon
    (problem,) = follows_the_rule(rule, early, initial=1)
    assert "at 6.0 s" in problem and "replicas 4" in problem


def test_the_reports_hold_every_tick(tmp_path):
    ticks = [
        Tick(0.0, "ragbus-chunker", 12, 0, 1, 1),
        Tick(0.0, "ragbus-embedder", 12, 90, 3, 3),
        Tick(3.0, "ragbus-chunker", 12, 0, 1, 1),
        Tick(3.0, "ragbus-embedder", 12, 10, 1, 3),
    ]
    write_reports(tmp_path, ticks, {"lost": 0})
    with (tmp_path / "scale-demo.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["t", "group", "partitions", "lag", "desired", "replicas"]
    assert [(r["group"], int(r["lag"]), int(r["replicas"])) for r in rows] == [
        (t.group, t.lag, t.replicas) for t in ticks
    ]
    assert (tmp_path / "scale-demo.png").read_bytes().startswith(b"\x89PNG")
