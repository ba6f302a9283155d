"""Action catalog, game-server proofs, action tokens and the score audit log."""
