import pytest

from studio.errors import InvalidInput
from studio.formdata import nest, split_key


def test_astria_multipart_fields_nest():
    pairs = [
        ("tune[title]", "Jane"),
        ("tune[images][]", "a.jpg"),
        ("tune[images][]", "b.jpg"),
        ("tune[prompts_attributes][][text]", "ohwx woman holding flowers"),
        ("tune[prompts_attributes][][super_resolution]", "true"),
        ("tune[prompts_attributes][][text]", "ohwx woman on a beach"),
        ("tune[characteristics][eye_color]", "blue eyes"),
    ]
    assert nest(pairs) == {
        "tune": {
            "title": "Jane",
            "images": ["a.jpg", "b.jpg"],
            "prompts_attributes": [
                {"text": "ohwx woman holding flowers", "super_resolution": "true"},
                {"text": "ohwx woman on a beach"},
            ],
            "characteristics": {"eye_color": "blue eyes"},
        }
    }


@pytest.mark.parametrize("key", ["[x]", "tune[title", "tune]x[", "tune[a]]"])
def test_malformed_keys_are_refused(key):
    with pytest.raises(InvalidInput):
        split_key(key)


def test_mixing_list_and_value_is_refused():
    with pytest.raises(InvalidInput):
        nest([("tune[images]", "x"), ("tune[images][]", "y")])
