from releasegate.cli import entry_point

entry_point()
