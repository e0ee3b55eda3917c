"""The package version, in one place: `seq2exp.__version__` and setup.cfg (`version = attr: ...`) read it."""
__version__ = "0.2.0"
