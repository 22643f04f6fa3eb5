"""Rendering of a judged run: verdict.json, summary.md and terminal lines (pure functions)."""
