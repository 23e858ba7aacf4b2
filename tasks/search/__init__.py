"""Search: an Optuna study behind a sweep file's ``search:`` block (see docs/sweeps.md).

``study`` keeps the study in a journal file under the sweep's folder and owns the trial
life cycle; ``shard`` runs trials as ordinary experiments; ``trial`` is the hook through
which training reports each epoch and learns that its trial is pruned. Optuna is
imported only when a search runs.
"""
