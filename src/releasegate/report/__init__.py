"""Reports of a judged run.

verdict.py, summary.py and terminal.py are pure renderers (data in, text out); folder.py owns
the report folder; allure.py is the one adapter to allure-pytest.
"""
