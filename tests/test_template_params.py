"""What a stored template asks of a send (waypost/template_params.py): no database, no server."""

from __future__ import annotations

from waypost.devtools.fake_templates import count_mismatch, template
from waypost.template_params import fill, placeholders, segments, shape, value_problem

SHIPPING = template(
    "shipping_update",
    header="Order {{1}}",
    body="Hi {{1}}, parcel {{2}} ({{1}}).",
    footer="Reply STOP to opt out",
    buttons=[
        {"type": "QUICK_REPLY", "text": "Thanks"},
        {"type": "URL", "text": "Track", "url": "https://shop.example/t/{{1}}"},
        {"type": "URL", "text": "Shop", "url": "https://shop.example/"},
    ],
)


def test_placeholders_are_distinct_numbered_in_order_and_named_as_they_appear() -> None:
    assert placeholders("{{2}} then {{10}} then {{1}} and {{2}} again") == ["1", "2", "10"]
    assert placeholders("Hi {{ first_name }}, {{shop}} for {{first_name}}") == ["first_name", "shop"]
    assert placeholders(None) == []


def test_shape_finds_the_header_body_footer_and_the_dynamic_url_button_by_its_index() -> None:
    found = shape(SHIPPING["components"])
    assert (found.header_params, found.body_params, found.footer) == (["1"], ["1", "2"], "Reply STOP to opt out")
    assert [(b.index, b.kind) for b in found.url_buttons] == [(1, "URL")]  # the static URL takes nothing
    assert not found.named and found.unsupported is None
    assert shape([{"type": "BODY", "text": "Hi {{name}}"}]).named
    image = shape([{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hi"}])
    assert image.unsupported and "image header" in image.unsupported
    coupon = shape([{"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "SAVE10"}]}])
    assert coupon.unsupported and "copy code" in coupon.unsupported


def test_segments_and_fill_keep_the_text_around_the_placeholders() -> None:
    assert segments("Hi {{1}}!") == [("Hi ", None), ("{{1}}", "1"), ("!", None)]
    assert fill("Hi {{1}}, {{2}}", {"1": "Ana"}) == "Hi Ana, {{2}}"


def test_values_meta_refuses() -> None:
    assert value_problem("  ", 60) == "is empty"
    assert value_problem("a\tb", 60) and value_problem("a     b", 60) and value_problem("a\nb", 60)
    assert value_problem("a    b", 60) is None  # four spaces are allowed
    assert value_problem("x" * 61, 60) == "is longer than 60 characters"


def test_count_mismatch_names_the_component_like_metas_132000() -> None:
    stored = shape(SHIPPING["components"])
    text = [{"type": "text", "text": "x"}]
    fits = {
        "components": [
            {"type": "header", "parameters": text},
            {"type": "body", "parameters": text * 2},
            {"type": "button", "sub_type": "url", "index": "1", "parameters": text},
        ]
    }
    assert count_mismatch(stored, fits) is None
    no_header = {"components": fits["components"][1:]}
    assert count_mismatch(stored, no_header) == (
        "header: number of localizable_params (0) does not match the expected number of params (1)"
    )
    wrong_button = {"components": [*fits["components"][:2], {**fits["components"][2], "index": "0"}]}
    assert (count_mismatch(stored, wrong_button) or "").startswith("buttons:")
