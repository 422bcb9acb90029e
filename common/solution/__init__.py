"""Solution-only helpers: the analysis generator and the handout maker (left out of the student handout)."""
