"""gradflow: record and analyse the gradient flow of any torch parameters."""
