"""pichat: a chat-room appliance for the Raspberry Pi.

One daemon serves the WebSocket chat and its web page on one port, keeps the
history in SQLite and speaks systemd's notify protocol.
"""

from __future__ import annotations

__version__ = "0.1.0"
