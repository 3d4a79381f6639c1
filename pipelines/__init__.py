"""Beam PTransforms shared by the batch and the stream jobs, and the pipeline assemblies."""
