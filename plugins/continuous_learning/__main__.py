"""``python -m continuous_learning``: the command line (:mod:`continuous_learning.cli`)."""

# Airflow's plugin loader imports each .py file under its plugins folder as a module named after the
# file, so there this file runs as a module called "__main__" too: only Python's -m runs the CLI.
if __name__ == "__main__" and __spec__ is not None and __spec__.name == "continuous_learning.__main__":
    import sys

    from continuous_learning.cli import main

    sys.exit(main())
