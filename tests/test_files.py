import pytest


def test_put_is_content_addressed_and_idempotent(files):
    first = files.put(b"png bytes", "outputs", ".png")
    assert first == files.put(b"png bytes", "outputs", ".png")
    assert first.startswith("outputs/") and first.endswith(".png")
    assert files.read(first) == b"png bytes"
    assert not list(files.path(first).parent.glob(".tmp-*"))


@pytest.mark.parametrize("relative", ["../secret", "outputs/../../x", "/etc/passwd"])
def test_paths_cannot_leave_the_root(files, relative):
    with pytest.raises(ValueError):
        files.path(relative)


def test_unknown_area_or_suffix_is_refused(files):
    with pytest.raises(ValueError):
        files.put(b"x", "elsewhere", ".png")
    with pytest.raises(ValueError):
        files.put(b"x", "outputs", ".exe")


def test_public_areas_exclude_photos_and_weights(files):
    names = {p.name for p in files.public_dirs()}
    assert "photos" not in names and "weights" not in names and "outputs" in names
