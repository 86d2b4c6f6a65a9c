"""Programs run from the repository root against conveyor, e.g. `python -m bench.engine`."""
