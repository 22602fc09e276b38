"""Memory: world memory (the world bible, hybrid recall, extraction and continuity),
lorebooks and rolling summaries. Each is a subpackage; what they share with the
pipeline (context sources, extractors, continuity checkers) is declared in
`taleweaver.domain.pipeline`."""

# Subpackages are imported by name; nothing is re-exported here.
__all__: list[str] = []
