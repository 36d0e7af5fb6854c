"""QIDO-RS parameters as C-FIND identifiers, and rendered frames (pure)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from huizhen.integration.errors import BadInput
from huizhen.mappings.dicom_qido import MAX_LIMIT, qido_query
from huizhen.mappings.dicom_query import FindQuery, MatchKind, QueryLevel
from huizhen.mappings.dicom_render import NotRenderable, frame_bytes, render_frame
from tests.unit.dicom.conftest import corpus_bytes


def test_study_search_keys_return_fields_and_paging() -> None:
    q = qido_query(QueryLevel.STUDY, [("PatientID", "4MR*"), ("00080020", "20040101-"), ("limit", "5"),
                                      ("offset", "10"), ("includefield", "InstitutionName,00081030"),
                                      ("fuzzymatching", "true")])
    query = FindQuery.from_identifier(q.identifier)
    assert query.level is QueryLevel.STUDY and (q.limit, q.offset) == (5, 10)
    assert query.keys["PatientID"].kind is MatchKind.WILDCARD
    assert query.keys["StudyDate"].kind is MatchKind.RANGE
    assert {"InstitutionName", "StudyDescription", "NumberOfStudyRelatedInstances"} <= set(query.requested)


def test_uid_lists_use_commas_and_path_uids_bind_the_level() -> None:
    q = qido_query(QueryLevel.IMAGE, [("SOPInstanceUID", "1.2.3,1.2.4")], study_uid="1.2", series_uid="1.2.9")
    keys = FindQuery.from_identifier(q.identifier).keys
    assert keys["SOPInstanceUID"].values == ("1.2.3", "1.2.4")
    assert keys["StudyInstanceUID"].values == ("1.2",) and keys["SeriesInstanceUID"].values == ("1.2.9",)
    assert qido_query(QueryLevel.STUDY, [("limit", "100000")]).limit == MAX_LIMIT


@pytest.mark.parametrize("params", [
    [("NoSuchKeyword", "x")], [("limit", "-1")], [("offset", "ten")], [("ffffffff", "x")],
    [("NumberOfStudyRelatedInstances", "many")], [("ReferencedStudySequence", "1")], [("PixelData", "x")],
])
def test_bad_parameters_are_bad_input(params: list[tuple[str, str]]) -> None:
    with pytest.raises(BadInput):
        qido_query(QueryLevel.STUDY, params)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                                  "image_dfl.dcm", "US1_UNCR.dcm"])
def test_decodable_frames_render_as_jpeg_and_png(name: str) -> None:
    data = corpus_bytes(name)
    assert Image.open(io.BytesIO(render_frame(data, 1, "image/jpeg"))).format == "JPEG"
    assert Image.open(io.BytesIO(render_frame(data, 1, "image/png"))).format == "PNG"


@pytest.mark.parametrize(("name", "why"), [
    ("rtplan.dcm", "no pixel data"), ("test-SR.dcm", "no pixel data"), ("MR_truncated.dcm", "cannot be decoded"),
])
def test_what_cannot_be_rendered_says_why(name: str, why: str) -> None:
    with pytest.raises(NotRenderable, match=why):
        render_frame(corpus_bytes(name), 1, "image/jpeg")


def test_frame_out_of_range_and_unknown_media_type() -> None:
    with pytest.raises(BadInput, match="out of range"):
        render_frame(corpus_bytes("CT_small.dcm"), 2, "image/png")
    with pytest.raises(NotRenderable, match="image/gif"):
        render_frame(corpus_bytes("CT_small.dcm"), 1, "image/gif")


def test_frames_are_served_as_stored() -> None:
    [native], syntax = frame_bytes(corpus_bytes("MR_small.dcm"), [1])
    assert syntax is None and len(native) == 64 * 64 * 2
    [rle], syntax = frame_bytes(corpus_bytes("MR_small_RLE.dcm"), [1])
    assert syntax == "1.2.840.10008.1.2.5" and rle != native
    [inflated], _ = frame_bytes(corpus_bytes("image_dfl.dcm"), [1])  # deflate is a dataset encoding only
    assert inflated
    with pytest.raises(BadInput, match="out of range"):
        frame_bytes(corpus_bytes("MR_small.dcm"), [1, 2])
    with pytest.raises(NotRenderable, match="Big Endian"):
        frame_bytes(corpus_bytes("MR_small_bigendian.dcm"), [1])
    with pytest.raises(NotRenderable, match="no pixel data"):
        frame_bytes(corpus_bytes("rtplan.dcm"), [1])
