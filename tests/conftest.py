"""Shared by the harness's own tests: helper modules live beside this file (loopback.py for
small real HTTP servers, real.py for real components), importable because pytest puts this
folder on sys.path when it loads this conftest."""
