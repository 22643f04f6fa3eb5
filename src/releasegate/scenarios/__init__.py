"""Scenarios: declarative critical workflows (HTTP and WebSocket steps) and what calls them.

- :mod:`.model`: the file format (workflows, drivers, golden sets) as frozen models;
- :mod:`.loader`: reading a scenario folder strictly (unknown keys, undefined variables,
  unknown connections and drivers are configuration errors naming file:line);
- :mod:`.template`, :mod:`.jsonpath`, :mod:`.expectations`: ``${variables}``, JSON paths and
  judging answers and events (pure);
- :mod:`.runner`: running one scenario against a deployment, with evidence of the failing step,
  and running a driver for another check.

``load_scenarios(target)`` is what the gate calls at start-up, so a broken scenario file stops
the run with exit 3 before any check runs.
"""

from __future__ import annotations

from releasegate.scenarios.loader import ScenarioSuite, load_scenarios

__all__ = ["ScenarioSuite", "load_scenarios"]
