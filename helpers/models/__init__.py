"""Models of the book, one module per paper model (each with its config, networks, losses and training spec)."""
