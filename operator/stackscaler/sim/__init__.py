"""Trace replay through the same policy code the operator runs."""
