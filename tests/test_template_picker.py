"""Template sends with header, body and URL-button parameters: they reach Meta in the shape it
documents, parameters that do not fit the stored template are refused before anything is queued
(the fake Graph API would answer 132000), and in the browser a conversation whose window has
closed is answered with a template picked, filled and previewed in the inbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ACCESS_TOKEN, WebServer, post_webhook, wait_for
from tests.inbox_client import PASSWORD, Inbox, conversation_id, create_operator
from tests.test_templates import CONTACT, sync
from waypost.devtools import payloads
from waypost.devtools.browser import CHROMIUM_FLAGS, chromium_path
from waypost.devtools.fake_graph import FakeGraph
from waypost.devtools.fake_templates import template
from waypost.settings import Settings

expect.set_options(timeout=15_000)

SHIPPING = template(
    "shipping_update",
    header="Order {{1}}",
    body="Hi {{1}}, your parcel {{2}} is on its way.",
    footer="Reply STOP to opt out",
    buttons=[
        {"type": "URL", "text": "Track it", "url": "https://shop.example/track/{{1}}"},
        {"type": "QUICK_REPLY", "text": "Thanks"},
    ],
)
WELCOME = template("welcome_back", body="Hi {{first_name}}, {{shop}} missed you.")
PROMO = template("autumn_sale", category="MARKETING", body="{{1}}: 20% off everything this week.")
FULL = {
    "name": "shipping_update",
    "language": "en_US",
    "header_parameters": ["A-17"],
    "parameters": ["Sheena", "A-17"],
    "button_parameters": [{"index": 0, "text": "A-17"}],
}


def closed_conversation(client: httpx.Client, db: psycopg.Connection, database_url: str, settings: Settings) -> int:
    """The templates synced, a contact who wrote two days ago (the window closed), an operator."""
    assert sync(settings).returncode == 0
    contacts = [{"profile": {"name": "Sheena Nelson"}, "wa_id": CONTACT}]
    body = payloads.dumps(payloads.inbound(payloads.text_message("where is my parcel?"), contacts=contacts))
    assert post_webhook(client, body).status_code == 200
    create_operator(database_url)
    cid = conversation_id(db)
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE id = %s", [cid])
    return cid


def template_sends(fake: FakeGraph) -> list[dict[str, Any]]:
    return [r.body["template"] for r in fake.requests if r.body.get("type") == "template"]


def test_header_body_button_and_named_parameters_reach_meta_as_documented(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker,
) -> None:
    fake_graph.set_templates([SHIPPING, WELCOME])
    cid = closed_conversation(client, db, database_url, settings)
    inbox = Inbox(client)
    url = f"/api/inbox/conversations/{cid}/template"
    shipped = inbox.post(url, {**FULL, "client_key": "tpl-ship-0001"})
    assert shipped.status_code == 202, shipped.text
    named = inbox.post(
        url,
        {"name": "welcome_back", "language": "en_US", "parameters": {"shop": "Lamp & Co", "first_name": "Sheena"}},
    )
    assert named.status_code == 202, named.text
    # what the conversation shows: the message as the contact reads it
    assert shipped.json()["message"]["body"] == (
        "Order A-17\n\nHi Sheena, your parcel A-17 is on its way.\n\nReply STOP to opt out\n"
        "[Track it: https://shop.example/track/A-17]\n[Thanks]"
    )
    start_worker()
    wait_for(db, "SELECT count(*) FROM messages WHERE type = 'template' AND status = 'sent' HAVING count(*) = 2")
    sent = [r for r in fake_graph.accepted() if r.body.get("type") == "template"]
    assert len(sent) == 2 and all(r.body["to"] == CONTACT for r in sent)
    by_name = {r.body["template"]["name"]: r.body["template"] for r in sent}
    assert by_name["shipping_update"] == {
        "name": "shipping_update",
        "language": {"code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "A-17"}],
            },
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A-17"}]},
        ],
    }
    # named parameters go with their names, in the template's order whatever the request's
    assert by_name["welcome_back"]["components"] == [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Sheena", "parameter_name": "first_name"},
                {"type": "text", "text": "Lamp & Co", "parameter_name": "shop"},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("change", "expected_error"),
    [
        ({"parameters": ["Sheena"]}, "takes 2 body, 1 header, 1 button parameter(s); 1 body, 1 header, 1 button given"),
        ({"header_parameters": []}, "takes 2 body, 1 header, 1 button parameter(s); 2 body, 0 header, 1 button given"),
        ({"button_parameters": []}, "takes 2 body, 1 header, 1 button parameter(s); 2 body, 1 header, 0 button given"),
        ({"button_parameters": [{"index": 1, "text": "A-17"}]}, "URL buttons with a parameter are at index 0"),
        ({"parameters": ["Sheena", "   "]}, "body parameter {{2}} is empty"),
        ({"parameters": ["Sheena", "A-17\nA-18"]}, "body parameter {{2}} has a line break"),
        ({"header_parameters": ["x" * 61]}, "header parameter 1 is longer than 60 characters"),
        ({"parameters": {"1": "Sheena", "3": "A-17"}}, "names its body parameters 1, 2; given 1, 3"),
    ],
)
def test_parameters_that_do_not_fit_the_template_are_refused_before_anything_is_queued(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    settings: Settings,
    fake_graph: FakeGraph,
    change: dict[str, Any],
    expected_error: str,
) -> None:
    fake_graph.set_templates([SHIPPING])
    cid = closed_conversation(client, db, database_url, settings)
    refused = Inbox(client).post(f"/api/inbox/conversations/{cid}/template", {**FULL, **change})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "TEMPLATE_PARAMETERS"
    assert expected_error in refused.json()["error"]
    if "takes" in expected_error:  # the counts, for a client to show
        assert refused.json()["expected"] == {"body": 2, "header": 1, "button": 1}
    assert db.execute("SELECT count(*) AS n FROM messages WHERE type = 'template'").fetchone()["n"] == 0  # type: ignore[index]
    assert template_sends(fake_graph) == []


def test_the_fake_graph_api_refuses_a_mismatched_send_with_metas_132000(fake_graph: FakeGraph) -> None:
    """What the pre-check saves us from: Meta refuses the send outright."""
    fake_graph.set_templates([SHIPPING])
    send = {"messaging_product": "whatsapp", "to": CONTACT, "type": "template"}
    short = {
        "name": "shipping_update",
        "language": {"code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}]},
        ],
    }
    with httpx.Client(base_url=fake_graph.url or "", headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}) as graph:
        answer = graph.post("/v25.0/123/messages", json={**send, "template": short})
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == 132000
        assert error["message"] == "(#132000) Number of parameters does not match the expected number of params"
        assert error["error_data"]["details"] == (
            "body: number of localizable_params (1) does not match the expected number of params (2)"
        )
        no_button = {
            **short,
            "components": [
                *short["components"][:1],
                {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "A-17"}]},
            ],
        }
        answer = graph.post("/v25.0/123/messages", json={**send, "template": no_button})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == 132000
        assert answer.json()["error"]["error_data"]["details"].startswith("buttons:")
    assert fake_graph.accepted() == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def signed_in(browser: Browser, web: WebServer) -> Page:
    context = browser.new_context(base_url=web.url, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/inbox/login")
    page.fill("input[name=email]", "op@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{web.url}/inbox")
    return page


def test_a_closed_conversation_is_answered_with_a_template_picked_filled_and_previewed(
    browser: Browser,
    web: WebServer,
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker,
) -> None:
    fake_graph.set_templates([SHIPPING, WELCOME, PROMO])
    cid = closed_conversation(client, db, database_url, settings)
    stop = payloads.dumps(payloads.user_preferences("stop", wa_id=CONTACT))
    assert post_webhook(client, stop).status_code == 200  # the contact stopped marketing
    start_worker()
    page = signed_in(browser, web)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"/inbox/conversations/{cid}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")

    # no text box: the picker is open instead, the marketing template refused with the reason
    expect(page.locator("#reply-form")).to_have_count(0)
    picker = page.locator("#template-picker")
    expect(picker).to_have_attribute("open", "")
    expect(picker.locator("summary")).to_contain_text("24-hour window has closed")
    promo = picker.locator("option[data-name=autumn_sale]")
    expect(promo).to_be_disabled()
    expect(promo).to_contain_text("stopped marketing messages")

    page.select_option("#template-form select[name=template]", label="shipping_update · en_US · utility")
    fields = page.locator("#template-form fieldset:not([disabled])")
    expect(fields).to_have_attribute("data-name", "shipping_update")
    preview = fields.locator("[data-preview]")
    expect(preview.locator(".t-body")).to_have_text("Hi {{1}}, your parcel {{2}} is on its way.")
    fields.get_by_label("Header {{1}}").fill("A-17")
    fields.get_by_label("Body {{1}}").fill("Sheena")
    fields.get_by_label("Body {{2}}").fill("A-17")
    fields.get_by_label("Button “Track it”").fill("A-17")
    expect(preview.locator(".t-header")).to_have_text("Order A-17")
    expect(preview.locator(".t-body")).to_have_text("Hi Sheena, your parcel A-17 is on its way.")
    expect(preview.locator(".t-footer")).to_have_text("Reply STOP to opt out")
    expect(preview.locator(".chip")).to_have_text(["Track it https://shop.example/track/A-17", "Thanks"])
    page.screenshot(path="test-artifacts/template-picker.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # nothing overflows sideways on a phone
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 1100, "height": 900})
    page.click("#template-form button[type=submit]")

    mine = page.locator(".message.author-operator")
    expect(mine).to_have_attribute("data-status", "sent")
    expect(mine.locator(".body")).to_contain_text("Hi Sheena, your parcel A-17 is on its way.")
    expect(mine.locator("[data-template]")).to_be_visible()
    sent = [r for r in fake_graph.accepted() if r.body.get("type") == "template"]
    assert len(sent) == 1
    assert sent[0].body["template"]["components"] == [
        {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "A-17"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A-17"}]},
    ]
    assert len(template_sends(fake_graph)) == 1  # nothing refused or sent twice on the way
    wamid = sent[0].wa_message_id
    assert wamid is not None
    delivered = payloads.status(wamid, "delivered", pricing=payloads.pricing("utility", "regular"))
    assert post_webhook(client, payloads.dumps(payloads.statuses(delivered))).status_code == 200
    expect(mine).to_have_attribute("data-status", "delivered")
    expect(mine.locator("[data-pricing]")).to_be_visible()
    # the form is ready for another: reset, with a fresh key
    expect(page.locator("#template-form select[name=template]")).to_have_value("")
    assert [line for line in console if "Content Security Policy" in line] == []


def test_the_page_offers_the_picker_collapsed_while_the_window_is_open_and_instead_of_the_text_box_once_closed(
    client: httpx.Client, db: psycopg.Connection, database_url: str, settings: Settings, fake_graph: FakeGraph
) -> None:
    fake_graph.set_templates([SHIPPING, PROMO, template("with_photo", body="Hi")])
    fake_graph.templates[-1]["components"].insert(0, {"type": "HEADER", "format": "IMAGE"})
    cid = closed_conversation(client, db, database_url, settings)
    inbox = Inbox(client)
    db.execute("UPDATE conversations SET last_inbound_at = now() WHERE id = %s", [cid])
    opened = inbox.get(f"/inbox/conversations/{cid}").text
    assert '<details id="template-picker" class="template-picker">' in opened and 'id="reply-form"' in opened
    assert "Send a template" in opened
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE id = %s", [cid])
    closed = inbox.get(f"/inbox/conversations/{cid}").text
    assert '<details id="template-picker" class="template-picker" open>' in closed
    assert 'id="reply-form"' not in closed and 'id="file-form"' not in closed
    # the photo template cannot be filled here; the marketing one is allowed until the contact stops it
    assert "with_photo · en_US · utility — refused: cannot be sent from Waypost: its image header" in closed
    assert 'data-name="autumn_sale" data-category="marketing">' in closed
    stop = payloads.dumps(payloads.user_preferences("stop", wa_id=CONTACT))
    assert post_webhook(client, stop).status_code == 200
    refused = inbox.get(f"/inbox/conversations/{cid}").text
    assert 'data-name="autumn_sale" data-category="marketing" disabled' in refused
