"""Audits of a trained model: membership inference and memorisation, fairness."""
