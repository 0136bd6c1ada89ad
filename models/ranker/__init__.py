"""The second stage: rankers behind ``models.inference.CandidateRanker`` (the OnePiece-style transformer and
its training, serving and export)."""
