"""The module ``luigi --module pipelines`` loads: Forge's tasks, re-exported."""

from tasks import BuildModel, Evaluate, PrepareData, Train

__all__ = ["BuildModel", "Evaluate", "PrepareData", "Train"]
