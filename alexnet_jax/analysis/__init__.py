"""Section 6 and 7: what a trained network learned, retrieval, Figure 1, and comparisons of runs."""
