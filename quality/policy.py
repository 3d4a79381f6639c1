"""The quality policy (policy.yaml): severities per check and the batch-check thresholds."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from schemas import read_yaml

BUNDLED_POLICY = Path(__file__).resolve().parent / "policy.yaml"
SEVERITIES = ("critical", "warn", "off")


@dataclass(frozen=True)
class Policy:
    severity: dict
    thresholds: dict
    batching: dict
    examples_per_finding: int

    def severity_of(self, check: str) -> str:
        try:
            return self.severity[check]
        except KeyError:
            raise KeyError(f"check {check!r} has no severity in the quality policy") from None

    def enabled(self, check: str) -> bool:
        return self.severity_of(check) != "off"

    def threshold(self, check: str) -> dict:
        return self.thresholds.get(check, {})


def load_policy(path: str | os.PathLike | None = None) -> Policy:
    path = path or os.environ.get("RISKWATCH_QUALITY_POLICY") or BUNDLED_POLICY
    data = read_yaml(path)
    bad = {k: v for k, v in data["severity"].items() if v not in SEVERITIES}
    if bad:
        raise ValueError(f"{path}: severities must be one of {SEVERITIES}, got {bad}")
    return Policy(
        severity=dict(data["severity"]),
        thresholds=dict(data.get("thresholds") or {}),
        batching=dict(data.get("batching") or {}),
        examples_per_finding=int(data.get("examples_per_finding", 3)),
    )
