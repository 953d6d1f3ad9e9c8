"""
tau's trial test suite.

Hypothesis runs with a deterministic profile so a failure on CI replays locally.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "tau",
    derandomize=True,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("tau")
