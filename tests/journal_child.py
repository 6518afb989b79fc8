"""A process that writes to a store and is then killed: ``python -m tests.journal_child MODE DB``.

It prints one line when it has reached the point the test kills it at (or
its results, for ``fsize``), then waits to be killed. Modes:

- ``reported``: appends messages 1-3 and waits until they are reported (the
  test holds the database's write lock, so they are in the journal only);
- ``deleted``: appends 1 and 2, waits until the database has them, deletes 1
  and waits until that is applied too (the journal still holds both);
- ``fsize``: limits the size of files it writes (``RLIMIT_FSIZE``), so that the
  journal record of message 2 is cut short, and reports what it was told.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import sys
from pathlib import Path

from pichat.history import Deletion, Entry
from pichat.journal import journal_path, read_entries
from pichat.protocol import Message
from pichat.store import Store
from tests.test_store import KEEP_ALL, Recorder, entry


async def main(mode: str, path: Path) -> None:
    recorder = Recorder()
    store = Store(path)
    await store.open()
    store.start(recorder)
    if mode == "reported":
        for number in (1, 2, 3):
            store.append(entry(number))
        await recorder.wait_committed(3)
        print("reported", flush=True)
    elif mode == "deleted":
        store.append(entry(1))
        store.append(entry(2))
        await recorder.wait_committed(2)
        await store.messages_after("lobby", 0, 10)
        store.delete(Deletion("lobby", (1,)))
        await store.messages_after("lobby", 0, 10)
        print("deleted", flush=True)
    elif mode == "fsize":
        store.append(entry(1))
        await recorder.wait_committed(1)
        await store.messages_after("lobby", 0, 10)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a dead process
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        store.append(Entry("lobby", Message(2, 1000, "a", "", "x" * (2 << 20)), None, KEEP_ALL))
        await recorder.wait_failed(1)
        healthy = [store.healthy]
        store.append(entry(3))
        await recorder.wait_committed(2)
        healthy.append(store.healthy)
        stored = [m.id for m in await store.messages_after("lobby", 0, 10)]
        journal = [e.message.id for e in read_entries(journal_path(path))[0]]
        reported = [e.message.id for batch in recorder.committed_batches for e in batch]
        failed = [e.message.id for batch in recorder.failed_batches for e in batch]
        results = {"reported": reported, "failed": failed, "stored": stored, "journal": journal}
        results["healthy"] = healthy
        print(json.dumps(results), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
