"""The static source fingerprints of ``forge ls`` agree with the registry's own."""

from __future__ import annotations

from tasks import registry
from tasks.store.codecheck import static_fingerprint


def test_static_fingerprint_matches_every_registered_entry() -> None:
    registry.load_plugins()
    entries = list(registry._registry.values())
    assert len(entries) > 5
    for entry in entries:
        assert static_fingerprint(entry.qualname) == entry.fingerprint(), entry.qualname


def test_unknown_function_has_no_fingerprint() -> None:
    assert static_fingerprint("tasks.backends.torch_models.no_such_builder") is None
    assert static_fingerprint("no_such_module_anywhere.func") is None
