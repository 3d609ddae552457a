"""dicom-pipeline development tools: the local real-services stack and synthetic studies."""
