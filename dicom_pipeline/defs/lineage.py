"""Asset specs that draw where study data goes, for the Dagster UI's lineage graph.

The ops log AssetMaterializations against these keys, so each asset's history links to the
study runs that wrote it, without one partition per study.
"""

import dagster as dg

ORTHANC_STUDIES = dg.AssetKey(["orthanc", "studies"])
RAW_STORE = dg.AssetKey(["storage", "raw_dicom"])
METADATA_TABLES = dg.AssetKey(["postgres", "study_metadata"])
EVENTS_TOPIC = dg.AssetKey(["kafka", "dicom_metadata_v1"])
DEAD_LETTER_TOPIC = dg.AssetKey(["kafka", "dicom_metadata_dlq"])

LINEAGE_SPECS = [
    dg.AssetSpec(
        ORTHANC_STUDIES, description="Studies stored in Orthanc (the source).", group_name="dicom", kinds={"orthanc"}
    ),
    dg.AssetSpec(
        RAW_STORE,
        deps=[ORTHANC_STUDIES],
        group_name="dicom",
        kinds={"storage"},
        description="Raw DICOM files at <study uid>/<series uid>/<sop uid>.dcm.",
    ),
    dg.AssetSpec(
        METADATA_TABLES,
        deps=[ORTHANC_STUDIES, RAW_STORE],
        group_name="dicom",
        kinds={"postgres"},
        description="study, series, instance, study_version and outbox rows.",
    ),
    dg.AssetSpec(
        EVENTS_TOPIC,
        deps=[METADATA_TABLES],
        group_name="dicom",
        kinds={"kafka"},
        description="One event per study version (dicom.metadata.v1).",
    ),
    dg.AssetSpec(
        DEAD_LETTER_TOPIC,
        deps=[ORTHANC_STUDIES],
        group_name="dicom",
        kinds={"kafka"},
        description="Dead letters of failed ingestions (dicom.metadata.dlq).",
    ),
]
