"""The module ``luigi --module pipelines`` loads: Forge's tasks, re-exported."""

from tasks import BuildModel, Evaluate, LoadTrained, PrepareData, Sweep, Train

__all__ = ["BuildModel", "Evaluate", "LoadTrained", "PrepareData", "Sweep", "Train"]
