"""Teacher and maintainer tools, never handed out: the handout, the model answers, the grader, the notebooks."""
