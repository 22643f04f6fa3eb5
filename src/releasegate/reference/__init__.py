"""The reference deployment: a small but real collaborative coding-assistant service.

It exists to prove the gate: ``releasegate demo`` runs it on loopback, healthy or with faults
from :mod:`releasegate.reference.faults`, and gates it. The checks never import this package;
they talk to the service over the network like to any deployment.
"""
