"""Data files: the paper conditions, effective-pathway specs and reference shapes."""
