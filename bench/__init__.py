"""Benchmarks of dicom-pipeline against the real stack."""
