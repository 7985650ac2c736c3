"""KEDA's Kafka-scaler rule, applied on one machine: real consumer groups, real stage processes.

In a cluster KEDA reads a stage group's lag and the HPA sets the Deployment's replicas; here
`Autoscaler.tick` reads the same lag (`ragbus.lag`), applies the same rule (`desired_replicas`,
then `ScaleIn`'s stabilisation) and starts or stops `ragbus serve <stage>` processes
(`ReplicaPool`). `make scale-demo` drives it (`deploy/scale_demo.py`).

The rule, as KEDA and the HPA apply it (metric type AverageValue, `allowIdleConsumers: false`):
- at or below `activationLagThreshold` the scaler is inactive: `minReplicaCount`;
- otherwise ceil(total lag / `lagThreshold`), the lag first capped at partitions * threshold,
  so a group never gets more replicas than its topic has partitions;
- clamped to `minReplicaCount`..`maxReplicaCount`;
- scale-out at once; scale-in only to the highest replica count the rule asked for during the
  last `cooldown_s` (the HPA's scale-down stabilisation window).
"""

import math
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragbus.lag import GroupLag


@dataclass(frozen=True)
class ScaleRule:
    """One ScaledObject's numbers."""

    lag_threshold: int
    activation_lag_threshold: int = 0
    min_replicas: int = 1
    max_replicas: int = 12
    cooldown_s: float = 300.0

    def __post_init__(self) -> None:
        if self.lag_threshold < 1 or not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"not a usable rule: {self}")


def desired_replicas(rule: ScaleRule, lag: int, partitions: int) -> int:
    """The replicas KEDA's Kafka scaler asks for at this lag (before stabilisation)."""
    if lag <= rule.activation_lag_threshold:
        return rule.min_replicas
    capped = min(lag, partitions * rule.lag_threshold)
    return max(rule.min_replicas, min(rule.max_replicas, math.ceil(capped / rule.lag_threshold)))


@dataclass
class ScaleIn:
    """The scale-down stabilisation window: the replicas to run, given what the rule asks now
    and what it asked during the last `window_s` seconds."""

    window_s: float
    _asked: deque[tuple[float, int]] = field(default_factory=deque)

    def replicas(self, now: float, desired: int, current: int) -> int:
        self._asked.append((now, desired))
        while self._asked and self._asked[0][0] < now - self.window_s:
            self._asked.popleft()
        if desired >= current:
            return desired
        return min(current, max(asked for _, asked in self._asked))


@dataclass(frozen=True)
class Tick:
    """One row of the autoscaler's record (the CSV of `make scale-demo`)."""

    t: float
    group: str
    partitions: int
    lag: int
    desired: int
    replicas: int


def follows_the_rule(rule: ScaleRule, ticks: Sequence[Tick], initial: int) -> list[str]:
    """Check a group's recorded ticks against the rule, replayed from its lag readings; what
    differs (nothing when every tick followed it)."""
    stabiliser = ScaleIn(rule.cooldown_s)
    replicas = initial
    problems = []
    for tick in ticks:
        desired = desired_replicas(rule, tick.lag, tick.partitions)
        replicas = stabiliser.replicas(tick.t, desired, replicas)
        if (tick.desired, tick.replicas) != (desired, replicas):
            problems.append(
                f"{tick.group} at {tick.t:.1f} s: lag {tick.lag} → desired {desired}, replicas "
                f"{replicas}; recorded {tick.desired}, {tick.replicas}"
            )
    return problems


@dataclass
class ReplicaPool:
    """The processes of one stage: `ragbus serve <service>`, each on a port of its own."""

    service: str
    env: dict[str, str]
    logs: Path
    ports: Callable[[], int]
    _running: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)
    _stopping: list[threading.Thread] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        return len(self._running)

    def scale_to(self, replicas: int) -> None:
        """Start or stop processes until `replicas` run; the newest stop first, with SIGTERM
        (a stage leaves its group cleanly), waited for in the background."""
        while self.replicas < replicas:
            self._start()
        while self.replicas > replicas:
            process, _ = self._running.pop()
            stopper = threading.Thread(target=_terminate, args=(process,), daemon=True)
            stopper.start()
            self._stopping.append(stopper)

    def exited(self) -> list[int]:
        """Exit codes of replicas that ended without being asked to (they are dropped)."""
        gone = [(p, port) for p, port in self._running if p.poll() is not None]
        for entry in gone:
            self._running.remove(entry)
        return [p.returncode for p, _ in gone]

    def _start(self) -> None:
        port = self.ports()
        number = len(self._running) + len(self._stopping) + 1
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{self.service}-{number}.log").open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ragbus_ops", "serve", self.service],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, f"RAGBUS_{self.service.upper()}_PORT": str(port)},
                start_new_session=True,
            )
        self._running.append((process, port))

    def close(self) -> None:
        self.scale_to(0)
        for stopper in self._stopping:
            stopper.join()


def _terminate(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Scaled:
    """A stage under the autoscaler: its group, topic, rule and processes."""

    group: str
    topic: str
    rule: ScaleRule
    pool: ReplicaPool
    scale_in: ScaleIn = field(init=False)

    def __post_init__(self) -> None:
        self.scale_in = ScaleIn(self.rule.cooldown_s)

    def apply(self, now: float, lag: GroupLag) -> Tick:
        """Apply the rule to one lag reading and scale the pool to its answer."""
        desired = desired_replicas(self.rule, lag.total, len(lag.partitions))
        replicas = self.scale_in.replicas(now, desired, self.pool.replicas)
        self.pool.scale_to(replicas)
        return Tick(now, self.group, len(lag.partitions), lag.total, desired, self.pool.replicas)
