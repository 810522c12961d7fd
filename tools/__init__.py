"""The repository's commands, run from its root as modules: ``python -m tools.run_all``
(the Makefile's targets call them so). Importable from the tests and the benchmarks the
same way: the repository's root is on ``sys.path`` (pytest's ``pythonpath``; ``-m`` puts
the working directory there)."""
