"""Thin: loads the releasegate pytest plugin for the gate suite in checks/.

With the package installed the plugin is already registered by its pytest11 entry point
under the same name, so this line is then a no-op; it matters for a bare checkout.
"""

pytest_plugins = ["releasegate.plugin"]
