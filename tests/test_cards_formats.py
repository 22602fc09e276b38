"""Card files without a database: PNG chunks, JSON strictness, CHARX defences, and the
V1/V2/V3 normalisation that keeps every unknown key."""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taleweaver.domain.characters import apply_edit, normalise_card, to_v2, to_v3
from taleweaver.domain.errors import InvalidInput, PayloadTooLarge
from taleweaver.interop.cards import detect_format, dump_card, read_card_file
from taleweaver.interop.cards.charx import read_charx, safe_path, write_charx
from taleweaver.interop.cards.png import (
    placeholder_png,
    read_chunks,
    read_png_card,
    write_png_card,
)
from tests.data.cards import factory as f

# --- PNG ----------------------------------------------------------------------------


def test_ccv3_wins_over_chara_when_a_png_has_both() -> None:
    data = f.png_card(chara=f.v2_card("Old name"), ccv3=f.v3_card("New name"))

    found = read_card_file(data)

    assert found.format == "png"
    assert found.card["data"]["name"] == "New name"


def test_a_png_with_only_chara_is_read() -> None:
    found = read_card_file(f.png_card(chara=f.v2_card("Solo")))

    assert found.card["spec"] == "chara_card_v2"
    assert found.card["data"]["name"] == "Solo"


def test_the_image_is_kept_without_its_card_chunks() -> None:
    picture = f.image(colour=b"\x12\x34\x56")
    found = read_png_card(f.png_card(chara=f.v2_card(), picture=picture))

    assert found.image == picture


def test_written_png_carries_v2_in_chara_and_v3_in_ccv3_with_valid_crcs() -> None:
    picture = f.image()
    out = write_png_card(picture, v2_text='{"v": 2}', v3_text='{"v": 3}')

    chunks = read_chunks(out)  # raises on any bad CRC
    texts = {
        c.data.split(b"\x00")[0]: base64.b64decode(c.data.split(b"\x00")[1])
        for c in chunks
        if c.type == b"tEXt"
    }
    assert texts == {b"chara": b'{"v": 2}', b"ccv3": b'{"v": 3}'}
    assert chunks[0].type == b"IHDR" and chunks[-1].type == b"IEND"
    assert read_png_card(out).image == picture


def test_writing_replaces_old_card_chunks_instead_of_adding_more() -> None:
    once = write_png_card(None, v2_text="{}", v3_text="{}")
    twice = write_png_card(once, v2_text='{"a":1}', v3_text='{"a":1}')

    kinds = [c.type for c in read_chunks(twice)]
    assert kinds.count(b"tEXt") == 2


def test_placeholder_is_a_valid_one_pixel_png() -> None:
    chunks = read_chunks(placeholder_png())
    width, height = struct.unpack(">II", chunks[0].data[:8])
    assert (width, height) == (1, 1)
    assert zlib.decompress(chunks[1].data) == b"\x00" + b"\x00" * 4


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (f.png_card(chara=f.v2_card())[:-20], "truncated"),
        (f.image(), "no 'ccv3' or 'chara'"),
        (
            f.image()[:-12] + f.text_chunk("chara", b"@@not base64@@") + f.image()[-12:],
            "base64",
        ),
        (
            f.image()[:-12]
            + f.text_chunk("chara", base64.b64encode(b"\xff\xfe bad utf8"))
            + f.image()[-12:],
            "UTF-8",
        ),
        (
            f.image()[:-12]
            + f.text_chunk("chara", base64.b64encode(b"{not json"))
            + f.image()[-12:],
            "not valid JSON",
        ),
        (f.SIGNATURE + f.chunk(b"IDAT", b"x") + f.chunk(b"IEND", b""), "first chunk"),
        (f.SIGNATURE + f.chunk(b"IHDR", b"x" * 13, crc=1234), "CRC"),
        (f.SIGNATURE + f.chunk(b"IH1R", b"x" * 13), "four letters"),
        (f.SIGNATURE + b"\x00\x00", "truncated"),
    ],
    ids=[
        "truncated",
        "no-card-chunk",
        "base64-garbage",
        "not-utf8",
        "invalid-json",
        "ihdr-not-first",
        "bad-crc",
        "bad-chunk-type",
        "cut-header",
    ],
)
def test_damaged_pngs_are_refused_with_a_reason(data: bytes, detail: str) -> None:
    with pytest.raises(InvalidInput, match=detail):
        read_card_file(data)


# --- JSON ---------------------------------------------------------------------------


def test_a_paired_surrogate_escape_is_an_ordinary_character() -> None:
    found = read_card_file(b'{"name": "smile \\ud83d\\ude00"}')
    assert found.card["name"] == "smile \U0001f600"


def test_format_is_told_from_the_content() -> None:
    assert detect_format(f.png_card(chara=f.v2_card())) == "png"
    assert detect_format(f.charx(f.v3_card())) == "charx"
    assert detect_format(b'\xef\xbb\xbf  {"name": "x"}') == "json"
    with pytest.raises(InvalidInput, match="not a PNG, JSON or CHARX"):
        detect_format(b"GIF89a...")


@pytest.mark.parametrize(
    "text",
    [
        b'{"name": "x", "n": NaN}',
        b'{"name": "x\\u0000y"}',
        b"[" * 100 + b"]" * 100,
        b'{"name": ' + b"9" * 5000 + b"}",
        b'{"name": "x"',
        b'{"name": "\xff"}',
        b'{"name": "x\\ud800y"}',
    ],
    ids=["nan", "nul", "deep", "huge-int", "cut", "not-utf8", "lone-surrogate"],
)
def test_json_that_a_database_would_choke_on_is_refused(text: bytes) -> None:
    with pytest.raises(InvalidInput):
        read_card_file(text)


def test_huge_json_is_refused_as_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALEWEAVER_CARD_MAX_JSON_BYTES", "1000")
    card = f.v2_card(description="x" * 2000)

    with pytest.raises(PayloadTooLarge):
        read_card_file(f.dumps(card))


def test_a_file_over_the_size_limit_is_refused_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TALEWEAVER_CARD_MAX_BYTES", "100")

    with pytest.raises(PayloadTooLarge, match="at most 100"):
        read_card_file(f.png_card(chara=f.v2_card()))


# --- CHARX --------------------------------------------------------------------------


def test_charx_reads_card_and_assets_by_path() -> None:
    card, data = f.charx_card()

    found = read_card_file(data)

    assert found.format == "charx"
    assert found.card == card
    assert set(found.files) == {"assets/icon/images/main.png", "assets/background/images/sea.png"}


def test_charx_written_and_read_back_is_the_same() -> None:
    files = {"assets/icon/images/main.png": f.image(), "assets/other/x.bin": b"\x00\x01"}
    data = write_charx('{"spec":"chara_card_v3"}', files)

    back = read_charx(data)

    assert back.card == b'{"spec":"chara_card_v3"}' and back.files == files


def _zip(entries: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name", ["../evil.png", "assets/../../evil.png", "/etc/passwd", "C:/x.png", "a\\..\\b"]
)
def test_charx_paths_that_leave_the_archive_are_refused(name: str) -> None:
    data = _zip({"card.json": f.dumps(f.v3_card()), name: b"x"})

    with pytest.raises(InvalidInput, match=r"path|climbs|absolute|backslash"):
        read_card_file(data)


def test_safe_path_keeps_ordinary_paths() -> None:
    assert safe_path("assets/icon/images/main.png") == "assets/icon/images/main.png"


def test_a_zip_bomb_is_refused_by_its_ratio() -> None:
    data = _zip({"card.json": f.dumps(f.v3_card()), "assets/x/bomb.bin": b"\x00" * (5 * 2**20)})

    with pytest.raises(InvalidInput, match="zip bomb"):
        read_card_file(data)


def test_an_entry_that_inflates_past_its_declared_size_is_refused() -> None:
    data = bytearray(_zip({"card.json": f.dumps(f.v3_card()), "assets/a.txt": b"A" * 5000}))
    # Lower the declared size in both headers (a lying archive).
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.rindex(signature)
        struct.pack_into("<I", data, at + offset, 10)

    with pytest.raises(InvalidInput, match=r"declared size|damaged"):
        read_card_file(bytes(data))


def test_an_entry_over_the_per_file_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALEWEAVER_CARD_MAX_BYTES", str(50_000))
    data = _zip({"card.json": f.dumps(f.v3_card()), "assets/big.bin": bytes(range(256)) * 400})

    with pytest.raises(PayloadTooLarge):
        read_card_file(data)


def test_too_many_entries_are_refused() -> None:
    entries = {"card.json": f.dumps(f.v3_card())} | {f"assets/x/{i}": b"" for i in range(1001)}

    with pytest.raises(InvalidInput, match="entries"):
        read_card_file(_zip(entries, method=zipfile.ZIP_STORED))


def test_a_charx_without_card_json_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"card\.json"):
        read_card_file(_zip({"assets/icon/a.png": f.image()}))


def test_a_corrupt_zip_is_refused() -> None:
    with pytest.raises(InvalidInput, match="CHARX"):
        read_card_file(b"PK\x03\x04" + b"\x00" * 40)


def test_duplicate_entries_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("card.json", f.dumps(f.v3_card()))
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("card.json", b"{}")

    with pytest.raises(InvalidInput, match="twice"):
        read_card_file(buffer.getvalue())


# --- normalisation ------------------------------------------------------------------


def test_v2_is_normalised_to_v3_keeping_unknown_keys_everywhere() -> None:
    card = normalise_card(f.v2_card())

    assert card.source_spec == "v2"
    assert card.card["spec"] == "chara_card_v3" and card.card["spec_version"] == "3.0"
    assert card.card["x_top"] == "kept"
    assert card.data["x_data_unknown"] == {"kept": True}
    assert card.data["extensions"]["x_unknown"] == [1, 2]
    assert card.data["group_only_greetings"] == []


def test_v1_fields_become_data_and_stay_at_the_top_too() -> None:
    card = normalise_card(f.v1_card())

    assert card.source_spec == "v1"
    assert card.name == "Old Tom"
    assert card.data["first_mes"] == "Arr, {{user}}."
    assert card.card["create_date"] == "2023-1-1"
    assert card.data["tags"] == [] and card.data["system_prompt"] == ""


def test_taleweavers_extension_is_lifted_out_and_put_back_on_export() -> None:
    raw = f.v3_card()
    raw["data"]["extensions"]["taleweaver"] = {"voice": {"engine": "piper"}}

    card = normalise_card(raw)

    assert "taleweaver" not in card.data["extensions"]
    assert card.taleweaver == {"voice": {"engine": "piper"}}
    assert to_v3(card, {"voice": {"engine": "piper"}}) == raw


def test_v2_export_leaves_out_only_v3_fields() -> None:
    raw = f.v3_card(nickname="Ari")
    v2 = to_v2(normalise_card(raw))

    assert v2["spec"] == "chara_card_v2"
    assert "nickname" not in v2["data"] and "group_only_greetings" not in v2["data"]
    assert v2["data"]["x_data_unknown"] == {"kept": True}


@pytest.mark.parametrize(
    ("card", "detail"),
    [
        ([], "JSON object"),
        ({"spec": "chara_card_v9", "data": {}}, "unknown spec"),
        ({"spec": "chara_card_v2", "data": []}, "'data'"),
        ({"spec": "chara_card_v2", "data": {"name": ""}}, "'name'"),
        ({"spec": "chara_card_v2", "data": {"name": "x", "description": 5}}, "description"),
        ({"spec": "chara_card_v2", "data": {"name": "x", "tags": "a,b"}}, "tags"),
        ({"spec": "chara_card_v2", "data": {"name": "x", "extensions": []}}, "extensions"),
        (
            {"spec": "chara_card_v2", "data": {"name": "x", "character_book": {"entries": 3}}},
            "entries",
        ),
        ({"spec": "chara_card_v3", "data": {"name": "x", "assets": [{"type": 1}]}}, "asset"),
        ({"spec": "chara_card_v3", "data": {"name": "x", "creation_date": "today"}}, "seconds"),
    ],
)
def test_cards_with_wrong_shapes_are_refused(card: object, detail: str) -> None:
    with pytest.raises(InvalidInput, match=detail):
        normalise_card(card)


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["nul", "lone-surrogate"])
def test_text_no_database_can_store_is_refused_in_any_field(bad: str) -> None:
    card = f.v2_card()
    card["data"]["extensions"]["deep"] = [{"x": [bad]}]
    with pytest.raises(InvalidInput, match="NUL"):
        normalise_card(card)
    with pytest.raises(InvalidInput, match="NUL"):
        apply_edit(normalise_card(f.v2_card()), {"description": bad})


def test_null_text_fields_read_as_empty() -> None:
    card = normalise_card({"spec": "chara_card_v2", "data": {"name": "x", "scenario": None}})
    assert card.data["scenario"] == ""


def test_an_edit_is_checked_like_an_import_and_keeps_unknown_keys() -> None:
    card = normalise_card(f.v2_card())

    edited = apply_edit(card, {"description": "New.", "tags": ["a"]})

    assert edited.data["description"] == "New." and edited.tags == ["a"]
    assert edited.data["x_data_unknown"] == {"kept": True}
    with pytest.raises(InvalidInput, match="cannot be edited"):
        apply_edit(card, {"spec": "x"})
    with pytest.raises(InvalidInput, match="name"):
        apply_edit(card, {"name": ""})


def test_json_of_a_card_round_trips_through_normalisation() -> None:
    card = normalise_card(f.v3_card())
    again = normalise_card(json.loads(json.dumps(to_v3(card))))
    assert again.card == card.card


# --- round trips for any card -------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    max_size=40,
)
_json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_cards = st.fixed_dictionaries(
    {
        "name": _text.filter(lambda s: s.strip() != ""),
        "description": _text,
        "first_mes": _text,
        "alternate_greetings": st.lists(_text, max_size=3),
        "tags": st.lists(_text, max_size=3),
        "extensions": st.dictionaries(_text.filter(lambda k: k != "taleweaver"), _json, max_size=3),
    }
).flatmap(
    lambda data: st.dictionaries(_text.filter(lambda k: k not in data), _json, max_size=2).map(
        lambda unknown: {"spec": "chara_card_v3", "spec_version": "3.0", "data": data | unknown}
    )
)


@given(card=_cards)
def test_any_card_survives_png_json_and_charx_unchanged(card: dict[str, object]) -> None:
    normalised = normalise_card(card)
    text = dump_card(to_v3(normalised))
    files = {
        "png": write_png_card(None, v2_text=dump_card(to_v2(normalised)), v3_text=text),
        "json": text.encode(),
        "charx": write_charx(text, {}),
    }
    for fmt, data in files.items():
        found = read_card_file(data)
        assert found.format == fmt
        assert normalise_card(found.card).card == normalised.card
