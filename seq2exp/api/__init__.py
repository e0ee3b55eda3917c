"""The public Python API; `seq2exp/__init__.py` exports its names lazily."""
