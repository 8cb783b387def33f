"""Evaluation: ranking metrics, baselines, and (later) constrained-decoding evaluation."""
