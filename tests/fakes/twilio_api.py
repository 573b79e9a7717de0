"""A local HTTP server that speaks Twilio's REST wire format, for the boundary we cannot reach.

It implements what Switchboard calls — creating a message, listing messages (To, From, DateSent>
filters), updating a call, fetching the media of an inbound message or fax — with Twilio's URLs,
HTTP Basic auth (Account SID and auth token), form-encoded requests and JSON answers, including
Twilio's error body. Tests point the product at it with TWILIO_API_BASE_URL; the product's own
twilio client code runs unchanged.
"""

import base64
import contextlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MESSAGES = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json$")
CALL = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Calls/(CA[0-9a-f]{32})\.json$")
MEDIA = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages/(MM[0-9a-f]{32})/Media/(ME[0-9a-f]{32})$")
# The Fax API (fax.twilio.com/v1) names no account in its paths: the credentials say whose fax it is.
FAX_MEDIA = re.compile(r"^/v1/Faxes/(FX[0-9a-f]{32})/Media/(ME[0-9a-f]{32})$")


@dataclass
class RecordedRequest:
    method: str
    path: str
    account_sid: str
    form: dict[str, list[str]]

    def field(self, name: str) -> str:
        return self.form.get(name, [""])[0]

    @property
    def media_urls(self) -> list[str]:
        """Every MediaUrl sent, in order: Twilio takes one parameter per file and fetches each URL."""
        return self.form.get("MediaUrl", [])


@dataclass
class FakeTwilioApi:
    """Accounts it knows (SID → auth token), what it received, and failures to inject."""

    accounts: dict[str, str]
    requests: list[RecordedRequest] = field(default_factory=list)
    # Each queued failure answers one request: (HTTP status, Twilio error code, message).
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    # Media files it serves, by path: (content type, bytes).
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # Which account each fax media path belongs to.
    fax_owners: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering a message being created, after it was taken (as Twilio has
    # it from then on): a client that dies meanwhile leaves a message sent that it never heard of.
    answer_delay: float = 0.0
    # Every message created (the resources the list endpoint serves), oldest first.
    messages: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "FakeTwilioApi":
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                api._handle(self)

            def do_GET(self):
                if MESSAGES.match(self.path.split("?")[0]):
                    return api._list_messages(self)
                api._serve_media(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, status: int, code: int, message: str, times: int = 1) -> None:
        with self._lock:
            self.failures.extend([(status, code, message)] * times)

    def add_media(self, account_sid: str, content_type: str, content: bytes) -> str:
        """Serve a file as Twilio serves inbound media; returns its URL."""
        path = f"/2010-04-01/Accounts/{account_sid}/Messages/MM{secrets.token_hex(16)}/Media/ME{secrets.token_hex(16)}"
        self.media[path] = (content_type, content)
        return self.base_url + path

    def add_fax_media(self, account_sid: str, content: bytes) -> tuple[str, str]:
        """Serve a received fax's PDF as the Fax API does; returns (FaxSid, its media URL)."""
        fax_sid = "FX" + secrets.token_hex(16)
        path = f"/v1/Faxes/{fax_sid}/Media/ME{secrets.token_hex(16)}"
        self.media[path], self.fax_owners[path] = ("application/pdf", content), account_sid
        return fax_sid, self.base_url + path

    def calls_updated(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if CALL.match(r.path)]

    def messages_sent(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and MESSAGES.match(r.path)]

    def messages_listed(self) -> list[RecordedRequest]:
        """The list requests received (their query parameters as `form`)."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and MESSAGES.match(r.path)]

    # --- the wire format -------------------------------------------------------------------

    def _authenticated_account(self, handler) -> str | None:
        header = handler.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return username if self.accounts.get(username) == password else None

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        form = parse_qs(handler.rfile.read(length).decode(), keep_blank_values=True)
        path = handler.path.split("?")[0]
        account = self._authenticated_account(handler)
        if account is None:
            return self._answer(handler, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        match = MESSAGES.match(path) or CALL.match(path)
        if match is None or match.group(1) != account:
            return self._answer(handler, 404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        with self._lock:
            self.requests.append(RecordedRequest("POST", path, account, form))
            failure = self.failures.pop(0) if self.failures else None
        if failure:
            status, code, message = failure
            return self._answer(
                handler, status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
            )
        if MESSAGES.match(path):
            resource = self._message_resource(account, form)
            sent_at = datetime.now(UTC)  # the fake sends at once: listed as sent from when it was taken
            sent = format_datetime(sent_at, usegmt=True)
            stored = {**resource, "status": "sent", "date_sent": sent, "_sent": sent_at}
            with self._lock:
                self.messages.append(stored)
            if self.answer_delay:
                time.sleep(self.answer_delay)
            return self._answer(handler, 201, resource)
        return self._answer(handler, 200, self._call_resource(account, match.group(2), form))

    def _serve_media(self, handler) -> None:
        path = handler.path.split("?")[0]
        account = self._authenticated_account(handler)
        match = MEDIA.match(path)
        owner = match.group(1) if match else self.fax_owners.get(path) if FAX_MEDIA.match(path) else None
        if account is None or owner != account:
            status = 401 if account is None else 404
            return self._answer(handler, status, {"code": 20003 if status == 401 else 20404, "status": status})
        with self._lock:
            self.requests.append(RecordedRequest("GET", path, account, {}))
            failure = self.failures.pop(0) if self.failures else None
        if failure:
            return self._answer(handler, failure[0], {"code": failure[1], "message": failure[2], "status": failure[0]})
        if path not in self.media:
            return self._answer(handler, 404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        content_type, content = self.media[path]
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def _list_messages(self, handler) -> None:
        """GET Messages.json: the account's messages, newest first, filtered as Twilio filters them
        (To, From exact; DateSent / DateSent< / DateSent> a day YYYY-MM-DD or a time
        YYYY-MM-DDTHH:MM:SSZ, inclusive, on date_sent); one page (PageSize, default 50)."""
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        account = self._authenticated_account(handler)
        match = MESSAGES.match(parts.path)
        if account is None:
            return self._answer(handler, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        if match.group(1) != account:
            return self._answer(
                handler, 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
            )
        with self._lock:
            self.requests.append(RecordedRequest("GET", parts.path, account, query))
            failure = self.failures.pop(0) if self.failures else None
            listed = [m for m in reversed(self.messages) if m["account_sid"] == account]
        if failure:
            return self._answer(handler, failure[0], {"code": failure[1], "message": failure[2], "status": failure[0]})
        one = {name: values[0] for name, values in query.items()}
        if "To" in one:
            listed = [m for m in listed if m["to"] == one["To"]]
        if "From" in one:
            listed = [m for m in listed if m["from"] == one["From"]]
        for name, keep in (("DateSent", _same_day), ("DateSent>", _on_or_after), ("DateSent<", _on_or_before)):
            if name in one:
                listed = [m for m in listed if m["_sent"] is not None and keep(m["_sent"], one[name])]
        page_size = int(one.get("PageSize", 50))
        uri = f"/2010-04-01/Accounts/{account}/Messages.json"
        return self._answer(handler, 200, {
            "messages": [{k: v for k, v in m.items() if k != "_sent"} for m in listed[:page_size]],
            "end": min(page_size, len(listed)) - 1, "first_page_uri": uri, "next_page_uri": None, "page": 0,
            "page_size": page_size, "previous_page_uri": None, "start": 0, "uri": uri,
        })  # fmt: skip

    def _message_resource(self, account: str, form: dict[str, list[str]]) -> dict:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return {
            "sid": sid,
            "account_sid": account,
            "to": form.get("To", [""])[0],
            "from": form.get("From", [""])[0],
            "body": form.get("Body", [""])[0],
            "status": "queued",
            "num_media": str(len(form.get("MediaUrl", []))),
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "messaging_service_sid": None,
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"},
        }

    def _call_resource(self, account: str, call_sid: str, form: dict[str, list[str]]) -> dict:
        return {
            "sid": call_sid,
            "account_sid": account,
            "status": "in-progress",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{call_sid}.json",
        }

    @staticmethod
    def _answer(handler, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up or died
            handler.wfile.write(payload)


def _filter_time(value: str) -> tuple[datetime, bool]:
    """A DateSent filter's time and whether it names a whole day."""
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC), True
    return datetime.fromisoformat(value), False


def _same_day(sent: datetime, value: str) -> bool:
    return sent.date() == _filter_time(value)[0].date()


def _on_or_after(sent: datetime, value: str) -> bool:
    moment, whole_day = _filter_time(value)
    return sent.date() >= moment.date() if whole_day else sent >= moment


def _on_or_before(sent: datetime, value: str) -> bool:
    moment, whole_day = _filter_time(value)
    return sent.date() <= moment.date() if whole_day else sent <= moment
