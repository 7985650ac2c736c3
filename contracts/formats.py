"""The file types a document may be: the upload API refuses others, the CLI walks folders for
these, and the chunker has a parser for each."""

SUPPORTED_EXTENSIONS = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})
