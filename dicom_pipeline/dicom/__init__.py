"""Reading DICOM headers with pydicom."""
