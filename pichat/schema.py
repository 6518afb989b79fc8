"""The history database's schema: one migration script per version.

``PRAGMA user_version`` records the last one applied; :class:`pichat.store.Store`
applies the rest at open, each in its own transaction. Scripts are only ever
appended: a released one never changes.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

#: One script per schema version; ``PRAGMA user_version`` records the last applied.
MIGRATIONS: tuple[str, ...] = (
    # 1: messages per room, and each room's highest id so ids are never reused
    # even after retention dropped every message.
    """
    CREATE TABLE messages (
        room TEXT NOT NULL,
        id INTEGER NOT NULL,
        ms INTEGER NOT NULL,
        name TEXT NOT NULL,
        avatar TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (room, id)
    ) WITHOUT ROWID;
    CREATE TABLE rooms (
        room TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: each room's epoch, the identity of its history ('' until first loaded).
    """
    ALTER TABLE rooms ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
    """,
    # 3: moderation: the moderator badge of a message, and bans (daemon-wide;
    # address and name are keys, '' for none; until_ms 0 = until lifted).
    """
    ALTER TABLE messages ADD COLUMN moderator INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN announcement INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE bans (
        address TEXT NOT NULL,
        name TEXT NOT NULL,
        until_ms INTEGER NOT NULL,
        reason TEXT NOT NULL,
        room TEXT NOT NULL,
        by TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        label TEXT NOT NULL,
        PRIMARY KEY (address, name)
    ) WITHOUT ROWID;
    CREATE TABLE modlog (
        seq INTEGER PRIMARY KEY,
        ms INTEGER NOT NULL,
        room TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 4: small daemon-wide state kept as JSON by key: 'room_rules' (lock, slow
    # mode and mutes per room, so a restart does not lift them).
    """
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
