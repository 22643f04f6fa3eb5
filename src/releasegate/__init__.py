"""releasegate: deployment validation and gatekeeping — pass / promote / hold / rollback."""

from releasegate._exceptions import ConfigError, InternalError, ProbeError, ProbeTimeout, Problem, ReleasegateError
from releasegate.results import CheckResult, Decision, ExitCode, Finding

__all__ = [
    "CheckResult",
    "ConfigError",
    "Decision",
    "ExitCode",
    "Finding",
    "InternalError",
    "Problem",
    "ProbeError",
    "ProbeTimeout",
    "ReleasegateError",
]
__version__ = "0.1.0"
