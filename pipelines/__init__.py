"""The module ``luigi --module pipelines`` loads: Forge's tasks, re-exported.

Importing it is the entry point of the ``luigi`` command, so it also sets what that
command needs process-wide (exit codes, one-line errors, quiet frameworks); importing
``tasks`` alone changes nothing global.
"""

from tasks import BuildModel, Evaluate, LoadTrained, PrepareData, Sweep, Train
from tasks.entry import setup_luigi_command

setup_luigi_command()

__all__ = ["BuildModel", "Evaluate", "LoadTrained", "PrepareData", "Sweep", "Train"]
