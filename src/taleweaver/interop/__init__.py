"""Interop: chats, exports, search with context, workspace bundles and backups.

Character cards live in `interop.cards` (the characters feature)."""
