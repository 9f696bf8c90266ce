"""stratum's version, in a module of its own so that core modules can read it without
importing the ``stratum`` package facade (see tests/test_layers.py)."""

__version__ = "0.1.0"
