"""Uploads are stored clean and requests that fail store nothing: photos and pack covers are
re-encoded from their pixels (no comment, EXIF GPS or appended bytes) and served with nosniff;
a tune creation that fails takes back the photos it stored; odd photos get a 4xx naming them."""

import io
import struct

import httpx
import numpy as np
import pytest
from api_helpers import live_studio
from photos import encode, friend
from PIL import Image

from studio.config import Settings
from studio.core import Studio
from studio.errors import NotFound
from studio.packs import PackPromptRequest, PackRequest
from studio.tune_requests import TuneRequest

KEY = "clean-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
COMMENT = b"shot at Jane's home, 12 Hidden Lane"
TRAILER = b"<script>alert(document.cookie)</script>"


def _gps_exif() -> bytes:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 39.0)})
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    return exif.tobytes()


def dirty_jpeg(image: Image.Image, comment: bytes = COMMENT) -> bytes:
    """A JPEG with a comment, EXIF GPS (and an orientation), and bytes appended after its end."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=_gps_exif(), comment=comment)
    return buffer.getvalue() + TRAILER


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment before the image data, and what follows EOI as (0, …)."""
    assert data[:2] == b"\xff\xd8"
    at, found = 2, []
    while True:
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        found.append((marker, data[at + 4 : at + 2 + length]))
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to EOI
            end = data.index(b"\xff\xd9", at)
            found.append((0, data[end + 2 :]))
            return found


def assert_clean_jpeg(data: bytes) -> None:
    segments = jpeg_segments(data)
    markers = {marker for marker, _ in segments}
    assert 0xFE not in markers  # COM
    assert not any(marker == 0xE1 for marker, _ in segments)  # APP1: EXIF (GPS) or XMP
    assert 0xE2 not in markers  # APP2: ICC profile
    assert segments[-1] == (0, b"")  # nothing after the end of the image
    assert COMMENT not in data and TRAILER not in data


def test_a_jpeg_with_a_comment_gps_and_appended_bytes_is_served_back_clean(tmp_path, demo_model_dir):
    original = friend("rachel")
    upload = dirty_jpeg(original)
    assert COMMENT in upload and upload.endswith(TRAILER)  # the upload is dirty
    assert Image.open(io.BytesIO(upload)).getexif().get_ifd(0x8825)[2] == (51.0, 30.0, 26.0)
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(KEY,)) as (url, studio):
        form = {"tune[title]": "Rachel", "tune[name]": "woman", "tune[branch]": "fast"}
        files = [("tune[images][]", ("rachel.jpg", upload, "image/jpeg"))]
        response = httpx.post(f"{url}/tunes", data=form, files=files, headers=AUTH, timeout=60)
        assert response.status_code == 201, response.text
        [link] = response.json()["orig_images"]
        served = httpx.get(link, headers=AUTH)
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert_clean_jpeg(served.content)
        image = Image.open(io.BytesIO(served.content))
        assert image.size == (original.height, original.width)  # the orientation was applied
        assert not image.getexif() and "comment" not in image.info


def test_a_pack_cover_with_gps_and_a_script_is_served_re_encoded(tmp_path, demo_model_dir):
    with live_studio(tmp_path / "home", demo_model_dir, worker=False) as (url, studio):
        pack = studio.create_pack(PackRequest(title="Clean covers", classes=("woman",)))
        request = PackPromptRequest(class_name="woman", text="{{token}} {{name}} in a garden")
        studio.add_pack_prompt(pack["id"], request, image=dirty_jpeg(friend("monica")))
        cover = studio.pack_json(studio.get_pack(pack["id"]), url)["cover_url"]
        served = httpx.get(cover)
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert_clean_jpeg(served.content)
        # A PNG cover with text chunks and a trailer loses both too.
        png = io.BytesIO()
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", COMMENT.decode())
        friend("phoebe").save(png, "PNG", pnginfo=info)
        studio.add_pack_prompt(pack["id"], request, image=png.getvalue() + TRAILER)
        stored = {p["image_path"] for p in studio.store.list_pack_prompts(pack["id"], "woman")}
        [png_path] = [p for p in stored if p.endswith(".png")]
        data = studio.files.read(png_path)
        assert COMMENT not in data and TRAILER not in data and data.endswith(b"IEND\xaeB`\x82")


def test_a_jpeg_with_ten_megabytes_of_comments_is_accepted_clean(tmp_path, demo_model_dir):
    """~10 MB of COM segments (each at its 64 KB maximum) used to make the re-save raise (500)."""
    plain = encode(friend("joey"), "JPEG")
    segment = b"\xff\xfe" + struct.pack(">H", 65535) + b"c" * 65533
    upload = plain[:2] + segment * 160 + plain[2:]
    assert len(upload) > 10_000_000
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(KEY,)) as (url, studio):
        form = {"tune[title]": "Joey", "tune[name]": "man", "tune[branch]": "fast"}
        files = [("tune[images][]", ("joey.jpg", upload, "image/jpeg"))]
        response = httpx.post(f"{url}/tunes", data=form, files=files, headers=AUTH, timeout=120)
        assert response.status_code == 201, response.text
        [link] = response.json()["orig_images"]
        served = httpx.get(link, headers=AUTH).content
        assert_clean_jpeg(served) and len(served) < 500_000


def _stored_files(studio) -> set[str]:
    root = studio.files.root
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tmp"}


def test_a_failed_multi_photo_create_leaves_no_rows_and_no_files(tmp_path, demo_model_dir):
    """A FaceID tune of photos without a face fails after its photos were stored."""
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(KEY,)) as (url, studio):
        [kept], _ = studio.add_photos([("kept.png", encode(_texture(9), "PNG"))])  # stored before
        before_files = _stored_files(studio)
        form = {"tune[title]": "Nobody", "tune[name]": "woman", "tune[model_type]": "faceid"}
        files = [("tune[images][]", (f"t{n}.png", encode(_texture(n), "PNG"), "image/png")) for n in range(3)]
        files.append(("tune[images][]", ("kept.png", encode(_texture(9), "PNG"), "image/png")))
        response = httpx.post(f"{url}/tunes", data=form, files=files, headers=AUTH, timeout=60)
        assert response.status_code == 422 and response.json()["field"] == "images", response.text
        rows = studio.store.db.execute("SELECT id FROM photos").fetchall()
        assert [row[0] for row in rows] == [kept["id"]]  # the photo stored before the request stays
        assert _stored_files(studio) == before_files
        assert studio.store.list_tunes() == []


def test_a_create_refused_after_its_uploads_takes_them_back(studio):
    [kept], _ = studio.add_photos([("kept.jpg", encode(friend("ross")))])
    uploads = [(f"{name}.jpg", encode(friend(name))) for name in ("rachel", "phoebe")]
    with pytest.raises(NotFound) as error:
        studio.create_tune(
            TuneRequest(title="x", name="woman", branch="fast"),
            photos=[*uploads, ("kept.jpg", encode(friend("ross")))],
            photo_ids=[424242],
        )
    assert error.value.field == "photo_ids"
    assert [row[0] for row in studio.store.db.execute("SELECT id FROM photos").fetchall()] == [kept["id"]]
    assert {p.name for p in studio.files.root.joinpath("photos").rglob("*.*")} == {kept["path"].rsplit("/", 1)[1]}
    assert studio.store.list_tunes() == []


def _texture(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (320, 320, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    ("size", "fmt"),
    [((256, 60000), "PNG"), ((65000, 300), "JPEG"), ((300, 65000), "JPEG")],
)
def test_long_narrow_photos_are_refused_with_their_real_size(tmp_path, demo_model_dir, size, fmt):
    image = Image.new("RGB", size, (120, 90, 60))
    data = encode(image, fmt)
    with live_studio(tmp_path / "home", demo_model_dir, worker=False, api_keys=(KEY,)) as (url, studio):
        form = {"tune[title]": "Strip", "tune[name]": "woman", "tune[branch]": "fast"}
        files = [("tune[images][]", (f"strip.{fmt.lower()}", data, f"image/{fmt.lower()}"))]
        response = httpx.post(f"{url}/tunes", data=form, files=files, headers=AUTH, timeout=60)
        assert response.status_code == 422 and response.json()["field"] == "images", response.text
        message = response.json()["error"]
        assert f"strip.{fmt.lower()}" in message and f"{size[0]}x{size[1]}" in message
        assert "8125x38" not in message
        assert studio.store.db.execute("SELECT COUNT(*) FROM photos").fetchone()[0] == 0


def test_an_upload_is_stored_without_any_metadata(tmp_path, demo_model_dir):
    studio = Studio.open(Settings(home=tmp_path / "home"))
    try:
        [row], _ = studio.add_photos([("dirty.jpg", dirty_jpeg(friend("chandler")))])
        assert_clean_jpeg(studio.files.read(row["path"]))
        # The same pixels with another comment are the same stored file.
        [again], _ = studio.add_photos([("again.jpg", dirty_jpeg(friend("chandler"), b"other words"))])
        assert again["id"] != row["id"]
    finally:
        studio.close()
