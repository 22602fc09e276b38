"""The `taleweaver` command line."""
