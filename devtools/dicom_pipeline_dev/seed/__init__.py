"""Synthetic, valid DICOM studies for demos, tests and benchmarks."""
