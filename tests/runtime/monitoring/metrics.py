"""Read metrics back the way Prometheus does: the text exposition, parsed by prometheus-client."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample in ``registry``: (sample name, labels) -> value."""
    text = generate_latest(registry).decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    """The sample ``name`` with exactly ``labels``, or None when it is absent."""
    return samples.get((name, frozenset(labels.items())))


def engines_in(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> set[str]:
    """The ``engine`` label values present in any dbprofile_pool_* sample."""
    return {
        dict(labels)["engine"]
        for (name, labels) in samples
        if name.startswith("dbprofile_pool_") and "engine" in dict(labels)
    }
