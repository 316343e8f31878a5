"""One module per tool, all of the same shape: pure argv builders and output parsers."""
