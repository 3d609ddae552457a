"""The stored DICOM JSON is pydicom's `to_json_dict`, element for element, for every file
pydicom ships and for the synthetic studies; the only differences are the documented ones
(NUL characters dropped, bulk data omitted, invalid values kept raw and named in `issues`).

Whatever makes the header faster later must keep these tests green.
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicom_pipeline_dev.seed.synth import SeedPlan, build_instances, plan_studies
from pydicom.data import get_testdata_files

from dicom_pipeline.dicom.header import BULK_DATA_THRESHOLD, _omit_bulk_data, _without_nul, parse_instance
from dicom_pipeline.errors import InvalidDicom
from dicom_pipeline.storage.keys import storage_key, validate_key

TEST_FILES = sorted(Path(f) for f in get_testdata_files("*") if Path(f).is_file())


def _reference(path: Path, without: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """pydicom's own DICOM JSON of the file as the pipeline reads it, less `without` (the
    elements the pipeline flagged as invalid: `to_json_dict` raises on them)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    for key in without:
        del ds[int(key, 16)]
    reference = ds.to_json_dict(bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=_omit_bulk_data)
    return dict(_without_nul(reference))


def test_pydicom_ships_test_files() -> None:
    assert len(TEST_FILES) > 50


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_stored_json_equals_to_json_dict_or_the_file_is_refused_with_a_reason(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the odd files on purpose
        try:
            parsed = parse_instance(path, instance="test-file")
        except InvalidDicom as exc:
            # Refused only for what an instance cannot lack, and said so.
            assert "is missing" in str(exc) or "cannot be parsed" in str(exc), str(exc)
            assert "test-file" in str(exc)
            return
    flagged = {issue[1:10].replace(",", "").upper() for issue in parsed.issues if issue.startswith("(")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = _reference(path, without=flagged)

    assert set(parsed.dicom_json) == set(reference) | flagged
    for key, element in parsed.dicom_json.items():
        if key in flagged:
            # Kept raw (base64 of the bytes in the file), with its VR.
            assert set(element) == {"vr", "InlineBinary"} and base64.b64decode(element["InlineBinary"])
        else:
            assert element == reference[key], key


def test_the_documented_oddities_are_ingested_and_flagged_not_refused() -> None:
    by_name = {p.name: p for p in TEST_FILES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad_vr = parse_instance(by_name["badVR.dcm"], instance="badVR")
        forced = parse_instance(by_name["ExplVR_LitEndNoMeta.dcm"], instance="nometa")
    # An IS of "1A": raw bytes kept, named (no value in the issue: issues reach events).
    assert bad_vr.issues == ("(0028,0008) value invalid for VR IS (ValueError; raw bytes kept)",)
    assert base64.b64decode(bad_vr.dicom_json["00280008"]["InlineBinary"]).strip() == b"1A"
    assert forced.issues == ("no File Meta Information or 'DICM' prefix (read with force=True)",)


def test_an_instance_without_sop_class_uid_is_kept_and_flagged(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_files("CT_small.dcm")[0])
    del ds.SOPClassUID
    path = tmp_path / "no-class.dcm"
    ds.save_as(path, enforce_file_format=False)

    parsed = parse_instance(path, instance="no-class")

    assert parsed.attributes["sop_class_uid"] is None
    assert parsed.issues == ("SOPClassUID is missing",)


def test_a_non_conforming_uid_is_kept_verbatim_flagged_and_gets_a_safe_storage_key(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_files("CT_small.dcm")[0])
    odd = "1.2.840.113619.2.ABC/../x y"
    ds.StudyInstanceUID = odd
    path = tmp_path / "odd.dcm"
    ds.save_as(path)

    parsed = parse_instance(path, instance="odd")

    assert parsed.study.study_instance_uid == odd
    assert parsed.issues == ("StudyInstanceUID does not conform to PS3.5 9.1 (kept verbatim)",)
    key = storage_key(odd, parsed.series.series_instance_uid, parsed.sop_instance_uid)
    assert validate_key(key) == key and ".." not in key and " " not in key
    assert key.startswith("x") and key.split("/")[1] == parsed.series.series_instance_uid
    assert storage_key(odd, "1.2", "1.3") == storage_key(odd, "1.2", "1.3"), "keys are deterministic"


def test_synthetic_studies_json_equals_to_json_dict(tmp_path: Path) -> None:
    plan = SeedPlan(
        studies=3, modalities=("CT", "MR"), series_per_study=2, instances_per_series=2, rows=16, columns=16, seed=7
    )
    checked = 0
    for spec in plan_studies(plan):
        for index, ds in enumerate(build_instances(spec, plan.seed)):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            path = tmp_path / f"{spec.study_uid}-{index}.dcm"
            path.write_bytes(buffer.getvalue())
            parsed = parse_instance(path, instance=path.name)
            assert parsed.issues == ()
            assert parsed.dicom_json == _reference(path)
            checked += 1
    assert checked == 3 * 2 * 2
