'use strict';
// Skipper runtime for inline Node.js functions: loads one handler file and serves it over
// HTTP with Express. The contract (paths, headers, env, responses) is docs/runtimes.md; the
// same contract suite runs against this file and runtimes/python/server.py.

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const util = require('node:util');
const crypto = require('node:crypto');

const RESERVED_PREFIX = '/.skipper/';
const READY_PATH = '/.skipper/ready';
const LIVE_PATH = '/.skipper/live';
const EVENT_PATH = '/event';
const TRIGGER_HEADER = 'x-skipper-trigger';
const EVENT_ID_HEADER = 'x-skipper-event-id';
const REQUEST_ID_HEADER = 'x-request-id';
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';
const BYTES_TYPE = 'application/octet-stream';

class ConfigError extends Error {}

// readConfig turns the environment into settings; a bad value names the variable, the value
// and what is accepted, because the runtime is configured by the webhook and by hand.
function readConfig(env) {
  const number = (name, def, { min, integer }) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return def;
    const v = Number(raw);
    if (!/^\s*[0-9]+(\.[0-9]+)?\s*$/.test(raw) || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
      const kind = integer ? 'an integer' : 'a number';
      throw new ConfigError(`${name}=${JSON.stringify(raw)} is not valid: set ${kind} >= ${min} (default ${def})`);
    }
    return v;
  };
  const debugRaw = (env.SKIPPER_DEBUG || '').toLowerCase();
  if (!['', '0', '1', 'true', 'false'].includes(debugRaw)) {
    throw new ConfigError(`SKIPPER_DEBUG=${JSON.stringify(env.SKIPPER_DEBUG)} is not valid: set 1, true, 0 or false`);
  }
  const port = number('PORT', 8080, { min: 0, integer: true });
  if (port > 65535) throw new ConfigError(`PORT=${JSON.stringify(env.PORT)} is not valid: set a port from 1 to 65535`);
  const handler = env.SKIPPER_HANDLER || 'handler.js';
  if (handler.includes('/') || handler.startsWith('.')) {
    throw new ConfigError(`SKIPPER_HANDLER=${JSON.stringify(handler)} is not valid: set a file name inside SKIPPER_CODE_DIR, such as handler.js`);
  }
  return {
    port,
    host: env.SKIPPER_HOST || '0.0.0.0',
    codeDir: env.SKIPPER_CODE_DIR || '/var/skipper/code',
    handler,
    functionName: env.SKIPPER_FUNCTION_NAME || '',
    timeoutMs: number('SKIPPER_TIMEOUT', 30, { min: 0.001 }) * 1000,
    timeoutText: env.SKIPPER_TIMEOUT || '30',
    maxBody: number('SKIPPER_MAX_BODY_BYTES', 6 * 1024 * 1024, { min: 0, integer: true }),
    graceMs: number('SKIPPER_GRACE_PERIOD', 25, { min: 0 }) * 1000,
    debug: debugRaw === '1' || debugRaw === 'true',
  };
}

// --- logs -------------------------------------------------------------------------------

// oneLine keeps a log call on one line so log collectors see one entry per call.
function oneLine(args) {
  return util.format(...args).replace(/\r\n|\n|\r/g, '\\n') + '\n';
}

function installConsole() {
  const out = (...args) => { process.stdout.write(oneLine(args)); };
  const err = (...args) => { process.stderr.write(oneLine(args)); };
  console.log = out;
  console.info = out;
  console.debug = out;
  console.warn = err;
  console.error = err;
  console.dir = (obj, options) => { process.stdout.write(oneLine([util.inspect(obj, options)])); };
  console.trace = (...args) => {
    const stack = new Error().stack.split('\n').slice(2).join('\n');
    process.stderr.write(oneLine([`Trace: ${util.format(...args)}\n${stack}`]));
  };
}

// log writes one of the runtime's own lines: JSON on stderr, with the request id if any.
function log(level, msg, fields) {
  const rec = { time: new Date().toISOString(), level, runtime: 'node' };
  if (fields && fields.requestId) rec.requestId = fields.requestId;
  rec.msg = msg;
  if (fields) {
    for (const k of Object.keys(fields)) if (k !== 'requestId') rec[k] = fields[k];
  }
  process.stderr.write(JSON.stringify(rec) + '\n');
}

// --- handler loading ------------------------------------------------------------------------

// loadHandler returns {fn} or {error}; it never throws, so a broken file leaves the runtime
// up (and unready) instead of crash-looping.
function loadHandler(codeDir, handlerName) {
  const file = path.resolve(codeDir, handlerName);
  if (!fs.existsSync(file)) {
    return { error: `${file} does not exist: put the handler in SKIPPER_CODE_DIR (${codeDir}) as SKIPPER_HANDLER (${handlerName})` };
  }
  let mod;
  try {
    mod = require(file);
  } catch (err) {
    return { error: describeLoadError(err, file) };
  }
  const fn = typeof mod === 'function' ? mod
    : mod && typeof mod.handler === 'function' ? mod.handler
      : mod && typeof mod.default === 'function' ? mod.default : null;
  if (!fn) {
    const got = mod && typeof mod === 'object' ? `an object with keys [${Object.keys(mod).join(', ')}]` : typeof mod;
    return { error: `${handlerName} exports ${got}, not a function: write module.exports = async (event, context) => { ... }` };
  }
  return { fn };
}

function describeLoadError(err, file) {
  if (!(err instanceof Error)) return `${handlerBase(file)} threw ${util.inspect(err)} while loading`;
  let where = '';
  // A SyntaxError's stack starts with "<file>:<line>"; keep the line, drop the rest.
  const first = String(err.stack || '').split('\n', 1)[0];
  const m = /^(.*):(\d+)$/.exec(first);
  if (m) where = ` (${path.basename(m[1])}:${m[2]})`;
  else {
    const at = new RegExp(`${escapeRe(file)}:(\\d+)`).exec(String(err.stack || ''));
    if (at) where = ` (${handlerBase(file)}:${at[1]})`;
  }
  return `${err.name}: ${err.message}${where}`.replace(/\r\n|\n|\r/g, ' ');
}

const handlerBase = (file) => path.basename(file);
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// --- request to event and context -------------------------------------------------------------

function pickRequestId(given) {
  if (typeof given === 'string' && REQUEST_ID_RE.test(given)) return given;
  return crypto.randomUUID();
}

// parseQuery maps each name to a string, or to a list of strings when it repeats.
function parseQuery(search) {
  const out = {};
  if (!search) return out;
  // URLSearchParams drops one leading "?"; give it one so a "?" that is data stays.
  for (const [k, v] of new URLSearchParams(`?${search}`)) {
    if (Object.prototype.hasOwnProperty.call(out, k)) {
      const cur = out[k];
      if (Array.isArray(cur)) cur.push(v);
      else setOwn(out, k, [cur, v]);
    } else {
      setOwn(out, k, v);
    }
  }
  return out;
}

// setOwn avoids "__proto__" in a query changing the object's prototype.
function setOwn(obj, k, v) {
  Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
}

// decodePath percent-decodes bytes, then reads them as UTF-8 with U+FFFD for bad sequences:
// the same result as Python's WSGI path, so both runtimes give handlers the same path.
function decodePath(raw) {
  if (!raw.includes('%')) return raw;
  const bytes = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 && i + 2 < raw.length && isHex(raw.charCodeAt(i + 1)) && isHex(raw.charCodeAt(i + 2))) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      for (const b of Buffer.from(raw[i])) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

function isHex(c) {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

// originForm turns an absolute-form request target (http://host/p?q), which a client may
// send, into /p?q, as gunicorn does for Python.
function originForm(url) {
  if (url.charCodeAt(0) === 0x2f) return url;
  try {
    const u = new URL(url);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}

function mediaType(contentType) {
  if (!contentType) return { mime: '', charset: '' };
  const parts = contentType.split(';');
  const mime = parts[0].trim().toLowerCase();
  let charset = '';
  for (let i = 1; i < parts.length; i++) {
    const eq = parts[i].indexOf('=');
    if (eq === -1) continue;
    const v = parts[i].slice(eq + 1).trim().replace(/^"+|"+$/g, '').toLowerCase();
    if (parts[i].slice(0, eq).trim().toLowerCase() === 'charset' && v) charset = v;
  }
  return { mime, charset };
}

// Only UTF-8 (the default) and ISO-8859-1 are honoured, in both runtimes alike: the label
// sets of Node's TextDecoder and Python's codecs differ (for Node, "iso-8859-1" means
// windows-1252), and anything else is rare in request bodies.
const LATIN1 = new Set(['iso-8859-1', 'iso8859-1', 'latin1', 'latin-1', 'l1']);

function decodeText(buf, charset) {
  return LATIN1.has(charset) ? buf.toString('latin1') : buf.toString('utf8');
}

class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// bodyToEvent turns a request body into the handler's event (docs/runtimes.md).
function bodyToEvent(buf, contentType, isEvent) {
  if (isEvent) {
    if (buf.length === 0) throw new HTTPError(400, 'event body is empty: POST /event needs a JSON body');
    return parseJSON(buf.toString('utf8'), 'event body');
  }
  if (buf.length === 0) return null;
  const { mime, charset } = mediaType(contentType);
  if (mime === 'application/json' || mime.endsWith('+json')) {
    return parseJSON(decodeText(buf, charset), `request body (Content-Type ${mime})`);
  }
  if (mime.startsWith('text/')) return decodeText(buf, charset);
  return buf;
}

function parseJSON(text, what) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HTTPError(400, `${what} is not valid JSON (${err.message}): send valid JSON or another Content-Type`);
  }
}

const EMPTY = Buffer.alloc(0);

// readBody collects the request body up to limit bytes; past it, it answers 413 without
// reading further and without calling the handler.
function readBody(req, limit) {
  const cl = req.headers['content-length'];
  if (cl === undefined && req.headers['transfer-encoding'] === undefined) return Promise.resolve(EMPTY);
  if (cl !== undefined) {
    const n = Number(cl);
    if (n > limit) return Promise.reject(tooLarge(limit));
    if (n === 0) return Promise.resolve(EMPTY);
  }
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    let failed = false;
    req.on('data', (c) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(tooLarge(limit));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => { if (!failed) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)); });
    req.on('error', (err) => { if (!failed) { failed = true; reject(new HTTPError(400, `reading the request body failed: ${err.message}`)); } });
  });
}

function tooLarge(limit) {
  return new HTTPError(413, `request body is larger than ${limit} bytes: send a smaller body or raise SKIPPER_MAX_BODY_BYTES`);
}

// --- return value to response ---------------------------------------------------------------

function isBytes(v) {
  return v instanceof Uint8Array; // Buffer is a Uint8Array
}

function isEnvelope(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !isBytes(v) && typeof v.statusCode === 'number';
}

// toResponse turns a handler's return value into [status, headers, body, defaultType]; it
// throws a TypeError that says what to fix for values that cannot be sent.
function toResponse(value) {
  if (isEnvelope(value)) {
    const status = value.statusCode;
    if (!Number.isInteger(status) || status < 100 || status > 599) {
      throw new TypeError(`handler returned statusCode ${status}: use an integer from 100 to 599`);
    }
    const headers = value.headers;
    if (headers !== undefined && headers !== null && (typeof headers !== 'object' || Array.isArray(headers))) {
      throw new TypeError('handler returned headers that are not an object: use {"name": "value"}');
    }
    if (headers) checkHeaders(headers);
    const body = value.body;
    if (body === undefined || body === null) return [status, headers, EMPTY, null];
    if (typeof body === 'string') return [status, headers, body, TEXT_TYPE];
    if (isBytes(body)) return [status, headers, body, BYTES_TYPE];
    return [status, headers, toJSON(body), JSON_TYPE];
  }
  if (isBytes(value)) return [200, null, value, BYTES_TYPE];
  return [200, null, toJSON(value), JSON_TYPE];
}

function checkHeaders(headers) {
  for (const name of Object.keys(headers)) {
    const v = headers[name];
    if (v === undefined || v === null) continue;
    try {
      http.validateHeaderName(name);
      for (const one of Array.isArray(v) ? v : [v]) http.validateHeaderValue(name, String(one));
    } catch (err) {
      throw new TypeError(`handler returned an invalid header ${JSON.stringify(name)}: ${err.message}`);
    }
  }
}

function toJSON(value) {
  let s;
  try {
    s = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    throw new TypeError(`handler returned a value that cannot be sent as JSON (${err.message}): return plain objects, lists, strings, numbers or an envelope with a string body`);
  }
  return s === undefined ? 'null' : s; // functions and symbols
}

// --- server -------------------------------------------------------------------------------

function createRuntime(cfg) {
  const express = require('express');
  const state = { fn: null, error: null, shuttingDown: false, inFlight: 0 };
  const loaded = loadHandler(cfg.codeDir, cfg.handler);
  if (loaded.error) {
    state.error = loaded.error;
    log('error', 'handler failed to load; staying up but unready', { error: loaded.error });
  } else {
    state.fn = loaded.fn;
  }

  // respond is the single exit of every request, so inFlight stays right.
  function respond(res, status, headers, body, defaultType) {
    state.inFlight--;
    if (res.writableEnded) return;
    res.statusCode = status;
    if (headers) {
      for (const name of Object.keys(headers)) {
        const v = headers[name];
        if (v === undefined || v === null) continue;
        res.setHeader(name, Array.isArray(v) ? v.map(String) : String(v));
      }
    }
    if (state.shuttingDown) res.setHeader('Connection', 'close');
    if (status === 204 || status === 304) {
      res.end();
      return;
    }
    if (defaultType && !res.hasHeader('content-type')) res.setHeader('Content-Type', defaultType);
    res.setHeader('Content-Length', typeof body === 'string' ? Buffer.byteLength(body) : body.length);
    res.end(body);
  }

  function respondError(res, status, message, requestId, extra) {
    const body = { error: message };
    if (extra) Object.assign(body, extra);
    body.requestId = requestId;
    respond(res, status, null, JSON.stringify(body), JSON_TYPE);
  }

  function reserved(req, res, path, requestId) {
    if (path === LIVE_PATH) return respond(res, 200, null, '{"live":true}', JSON_TYPE);
    if (path === READY_PATH) {
      if (state.error) return respond(res, 503, null, JSON.stringify({ ready: false, error: state.error }), JSON_TYPE);
      if (state.shuttingDown) return respond(res, 503, null, '{"ready":false,"error":"shutting down"}', JSON_TYPE);
      return respond(res, 200, null, '{"ready":true}', JSON_TYPE);
    }
    return respondError(res, 404, `${path} is not a runtime endpoint: paths under ${RESERVED_PREFIX} are reserved (${READY_PATH}, ${LIVE_PATH})`, requestId);
  }

  async function handle(req, res) {
    state.inFlight++;
    const requestId = pickRequestId(req.headers[REQUEST_ID_HEADER]);
    res.setHeader('X-Request-Id', requestId);
    const url = originForm(req.url);
    const q = url.indexOf('?');
    const path = decodePath(q === -1 ? url : url.slice(0, q));
    if (path.startsWith(RESERVED_PREFIX)) return reserved(req, res, path, requestId);
    if (state.error) return respondError(res, 500, `handler failed to load: ${state.error}`, requestId);

    const trigger = req.method === 'POST' && path === EVENT_PATH ? req.headers[TRIGGER_HEADER] : undefined;
    let event;
    try {
      const buf = await readBody(req, cfg.maxBody);
      event = bodyToEvent(buf, req.headers['content-type'], Boolean(trigger));
    } catch (err) {
      if (err.status === 413) {
        res.setHeader('Connection', 'close'); // the unread rest of the body makes the connection unusable
        req.resume();
      }
      log('warn', 'bad request', { requestId, status: err.status || 400, error: err.message });
      return respondError(res, err.status || 400, err.message, requestId);
    }
    const context = {
      method: req.method,
      path,
      query: parseQuery(q === -1 ? '' : url.slice(q + 1)),
      headers: req.headers,
      trigger: trigger || 'http',
      functionName: cfg.functionName,
      requestId,
      eventId: trigger && req.headers[EVENT_ID_HEADER] !== undefined ? req.headers[EVENT_ID_HEADER] : null,
    };

    // A timer instead of Promise.race: one allocation less per request, and a late result
    // is simply dropped.
    let finished = false;
    const timer = setTimeout(() => {
      if (finished) return;
      finished = true;
      log('error', 'handler timed out', { requestId, timeout: cfg.timeoutMs / 1000 });
      respondError(res, 504, `handler did not finish within SKIPPER_TIMEOUT (${cfg.timeoutText}s)`, requestId);
    }, cfg.timeoutMs);
    let value;
    try {
      value = state.fn(event, context);
      if (value !== null && typeof value === 'object' && typeof value.then === 'function') value = await value;
    } catch (err) {
      clearTimeout(timer);
      if (finished) return;
      finished = true;
      // Not every thrown value is an Error: strings, plain objects, errors from other realms.
      const isError = err !== null && typeof err === 'object' && typeof err.message === 'string';
      const message = isError ? err.message || String(err.name || 'Error') : String(err);
      const type = isError ? String(err.name || 'Error') : typeof err;
      const stack = isError && err.stack ? String(err.stack) : undefined;
      log('error', 'handler threw', { requestId, error: message, type, stack });
      return respondError(res, 500, message, requestId, cfg.debug ? { type, stack } : { type });
    }
    clearTimeout(timer);
    if (finished) return;
    finished = true;
    let out;
    try {
      out = toResponse(value);
    } catch (err) {
      log('error', 'handler returned a bad value', { requestId, error: err.message });
      return respondError(res, 500, err.message, requestId, { type: 'TypeError' });
    }
    respond(res, out[0], out[1], out[2], out[3]);
  }

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use((req, res) => {
    handle(req, res).catch((err) => {
      log('error', 'runtime error', { error: String(err && err.stack) });
      if (!res.headersSent) res.destroy();
    });
  });
  return { app, state };
}

function main() {
  let cfg;
  try {
    cfg = readConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    log('error', 'bad configuration', { error: err.message });
    process.exit(2);
  }
  installConsole();
  // A stray rejection or exception from one handler call must not kill the requests that
  // are in flight: log it on one line and keep serving.
  process.on('unhandledRejection', (err) => log('error', 'unhandled promise rejection in handler code', { error: String(err && err.stack ? err.stack : err) }));
  process.on('uncaughtException', (err) => log('error', 'uncaught exception in handler code', { error: String(err && err.stack ? err.stack : err) }));

  let runtime;
  try {
    runtime = createRuntime(cfg);
  } catch (err) {
    // E.g. express missing from the image: exit non-zero so the kubelet (and run --local)
    // see a failed start, instead of the uncaught-exception handler above keeping a
    // process with nothing to serve that then exits 0.
    log('error', 'cannot start the runtime', { error: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  }
  const { app, state } = runtime;
  const server = app.listen(cfg.port, cfg.host);
  // Stay above the idle timeout of the proxy in front (KEDA's interceptor) so it never
  // reuses a connection we just closed; let slow handlers finish before the request timeout.
  server.keepAliveTimeout = 65000;
  server.headersTimeout = 66000;
  server.requestTimeout = Math.max(300000, cfg.timeoutMs + 60000);
  server.on('error', (err) => {
    log('error', 'cannot listen', { error: err.message, host: cfg.host, port: cfg.port });
    process.exit(1);
  });
  server.on('listening', () => {
    log('info', 'listening', { host: cfg.host, port: server.address().port, handler: path.join(cfg.codeDir, cfg.handler), ready: !state.error });
  });

  const shutdown = (signal) => {
    if (state.shuttingDown) return;
    state.shuttingDown = true;
    log('info', 'stopping: finishing requests in flight', { signal, inFlight: state.inFlight, gracePeriod: cfg.graceMs / 1000 });
    server.close(() => {
      log('info', 'stopped');
      process.exit(0);
    });
    server.closeIdleConnections();
    setTimeout(() => {
      log('warn', 'grace period over: dropping requests still in flight', { inFlight: state.inFlight });
      process.exit(0);
    }, cfg.graceMs).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

if (require.main === module) main();

module.exports = {
  readConfig, ConfigError, oneLine, installConsole, originForm, loadHandler, pickRequestId, parseQuery, decodePath, mediaType,
  bodyToEvent, toResponse, isEnvelope, createRuntime, HTTPError,
};
