"""The canary stage: baseline vs canary, judged statistically (see docs/canary.md)."""
