"""Worker threads of a plain synchronous program sharing one store.

A toy hyper-parameter search: four OS threads each try 25 settings and report
to one ``BlockingSessionStore``, which runs its store on a background event-loop
thread. No locks in this program: the store serialises every call, a
compare-and-swap (``expected_version``) keeps the best score correct when two
threads race, and an atomic batch moves the best score and its owner together.

Run it with ``python examples/threads.py`` (a second or two).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import cast

from sessionactor import (
    BlockingSessionStore,
    ConstraintViolation,
    SessionStoreError,
    VersionConflict,
)

SESSION = "search"
WORKERS = 4
TRIALS = 25

events: Counter[str] = Counter()  # what happened, for the summary
events_lock = threading.Lock()  # the program's own counter needs one; the store does not


def note(event: str) -> None:
    with events_lock:
        events[event] += 1


def count_trial(store: BlockingSessionStore) -> None:
    """Add one to ``trials`` with compare-and-swap: retry if another thread got there first."""
    while True:
        current = store.get_variable(SESSION, "trials")
        try:
            count = cast(int, current.value)
            store.update_variable(SESSION, "trials", count + 1, expected_version=current.version)
            return
        except VersionConflict:
            note("trial count retried after a conflict")


def offer_best(store: BlockingSessionStore, worker: str, score: float) -> None:
    """Make ``score`` the best if it is: score and owner change together, atomically."""
    while True:
        best = store.get_variable(SESSION, "best_score")
        if score <= cast(float, best.value):
            return
        try:
            store.update_variables(
                SESSION,
                {"best_score": score, "best_worker": worker},
                atomic=True,
                expected_versions={"best_score": best.version},
            )
            print(f"  {worker}: new best score {score:.4f}")
            return
        except SessionStoreError:  # AtomicUpdateError: someone else's best came in first
            note("best score retried after a conflict")


def search(store: BlockingSessionStore, worker: str, seed: int) -> None:
    rng = random.Random(seed)
    store.store_worker_session(SESSION, worker)
    for trial in range(TRIALS):
        learning_rate = rng.uniform(0.0001, 0.1)
        score = 1 - abs(learning_rate - 0.042) * rng.uniform(5, 10)
        store.update_variable(SESSION, f"lr_{worker}", learning_rate)
        if trial == 7 and worker == "w2":  # a bug in one worker: the store refuses it
            try:
                store.update_variable(SESSION, "best_score", 1.5)
            except ConstraintViolation as error:
                print(f"  {worker}: the store refused a bad score: {error}")
                note("bad value refused")
        offer_best(store, worker, max(score, 0.0))
        count_trial(store)


def main() -> None:
    started = time.perf_counter()
    with BlockingSessionStore(default_ttl=600) as store:
        store.create_session(SESSION)
        store.register_variable(
            SESSION, "best_score", "float", 0.0, constraints={"min": 0.0, "max": 1.0}
        )
        store.register_variable(SESSION, "best_worker", "string", "nobody")
        store.register_variable(SESSION, "trials", "integer", 0, constraints={"min": 0})
        for index in range(WORKERS):
            store.register_variable(SESSION, f"lr_w{index}", "float", 0.0)

        print(f"== {WORKERS} threads, {TRIALS} trials each, one shared store")
        threads = [
            threading.Thread(target=search, args=(store, f"w{i}", i), name=f"w{i}")
            for i in range(WORKERS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        print("\n== What the store holds")
        trials = store.get_variable(SESSION, "trials")
        best = store.get_variables(SESSION, ["best_score", "best_worker"]).found
        print(f"trials: {trials.value} (version {trials.version}; expected {WORKERS * TRIALS})")
        print(
            f"best: {best['best_score'].value:.4f} by {best['best_worker'].value}, "
            f"changed {best['best_score'].version} times, always together with its owner "
            f"(versions {best['best_score'].version} and {best['best_worker'].version})"
        )
        for variable in store.list_variables(SESSION, "lr_*"):
            print(f"{variable.name}: last tried {variable.value:.4f}, {variable.version} updates")
        print(f"last worker seen: {store.get_session(SESSION).last_worker_id}")
        stats = store.get_stats()
        print(f"calls handled: {stats.commands_processed}")
        for event, count in sorted(events.items()):
            print(f"{event}: {count}")
        assert trials.value == WORKERS * TRIALS
    print(f"\nstore stopped; took {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
