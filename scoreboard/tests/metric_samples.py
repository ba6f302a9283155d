"""Reading metrics in tests: from a scrape's text, parsed as Prometheus does, or straight from
this process's registry. Both are process-wide and grow through the whole test run, so tests
compare a value after the behaviour with the value before it."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_scrape(text: str) -> Samples:
    """Every sample of a `/metrics` answer, by (sample name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def family_names(text: str) -> set[str]:
    """The names a scrape declares, samples or not (`http_requests`, and each sample name
    such as `http_request_duration_seconds_bucket`)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def sample(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def registry_value(name: str, **labels: str) -> float:
    """A sample of this process's default registry; 0 when the series does not exist."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class RegistryDelta:
    """What a block of code added to samples of this process's registry."""

    def __init__(self, *series: tuple[str, dict[str, str]]) -> None:
        self.series = series
        self.before = [registry_value(name, **labels) for name, labels in series]

    def __call__(self) -> list[float]:
        return [
            registry_value(name, **labels) - before
            for (name, labels), before in zip(self.series, self.before, strict=True)
        ]
