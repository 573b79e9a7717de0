"""Notes' markdown → safe HTML, mentions and placeholders (pure functions)."""

from html.parser import HTMLParser

import pytest

from conversations.markup import ALLOWED_TAGS, fill_placeholders, mentioned_usernames, render_note_html

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    "<<script>script>alert(1)<</script>/script>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<svg onload=alert(1)>",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    "<a href='jav&#x09;ascript:alert(1)'>x</a>",
    '<iframe src="https://evil.example"></iframe>',
    "<object data=javascript:alert(1)>",
    "<form action=javascript:alert(1)><button>x</button></form>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](jav&#x09;ascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    '[x](https://ok.example "title" onmouseover="alert(1)")',
    "`<script>alert(1)</script>`",
    "```\n<script>alert(1)</script>\n```",
    "<!-- <script>alert(1)</script> -->",
    '<a href="https://ok.example" onclick="alert(1)">x</a>',
]


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parsed(html: str) -> list[tuple[str, dict]]:
    collector = TagCollector()
    collector.feed(html)
    return collector.tags


def test_there_are_enough_payloads():
    assert len(XSS_PAYLOADS) >= 15


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_the_sanitiser_lets_no_script_handler_or_dangerous_url_through(payload):
    html = render_note_html(f"Before {payload} after")
    for tag, attributes in parsed(html):
        assert tag in ALLOWED_TAGS, html
        assert not [name for name in attributes if name.startswith("on") or name in ("style", "src")], html
        for name in ("href", "action", "data"):
            value = (attributes.get(name) or "").strip().lower()
            assert not value or value.startswith(("http://", "https://", "mailto:")), html
    assert "<script" not in html.lower()
    assert "Before" in html and "after" in html  # the text around it survives


def test_markdown_still_renders():
    html = render_note_html("**Refund** sent, see [ticket](https://example.com/t/1)\n\n- one\n- two\n\n`code`")
    assert "<strong>Refund</strong>" in html
    assert '<a href="https://example.com/t/1" rel="noopener noreferrer nofollow">ticket</a>' in html
    assert "<li>one</li>" in html and "<code>code</code>" in html


def test_raw_html_is_shown_as_text_not_rendered():
    assert render_note_html("<b>bold?</b>") == "<p>&lt;b&gt;bold?&lt;/b&gt;</p>"


def test_mentions():
    text = "@acme-agent2 please check with @Sam.Smith, cc @acme-agent2. Mail ada@example.com @x"
    assert mentioned_usernames(text) == ["acme-agent2", "Sam.Smith", "x"]
    assert mentioned_usernames("no one") == []


def test_placeholders_fill_known_names_only_and_never_evaluate():
    values = {"contact.name": "Zoë", "agent.name": "Alex"}
    assert fill_placeholders("Hi {{contact.name}}, I'm {{ agent.name }}.", values) == "Hi Zoë, I'm Alex."
    untouched = "{{contact.phone}} {% load x %} {{ 7*7 }}"
    assert fill_placeholders(untouched, values) == untouched
    assert fill_placeholders("{{contact.name}}", {"contact.name": "{{agent.name}}"}) == "{{agent.name}}"
