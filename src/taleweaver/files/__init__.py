"""File-editor sessions: text files in a workspace's folder, edited by the user and
by the assistant's proposals, every change an event (issue #20)."""

from taleweaver.files.folder import workspace_folder
from taleweaver.files.service import FileSessions
from taleweaver.files.source import FileSource, revision_seen

__all__ = ["FileSessions", "FileSource", "revision_seen", "workspace_folder"]
