"""Unit tests for the runtime's pure parts; the behaviour over HTTP is the Go contract suite
(runtimes/contract)."""

import io
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import server  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "../../testdata/fixtures")


def test_config_defaults():
    c = server.Config({})
    assert (c.port, c.code_dir, c.handler) == (8080, "/var/skipper/code", "handler.py")
    assert (c.timeout, c.max_body, c.grace, c.debug, c.workers) == (30, 6 * 1024 * 1024, 25, False, 2)


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SKIPPER_TIMEOUT": "abc"}, "SKIPPER_TIMEOUT='abc' is not valid: set a number"),
        ({"SKIPPER_TIMEOUT": "-1"}, "SKIPPER_TIMEOUT='-1' is not valid"),
        ({"SKIPPER_MAX_BODY_BYTES": "1.5"}, "SKIPPER_MAX_BODY_BYTES='1.5' is not valid: set an integer"),
        ({"SKIPPER_WORKERS": "0"}, "SKIPPER_WORKERS='0' is not valid: set an integer >= 1"),
        ({"PORT": "70000"}, "PORT='70000' is not valid: set a port from 1 to 65535"),
        ({"SKIPPER_HANDLER": "../x.py"}, "SKIPPER_HANDLER='../x.py' is not valid"),
        ({"SKIPPER_HANDLER": "handler.js"}, "SKIPPER_HANDLER='handler.js' is not valid: set a .py file name"),
        ({"SKIPPER_DEBUG": "yes please"}, "SKIPPER_DEBUG='yes please' is not valid: set 1, true, 0 or false"),
    ],
    ids=["timeout-not-a-number", "negative-timeout", "fractional-body", "zero-workers", "port", "handler-path", "handler-ext", "debug"],
)
def test_config_errors_name_variable_value_and_fix(env, message):
    with pytest.raises(server.ConfigError) as e:
        server.Config(env)
    assert message in str(e.value)


def test_print_is_one_line_per_call(capsys):
    server._print("a\nb", "c\r\nd", 3)
    server._print("to err\nx", file=sys.stderr)
    buf = io.StringIO()
    server._print("other\nfile", file=buf)
    out, err = capsys.readouterr()
    assert out == "a\\nb c\\nd 3\n"
    assert err == "to err\\nx\n"
    assert buf.getvalue() == "other\nfile\n"


def test_pick_request_id():
    assert server.pick_request_id("abc-1.2:3_x") == "abc-1.2:3_x"
    for bad in (None, "", "a b", "x" * 129, "a\nb"):
        assert len(server.pick_request_id(bad)) == 36


@pytest.mark.parametrize(
    "data,mimetype,charset,is_event,want",
    [
        (b'{"a":1}', "application/json", None, False, {"a": 1}),
        (b"[1]", "application/problem+json", "utf-8", False, [1]),
        (b"hi", "text/plain", None, False, "hi"),
        (b"c\xe9", "text/plain", "iso-8859-1", False, "c\u00e9"),
        (b"x", "", None, False, b"x"),
        (b"", "application/json", None, False, None),
        (b'{"e":2}', "text/plain", None, True, {"e": 2}),
        (b"hi", "text/plain", "no-such-charset", False, "hi"),
        (b"\x80", "text/plain", "windows-1252", False, "\ufffd"),
    ],
    ids=["json", "plus-json", "text", "latin1", "bytes", "empty", "event", "unknown-charset", "only-latin1-and-utf8"],
)
def test_body_to_event(data, mimetype, charset, is_event, want):
    assert server.body_to_event(data, mimetype, charset, is_event) == want


def test_body_to_event_errors():
    with pytest.raises(server.HTTPError, match="not valid JSON"):
        server.body_to_event(b"{", "application/json", None, False)
    with pytest.raises(server.HTTPError, match="NaN is not a JSON value"):
        server.body_to_event(b"[NaN]", "application/json", None, False)
    with pytest.raises(server.HTTPError, match="nested too deeply"):
        server.body_to_event(b"[" * 100000, "application/json", None, False)
    with pytest.raises(server.HTTPError, match="event body is empty"):
        server.body_to_event(b"", "", None, True)


def test_read_body_limit():
    assert server.read_body(io.BytesIO(b"x" * 10), None, 10) == b"x" * 10
    with pytest.raises(server.HTTPError) as e:
        server.read_body(io.BytesIO(b"x" * 11), None, 10)
    assert e.value.status == 413
    with pytest.raises(server.HTTPError):
        server.read_body(io.BytesIO(b""), 11, 10)  # refused on Content-Length, nothing read


@pytest.mark.parametrize(
    "value,want",
    [
        ({"statusCode": 201, "body": {"ok": True}}, (201, [], b'{"ok":true}', "application/json")),
        ({"statusCode": 200, "body": "hi", "headers": {"X-N": 3, "X-L": ["a", "b"]}}, (200, [("X-N", "3"), ("X-L", "a"), ("X-L", "b")], b"hi", "text/plain; charset=utf-8")),
        ({"statusCode": 204}, (204, [], b"", None)),
        ("hi", (200, [], b'"hi"', "application/json")),
        (None, (200, [], b"null", "application/json")),
        (b"raw", (200, [], b"raw", "application/octet-stream")),
        ({"statusCode": "201"}, (200, [], b'{"statusCode":"201"}', "application/json")),
        ({"statusCode": True}, (200, [], b'{"statusCode":true}', "application/json")),
        ([float("nan"), {"x": float("inf")}], (200, [], b'[null,{"x":null}]', "application/json")),
        ("\ud800", (200, [], b'"\\ud800"', "application/json")),
    ],
    ids=["envelope-json", "envelope-text-headers", "envelope-empty", "string", "none", "bytes", "string-status-is-data", "bool-status-is-data", "nan-and-inf-are-null", "lone-surrogate-escaped"],
)
def test_to_response(value, want):
    assert server.to_response(value) == want


@pytest.mark.parametrize(
    "value,message",
    [
        ({"statusCode": 99}, "statusCode 99: use an integer from 100 to 599"),
        ({"statusCode": 200.5}, "statusCode 200.5"),
        ({"statusCode": 200, "headers": "x"}, "headers that are not a dict"),
        ({"statusCode": 200, "headers": {"bad name": "x"}}, "invalid header 'bad name'"),
        ({"statusCode": 200, "headers": {"X": "a\r\nb"}}, "must not contain CR, LF or NUL"),
        (object(), "cannot be sent as JSON"),
    ],
    ids=["status-range", "status-fraction", "headers-type", "header-name", "header-value", "object"],
)
def test_to_response_errors(value, message):
    with pytest.raises(TypeError, match=message):
        server.to_response(value)


def test_wants_context():
    def one(event):
        pass

    def two(event, context=None):
        pass

    def star(*args):
        pass

    async def async_two(event, context):
        pass

    assert not server._wants_context(one)
    assert server._wants_context(two)
    assert server._wants_context(star)
    assert server._wants_context(async_two)


def test_context_attribute_access():
    c = server.Context(requestId="r1")
    assert c.requestId == "r1" and c["requestId"] == "r1"
    with pytest.raises(AttributeError):
        c.nothing


@pytest.mark.parametrize(
    "fixture,pattern",
    [
        ("syntax", r"^SyntaxError: .*\(handler\.py:3\)$"),
        ("noexport", r"defines no function named handler"),
        ("importerror", r"^AttributeError: .*\(handler\.py:3\)$"),
        ("missing", r"does not exist: put the handler in SKIPPER_CODE_DIR"),
    ],
)
def test_load_handler_errors(fixture, pattern):
    h = server.load_handler(os.path.join(FIXTURES, fixture), "handler.py")
    assert h.fn is None
    assert __import__("re").search(pattern, h.error), h.error


def test_load_handler_async():
    h = server.load_handler(os.path.join(FIXTURES, "async"), "handler.py")
    assert h.error is None and h.is_async and h.wants_context


def test_parse_query_string():
    assert server.parse_query_string("") == {}
    assert server.parse_query_string("a=1&b=2&b=3&b=4&e=&q=a%20b+c") == {"a": "1", "b": ["2", "3", "4"], "e": "", "q": "a b c"}
    # WSGI hands over raw bytes as latin-1; the runtime decodes UTF-8.
    assert server.parse_query_string("caf\u00c3\u00a9=1") == {"caf\u00e9": "1"}


def test_environ_headers():
    env = {"HTTP_X_CUSTOM_THING": "v", "HTTP_HOST": "h", "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "3", "PATH_INFO": "/"}
    assert server.environ_headers(env) == {"x-custom-thing": "v", "host": "h", "content-type": "text/plain", "content-length": "3"}


def test_media_type():
    assert server.media_type(None) == ("", None)
    assert server.media_type('Text/Plain; Charset="ISO-8859-1"') == ("text/plain", "iso-8859-1")


def test_new_request_id_is_a_v4_uuid_and_unique():
    ids = {server.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for i in ids:
        assert __import__("re").fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i), i


def test_read_wsgi_body():
    assert server.read_wsgi_body({"wsgi.input": io.BytesIO(b"abc"), "CONTENT_LENGTH": "3"}, 10) == b"abc"
    assert server.read_wsgi_body({"wsgi.input": io.BytesIO(b"abc")}, 10) == b""  # no length, not chunked
    assert server.read_wsgi_body({"wsgi.input": io.BytesIO(b"abc"), "wsgi.input_terminated": True}, 10) == b"abc"
    with pytest.raises(server.HTTPError, match="Content-Length 'x' is not a number"):
        server.read_wsgi_body({"wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "x"}, 10)
