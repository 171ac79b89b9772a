"""The user-facing application: command line, status, demo, report."""
