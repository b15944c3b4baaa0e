"""The store with a database against the plain-dict model, stopped and reopened at
random points: a restart changes nothing the model can see.

The machine of ``test_stateful.py`` drives the store; this one adds a rule that
stops the store (cleanly) and starts a new one on the same database file, with
the same fake clock (which also drives the wall clock, so deadlines carry over
exactly). Sessions that expired before the restart are gone after it, counted
as expired, as the sweep would have counted them. Every run starts from a
session that never expires and holds a variable of each kind, so that restarts
always have something to carry.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from conftest import open_store_of
from hypothesis import HealthCheck, settings
from hypothesis.stateful import initialize, rule
from test_stateful import StoreMachine


class DurableStoreMachine(StoreMachine):
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="sessionactor-stateful-"))
        super().__init__()

    def store_options(self) -> dict[str, Any]:
        return {
            **super().store_options(),
            "database": self.directory / "store.sqlite",
            "synchronous": "off",  # a clean stop writes everything; speed matters here
        }

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @initialize()
    def a_session_with_variables(self) -> None:
        self.create_session("a", math.inf)
        for name, kind, value in (("x", "integer", 3), ("y", "float", 0.5), ("z", "string", "ab")):
            self.register_variable("a", name, kind, value)

    @rule()
    def reopen(self) -> None:
        self.run(self.opened.__aexit__(None, None, None))
        model = self.model
        for session_id in [sid for sid in model.sessions if not model.is_live(sid)]:
            model.remove(session_id)  # expired while stopped: the restart sweeps it away
        self.opened = open_store_of(self.kind, **self.store_options())
        self.store = self.run(self.opened.__aenter__())


DurableStoreMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDurableStoreAgainstModel = DurableStoreMachine.TestCase
