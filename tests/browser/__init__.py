"""The chat page in public/, driven in Debian's Chromium against a real pichat."""
