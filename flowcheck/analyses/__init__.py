"""The measurements behind every claim: sweeps, curves, accuracy, answer probability, logit lens, pruning."""
