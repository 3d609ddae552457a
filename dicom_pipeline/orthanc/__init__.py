"""Orthanc REST client."""
