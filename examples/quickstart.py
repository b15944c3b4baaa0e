"""A tour of sessionactor: sessions, typed variables, versions, batches, export/import.

Run it with ``make demo`` (or ``python examples/quickstart.py`` in the venv).
"""

from __future__ import annotations

import asyncio
import json

from sessionactor import AtomicUpdateError, ConstraintViolation, SessionStore


def say(text: str) -> None:
    print(f"\n== {text}")


async def main() -> None:
    async with SessionStore() as store:  # starts the actor; stops it on exit
        say("A session holds variables; it expires after `ttl` idle seconds")
        session = await store.create_session("experiment-1", ttl=600)
        print(f"created session {session.id!r} (ttl {session.ttl:g} s)")

        say("Register typed variables, with constraints checked on every write")
        temperature_id = await store.register_variable(
            "experiment-1",
            "temperature",
            "float",
            0.7,
            constraints={"min": 0.0, "max": 2.0},
            description="LLM sampling temperature",
        )
        await store.register_variable("experiment-1", "max_tokens", "integer", 256)
        await store.register_variable(
            "experiment-1", "model", "choice", "small", constraints={"choices": ["small", "large"]}
        )
        print(f"temperature has id {temperature_id!r}")

        say("Get a variable by id or by name: the same frozen snapshot")
        by_id = await store.get_variable("experiment-1", temperature_id)
        by_name = await store.get_variable("experiment-1", "temperature")
        print(f"by id: {by_id.value}, by name: {by_name.value}, version {by_name.version}")

        say("Every successful update bumps the version")
        for value in (0.9, 1.1):
            updated = await store.update_variable(
                "experiment-1", "temperature", value, {"reason": "tuning"}
            )
            print(f"temperature = {updated.value} (version {updated.version})")

        say("A value outside the constraints is refused, and nothing changes")
        try:
            await store.update_variable("experiment-1", "temperature", 3.5)
        except ConstraintViolation as error:
            print(f"refused: {error}")
        current = await store.get_variable("experiment-1", "temperature")
        print(f"still {current.value} at version {current.version}")

        say("List variables whose name matches a glob, in registration order")
        for name in ("temp_cpu", "temp_gpu", "memory_mb"):
            await store.register_variable("experiment-1", name, "float", 40.0)
        temps = await store.list_variables("experiment-1", "temp_*")
        print("temp_* ->", [variable.name for variable in temps])

        say("Batch get: found by identifier as given, plus what is missing")
        batch = await store.get_variables("experiment-1", ["temperature", "model", "nope"])
        print(
            {key: variable.value for key, variable in batch.found.items()},
            "missing:",
            batch.missing,
        )

        say("An atomic batch update applies everything or nothing")
        try:
            await store.update_variables(
                "experiment-1", {"max_tokens": 512, "model": "huge"}, atomic=True
            )
        except AtomicUpdateError as error:
            for key, reason in error.errors.items():
                print(f"refused {key}: {reason}")
        max_tokens = await store.get_variable_value("experiment-1", "max_tokens")
        print(f"max_tokens is still {max_tokens}: nothing was applied")

        say("Export to JSON and import into a second session")
        exported = await store.export_variables("experiment-1")
        wire = json.dumps(exported, allow_nan=False)
        await store.create_session("experiment-2")
        count = await store.import_variables("experiment-2", json.loads(wire))
        copy = await store.get_variable("experiment-2", "temperature")
        print(f"imported {count} variables ({len(wire)} bytes of JSON);")
        print(f"experiment-2 temperature = {copy.value}, version {copy.version}, id {copy.id!r}")

        stats = await store.get_stats()
        say("Store statistics")
        print(
            f"{stats.current_sessions} sessions, {stats.current_variables} variables, "
            f"{stats.commands_processed} commands processed"
        )


if __name__ == "__main__":
    asyncio.run(main())
