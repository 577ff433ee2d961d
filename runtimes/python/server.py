"""Skipper runtime for inline Python functions.

Loads one handler file and serves it with Flask under gunicorn (sync workers). The contract
(paths, headers, env, responses) is docs/runtimes.md; the same contract suite runs against
this file and runtimes/node/server.js.

Run it as `python server.py`: it configures and starts gunicorn itself, so the environment is
the only configuration.
"""

import builtins
import datetime
import decimal
import importlib.util
import inspect
import json
import math
import os
import re
import signal
import sys
import threading
import traceback
from urllib.parse import parse_qsl

RESERVED_PREFIX = "/.skipper/"
READY_PATH = "/.skipper/ready"
LIVE_PATH = "/.skipper/live"
EVENT_PATH = "/event"
TRIGGER_HEADER = "X-Skipper-Trigger"
EVENT_ID_HEADER = "X-Skipper-Event-Id"
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
BYTES_TYPE = "application/octet-stream"


class ConfigError(Exception):
    """A bad environment value; the message names the variable, the value and the fix."""


class HTTPError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class HandlerTimeout(BaseException):
    """Raised inside a sync handler at SKIPPER_TIMEOUT.

    A BaseException so that the handler's own `except Exception` does not swallow it.
    """


class Config:
    def __init__(self, env):
        def number(name, default, minimum, integer=False):
            raw = env.get(name, "")
            if raw == "":
                return default
            ok = re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*", raw) is not None
            value = float(raw) if ok else None
            if not ok or value < minimum or (integer and value != int(value)):
                kind = "an integer" if integer else "a number"
                raise ConfigError(f"{name}={raw!r} is not valid: set {kind} >= {minimum:g} (default {default})")
            return int(value) if integer else value

        debug = env.get("SKIPPER_DEBUG", "").lower()
        if debug not in ("", "0", "1", "true", "false"):
            raise ConfigError(f"SKIPPER_DEBUG={env.get('SKIPPER_DEBUG')!r} is not valid: set 1, true, 0 or false")
        self.port = number("PORT", 8080, 0, integer=True)
        if self.port > 65535:
            raise ConfigError(f"PORT={env.get('PORT')!r} is not valid: set a port from 1 to 65535")
        self.host = env.get("SKIPPER_HOST") or "0.0.0.0"
        self.code_dir = env.get("SKIPPER_CODE_DIR") or "/var/skipper/code"
        self.handler = env.get("SKIPPER_HANDLER") or "handler.py"
        if "/" in self.handler or self.handler.startswith(".") or not self.handler.endswith(".py"):
            raise ConfigError(
                f"SKIPPER_HANDLER={self.handler!r} is not valid: set a .py file name inside SKIPPER_CODE_DIR, such as handler.py"
            )
        self.function_name = env.get("SKIPPER_FUNCTION_NAME", "")
        self.timeout = number("SKIPPER_TIMEOUT", 30, 0.001)
        self.timeout_text = env.get("SKIPPER_TIMEOUT") or "30"
        self.max_body = number("SKIPPER_MAX_BODY_BYTES", 6 * 1024 * 1024, 0, integer=True)
        self.grace = number("SKIPPER_GRACE_PERIOD", 25, 0)
        self.debug = debug in ("1", "true")
        self.workers = number("SKIPPER_WORKERS", 2, 1, integer=True)


# --- logs ---------------------------------------------------------------------------------


def log(level, msg, request_id=None, **fields):
    """Write one of the runtime's own lines: JSON on stderr, with the request id if any."""
    rec = {"time": _now(), "level": level, "runtime": "python"}
    if request_id:
        rec["requestId"] = request_id
    rec["msg"] = msg
    rec.update(fields)
    # One os.write per line: lines from several workers never interleave.
    os.write(2, (json.dumps(rec, separators=(",", ":"), default=str) + "\n").encode())


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_builtin_print = builtins.print


def one_line(text):
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def _print(*args, sep=" ", end="\n", file=None, flush=False):
    """print that writes exactly one line per call to stdout/stderr, for the log collector."""
    if file is not None and file is not sys.stdout and file is not sys.stderr:
        return _builtin_print(*args, sep=sep, end=end, file=file, flush=flush)
    stream = file if file is not None else sys.stdout
    if stream is None:
        return None
    text = (" " if sep is None else sep).join(str(a) for a in args)
    stream.write(one_line(text) + "\n")
    stream.flush()
    return None


def install_print():
    builtins.print = _print


# --- handler loading --------------------------------------------------------------------


class Handler:
    """The loaded handler, or the reason it did not load."""

    def __init__(self, fn=None, error=None):
        self.fn = fn
        self.error = error
        self.is_async = fn is not None and inspect.iscoroutinefunction(fn)
        self.wants_context = fn is not None and _wants_context(fn)


def _wants_context(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def load_handler(code_dir, name):
    """Import the handler file. Never raises: a broken file leaves the runtime up and unready."""
    path = os.path.join(code_dir, name)
    if not os.path.isfile(path):
        return Handler(
            error=f"{path} does not exist: put the handler in SKIPPER_CODE_DIR ({code_dir}) as SKIPPER_HANDLER ({name})"
        )
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)  # so the handler can import its sibling modules
    modname = os.path.splitext(name)[0]
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        return Handler(error=f"{type(e).__name__}: {e.msg} ({os.path.basename(e.filename or path)}:{e.lineno})")
    except BaseException as e:  # SystemExit or KeyboardInterrupt at import must not stop the worker either
        line = ""
        for frame in reversed(traceback.extract_tb(e.__traceback__)):
            if frame.filename == path:
                line = f" ({name}:{frame.lineno})"
                break
        return Handler(error=one_line(f"{type(e).__name__}: {e}{line}"))
    fn = getattr(module, "handler", None)
    if not callable(fn):
        return Handler(error=f"{name} defines no function named handler: write def handler(event, context=None): ...")
    return Handler(fn=fn)


# --- request to event and context --------------------------------------------------------


class Context(dict):
    """The handler's context: a dict (JSON-friendly) that also allows context.requestId."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def pick_request_id(given):
    if given and REQUEST_ID_RE.match(given):
        return given
    return new_request_id()


_id_pool = b""
_id_at = 0
_id_pid = None


def new_request_id():
    """A random (version 4) UUID, from a per-process pool of random bytes.

    uuid.uuid4() makes a syscall per id; this is cheaper per request. The pool is refilled
    after a fork so two workers never hand out the same ids.
    """
    global _id_pool, _id_at, _id_pid
    if _id_at + 16 > len(_id_pool) or _id_pid != os.getpid():
        _id_pool, _id_at, _id_pid = os.urandom(4096), 0, os.getpid()
    h = _id_pool[_id_at : _id_at + 16].hex()
    _id_at += 16
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


_VARIANT = "89ab"


def wsgi_text(value):
    """WSGI strings carry the raw bytes as latin-1; the runtime speaks UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        return value


def parse_query_string(qs):
    """Each name to a string, or to a list of strings when it repeats."""
    out = {}
    if not qs:
        return out
    for k, v in parse_qsl(wsgi_text(qs), keep_blank_values=True):
        if k in out:
            cur = out[k]
            if isinstance(cur, list):
                cur.append(v)
            else:
                out[k] = [cur, v]
        else:
            out[k] = v
    return out


def environ_headers(environ):
    """Request headers with lower-case names, as Node gives them."""
    out = {}
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            out[k[5:].replace("_", "-").lower()] = v
    if environ.get("CONTENT_TYPE"):
        out["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        out["content-length"] = environ["CONTENT_LENGTH"]
    return out


def media_type(content_type):
    """(lower-case mime type, charset or None) of a Content-Type header."""
    if not content_type:
        return "", None
    parts = content_type.split(";")
    charset = None
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        v = v.strip().strip('"').lower()
        if eq and k.strip().lower() == "charset" and v:
            charset = v
    return parts[0].strip().lower(), charset


# Only UTF-8 (the default) and ISO-8859-1 are honoured, as in the Node runtime, whose
# decoder knows other labels than Python's codecs.
LATIN1 = frozenset({"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1"})


def decode_text(data, charset):
    if charset in LATIN1:
        return data.decode("latin-1")
    return data.decode("utf-8", errors="replace")


def body_to_event(data, mimetype, charset, is_event):
    if is_event:
        if not data:
            raise HTTPError(400, "event body is empty: POST /event needs a JSON body")
        return _parse_json(decode_text(data, "utf-8"), "event body")
    if not data:
        return None
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return _parse_json(decode_text(data, charset), f"request body (Content-Type {mimetype})")
    if mimetype.startswith("text/"):
        return decode_text(data, charset)
    return data


def _reject_constant(name):
    # NaN and Infinity are not JSON; Python's parser would accept them, JavaScript's does not.
    raise ValueError(f"{name} is not a JSON value")


def _parse_json(text, what):
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise HTTPError(400, f"{what} is not valid JSON ({e}): send valid JSON or another Content-Type") from None
    except RecursionError:
        raise HTTPError(400, f"{what} is nested too deeply: flatten the JSON") from None


def read_body(stream, content_length, limit):
    """Read the body up to limit bytes; past it, 413 without reading the rest."""
    if content_length is not None:
        if content_length > limit:
            raise too_large(limit)
        if content_length == 0:
            return b""
    chunks, size = [], 0
    want = limit + 1 if content_length is None else content_length
    while size < want:
        chunk = stream.read(min(65536, want - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
    return b"".join(chunks)


def read_wsgi_body(environ, limit):
    raw = environ.get("CONTENT_LENGTH")
    length = None
    if raw:
        try:
            length = int(raw)
        except ValueError:
            raise HTTPError(400, f"Content-Length {raw!r} is not a number: send the body length in bytes") from None
    elif not environ.get("wsgi.input_terminated"):
        return b""  # no length and no chunked body: a WSGI app must not read
    return read_body(environ["wsgi.input"], length, limit)


def too_large(limit):
    return HTTPError(413, f"request body is larger than {limit} bytes: send a smaller body or raise SKIPPER_MAX_BODY_BYTES")


# --- return value to response ------------------------------------------------------------


def _json_default(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _finite(value):
    """NaN and infinities become null, as JSON.stringify does in the Node runtime."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(value):
    """JSON text as UTF-8 bytes."""
    try:
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default)
        except ValueError as e:
            if "Out of range float" not in str(e):
                raise
            text = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default)
        try:
            return text.encode()
        except UnicodeEncodeError:
            # A lone surrogate (valid in a JSON string escape) cannot be UTF-8: escape it.
            return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=True).encode()
    except (TypeError, ValueError, RecursionError) as e:
        raise TypeError(
            f"handler returned a value that cannot be sent as JSON ({e}): return dicts, lists, strings, numbers or an envelope with a str body"
        ) from None


def is_envelope(value):
    return isinstance(value, dict) and isinstance(value.get("statusCode"), (int, float)) and not isinstance(
        value.get("statusCode"), bool
    )


def _check_headers(headers):
    out = []
    for name, value in headers.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if not isinstance(name, str) or not HEADER_NAME_RE.match(name):
            raise TypeError(f"handler returned an invalid header {name!r}: header names are letters, digits and !#$%&'*+-.^_`|~")
        for v in values:
            v = str(v).lower() if isinstance(v, bool) else str(v)
            if "\n" in v or "\r" in v or "\0" in v:
                raise TypeError(f"handler returned an invalid header {name!r}: values must not contain CR, LF or NUL")
            out.append((name, v))
    return out


def to_response(value):
    """The handler's return value as (status, [(name, value)], body bytes, default content type)."""
    if is_envelope(value):
        status = value["statusCode"]
        if status != int(status) or not 100 <= status <= 599:
            raise TypeError(f"handler returned statusCode {status}: use an integer from 100 to 599")
        headers = value.get("headers")
        if headers is not None and not isinstance(headers, dict):
            raise TypeError('handler returned headers that are not a dict: use {"name": "value"}')
        header_list = _check_headers(headers) if headers else []
        body = value.get("body")
        if body is None:
            return int(status), header_list, b"", None
        if isinstance(body, str):
            return int(status), header_list, body.encode(errors="replace"), TEXT_TYPE
        if isinstance(body, (bytes, bytearray, memoryview)):
            return int(status), header_list, bytes(body), BYTES_TYPE
        return int(status), header_list, to_json(body), JSON_TYPE
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 200, [], bytes(value), BYTES_TYPE
    return 200, [], to_json(value), JSON_TYPE


# --- calling the handler --------------------------------------------------------------------


def _on_alarm(signum, frame):
    raise HandlerTimeout()


_loop = None
_loop_pid = None


def _event_loop():
    """One event loop per worker process, kept across requests so async clients can be reused."""
    import asyncio

    global _loop, _loop_pid
    if _loop is None or _loop_pid != os.getpid():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
        _loop_pid = os.getpid()
    return _loop


def call_handler(handler, event, context, timeout):
    """Run the handler; raise HandlerTimeout past timeout seconds."""
    args = (event, context) if handler.wants_context else (event,)
    if handler.is_async:
        return _run_coroutine(handler.fn(*args), timeout)
    # Sync workers run each request on the main thread, where SIGALRM can interrupt the
    # handler even inside time.sleep or a blocking socket call.
    global _alarm_pid
    use_alarm = threading.get_ident() == threading.main_thread().ident
    if use_alarm:
        if _alarm_pid != os.getpid():
            signal.signal(signal.SIGALRM, _on_alarm)
            _alarm_pid = os.getpid()
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = handler.fn(*args)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
    # The type check first: inspect.isawaitable is an ABC check, slow for every plain value.
    if type(result) not in _PLAIN_TYPES and inspect.isawaitable(result):
        return _run_coroutine(result, timeout)
    return result


_alarm_pid = None
_PLAIN_TYPES = frozenset({str, dict, list, bytes, int, float, bool, type(None)})


def _run_coroutine(coro, timeout):
    import asyncio

    loop = _event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    except asyncio.TimeoutError:
        raise HandlerTimeout() from None


# --- the Flask app -------------------------------------------------------------------------

_current_request_id = None


def create_app(cfg, handler):
    # Flask is imported here, in each gunicorn worker after the fork, not in the master:
    # the workers import it in parallel, as they do for a plain `gunicorn app:app`.
    from flask import Flask, Response, request

    class RuntimeResponse(Response):
        default_mimetype = None  # an envelope without a body gets no Content-Type

    class RuntimeFlask(Flask):
        def create_url_adapter(self, req):
            # No URL matching for requests: every method and path goes to the handler, so
            # Flask's routing (404s, 405s, slash redirects) never applies.
            if req is not None:
                return None
            return super().create_url_adapter(req)

        def dispatch_request(self):
            return invoke(request.environ)

    app = RuntimeFlask(__name__)

    def respond(status, headers, body, content_type):
        if content_type and not any(k.lower() == "content-type" for k, _ in headers):
            headers = headers + [("Content-Type", content_type)]
        headers.append(("X-Request-Id", _current_request_id or ""))
        return RuntimeResponse(body, status=status, headers=headers)

    def error(status, message, request_id, **extra):
        body = {"error": message}
        body.update(extra)
        body["requestId"] = request_id
        return respond(status, [], to_json(body), JSON_TYPE)

    def reserved(path, request_id):
        if path == LIVE_PATH:
            return respond(200, [], b'{"live":true}', JSON_TYPE)
        if path == READY_PATH:
            if handler.error:
                return respond(503, [], to_json({"ready": False, "error": handler.error}), JSON_TYPE)
            return respond(200, [], b'{"ready":true}', JSON_TYPE)
        return error(
            404,
            f"{path} is not a runtime endpoint: paths under {RESERVED_PREFIX} are reserved ({READY_PATH}, {LIVE_PATH})",
            request_id,
        )

    def invoke(environ):
        global _current_request_id
        request_id = pick_request_id(environ.get("HTTP_X_REQUEST_ID"))
        _current_request_id = request_id
        try:
            return _invoke(environ, request_id)
        finally:
            _current_request_id = None

    def _invoke(environ, request_id):
        # Straight from the WSGI environ: Werkzeug's lazy request properties cost more than
        # the handler call itself for small requests.
        path = wsgi_text(environ.get("PATH_INFO") or "/")
        if path.startswith(RESERVED_PREFIX):
            return reserved(path, request_id)
        if handler.error:
            return error(500, f"handler failed to load: {handler.error}", request_id)
        method = environ["REQUEST_METHOD"]
        trigger = environ.get("HTTP_X_SKIPPER_TRIGGER") if method == "POST" and path == EVENT_PATH else None
        try:
            data = read_wsgi_body(environ, cfg.max_body)
            mimetype, charset = media_type(environ.get("CONTENT_TYPE"))
            event = body_to_event(data, mimetype, charset, bool(trigger))
        except HTTPError as e:
            log("warn", "bad request", request_id, status=e.status, error=str(e))
            return error(e.status, str(e), request_id)
        context = Context(
            method=method,
            path=path,
            query=parse_query_string(environ.get("QUERY_STRING", "")),
            headers=environ_headers(environ),
            trigger=trigger or "http",
            functionName=cfg.function_name,
            requestId=request_id,
            eventId=environ.get("HTTP_X_SKIPPER_EVENT_ID") if trigger else None,
        )
        try:
            value = call_handler(handler, event, context, cfg.timeout)
        except HandlerTimeout:
            log("error", "handler timed out", request_id, timeout=cfg.timeout)
            return error(504, f"handler did not finish within SKIPPER_TIMEOUT ({cfg.timeout_text}s)", request_id)
        except Exception as e:
            message = str(e) or type(e).__name__
            stack = traceback.format_exc()
            log("error", "handler threw", request_id, error=message, type=type(e).__name__, stack=stack)
            extra = {"type": type(e).__name__}
            if cfg.debug:
                extra["stack"] = stack
            return error(500, message, request_id, **extra)
        try:
            status, headers, body, content_type = to_response(value)
        except TypeError as e:
            log("error", "handler returned a bad value", request_id, error=str(e))
            return error(500, str(e), request_id, type="TypeError")
        if status in (204, 304):
            body = b""
        return respond(status, headers, body, content_type)

    return app


def build_app(cfg):
    """Load the handler and build the WSGI app (called in each gunicorn worker)."""
    handler = load_handler(cfg.code_dir, cfg.handler)
    if handler.error:
        log("error", "handler failed to load; staying up but unready", error=handler.error)
    return create_app(cfg, handler)


# --- gunicorn ------------------------------------------------------------------------------


def gunicorn_options(cfg):
    """gunicorn settings; the benchmark starts bare Flask with the same ones."""
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    opts = {
        "bind": f"{host}:{cfg.port}",
        "workers": cfg.workers,
        "worker_class": "sync",
        # gunicorn's own kill switch stays well behind SKIPPER_TIMEOUT, which answers 504.
        "timeout": int(math.ceil(cfg.timeout)) + 30,
        # gunicorn counts whole seconds.
        "graceful_timeout": int(math.ceil(cfg.grace)),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "skipper-python",
    }
    if os.path.isdir("/dev/shm"):
        opts["worker_tmp_dir"] = "/dev/shm"  # heartbeat files off a possibly read-only disk
    return opts


def _post_worker_init(worker):
    # Log the request a SIGTERM finds in flight, then let gunicorn finish it as usual.
    original = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        if _current_request_id:
            log("info", "stopping: finishing the request in flight", _current_request_id)
        if callable(original):
            original(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def _when_ready(server):
    for listener in server.LISTENERS:
        log("info", "listening", address=str(listener), workers=server.num_workers)


def serve(cfg):
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class _Arbiter(Arbiter):
        def kill_workers(self, sig):
            # stop() ends with SIGKILL for workers still busy after graceful_timeout.
            if sig == signal.SIGKILL and self.WORKERS:
                log("warn", "grace period over: dropping requests still in flight", workers=len(self.WORKERS))
            super().kill_workers(sig)

    class _Application(BaseApplication):
        def load_config(self):
            for key, value in gunicorn_options(cfg).items():
                self.cfg.set(key, value)
            self.cfg.set("post_worker_init", _post_worker_init)
            self.cfg.set("when_ready", _when_ready)

        def load(self):
            return build_app(cfg)

        def run(self):
            try:
                _Arbiter(self).run()
            except RuntimeError as e:
                log("error", "gunicorn failed", error=str(e))
                sys.exit(1)

    _Application().run()


def main():
    try:
        cfg = Config(os.environ)
    except ConfigError as e:
        log("error", "bad configuration", error=str(e))
        sys.exit(2)
    sys.dont_write_bytecode = True  # the code directory is a read-only ConfigMap
    install_print()
    serve(cfg)


if __name__ == "__main__":
    main()
