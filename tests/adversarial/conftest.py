"""Hypothesis settings of the adversarial suite: fixed seeds (``derandomize``), no example database, deadlines."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings

# Data fuzzing (issue 9, item 1). Tests pick their own max_examples: settings(settings.get_profile("adv_data"), ...).
# The deadline is far above a normal example (a few ms) so a shared CPU does not make it flaky, but a hang fails.
settings.register_profile(
    "adv_data",
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
