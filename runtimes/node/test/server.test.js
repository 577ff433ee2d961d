'use strict';
// Unit tests for the runtime's pure parts; the behaviour over HTTP is the Go contract suite
// (runtimes/contract).
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const rt = require('../server.js');

const fixtures = path.join(__dirname, '../../testdata/fixtures');

test('readConfig: defaults', () => {
  const c = rt.readConfig({});
  assert.equal(c.port, 8080);
  assert.equal(c.codeDir, '/var/skipper/code');
  assert.equal(c.handler, 'handler.js');
  assert.equal(c.timeoutMs, 30000);
  assert.equal(c.maxBody, 6 * 1024 * 1024);
  assert.equal(c.graceMs, 25000);
  assert.equal(c.debug, false);
});

test('readConfig: bad values name the variable, the value and the fix', () => {
  const cases = {
    'timeout not a number': [{ SKIPPER_TIMEOUT: 'abc' }, /SKIPPER_TIMEOUT="abc" is not valid: set a number/],
    'negative timeout': [{ SKIPPER_TIMEOUT: '-1' }, /SKIPPER_TIMEOUT="-1"/],
    'fractional body limit': [{ SKIPPER_MAX_BODY_BYTES: '1.5' }, /SKIPPER_MAX_BODY_BYTES="1.5" is not valid: set an integer/],
    'port too big': [{ PORT: '70000' }, /PORT="70000" is not valid: set a port from 1 to 65535/],
    'handler with a path': [{ SKIPPER_HANDLER: '../etc/passwd' }, /SKIPPER_HANDLER="..\/etc\/passwd" is not valid/],
    'debug typo': [{ SKIPPER_DEBUG: 'yes please' }, /SKIPPER_DEBUG="yes please" is not valid: set 1, true, 0 or false/],
  };
  for (const [name, [env, re]] of Object.entries(cases)) {
    assert.throws(() => rt.readConfig(env), (err) => err instanceof rt.ConfigError && re.test(err.message), name);
  }
});

test('oneLine: one line per call', () => {
  assert.equal(rt.oneLine(['a\nb', 'c\r\nd', { x: 1 }]), 'a\\nb c\\nd { x: 1 }\n');
});

test('parseQuery: repeats become lists, __proto__ stays a key', () => {
  const q = rt.parseQuery('a=1&b=2&b=3&b=4&__proto__=x&e=');
  assert.deepEqual(Object.keys(q), ['a', 'b', '__proto__', 'e']);
  assert.equal(q.a, '1');
  assert.deepEqual(q.b, ['2', '3', '4']);
  assert.equal(Object.getPrototypeOf(q), Object.prototype);
  assert.equal(q.e, '');
});

test('pickRequestId: keeps good ids, replaces bad ones', () => {
  assert.equal(rt.pickRequestId('abc-1.2:3_x'), 'abc-1.2:3_x');
  for (const bad of [undefined, '', 'a b', 'x'.repeat(129), 'a\nb']) {
    assert.match(rt.pickRequestId(bad), /^[0-9a-f-]{36}$/);
  }
});

test('bodyToEvent: by content type', () => {
  const b = (s) => Buffer.from(s);
  assert.deepEqual(rt.bodyToEvent(b('{"a":1}'), 'application/json', false), { a: 1 });
  assert.deepEqual(rt.bodyToEvent(b('[1]'), 'Application/Problem+JSON; charset=utf-8', false), [1]);
  assert.equal(rt.bodyToEvent(b('hi'), 'text/plain', false), 'hi');
  assert.equal(rt.bodyToEvent(Buffer.from([0x63, 0xe9]), 'text/plain; charset=ISO-8859-1', false), 'cé');
  assert.ok(Buffer.isBuffer(rt.bodyToEvent(b('x'), '', false)));
  assert.equal(rt.bodyToEvent(Buffer.alloc(0), 'application/json', false), null);
  assert.deepEqual(rt.bodyToEvent(b('{"e":2}'), 'text/plain', true), { e: 2 });
  assert.throws(() => rt.bodyToEvent(b('{'), 'application/json', false), (e) => e.status === 400 && /not valid JSON/.test(e.message));
  assert.throws(() => rt.bodyToEvent(Buffer.alloc(0), '', true), (e) => e.status === 400 && /event body is empty/.test(e.message));
});

test('toResponse: envelopes and plain values', () => {
  const cases = {
    'envelope object body': [{ statusCode: 201, body: { ok: true } }, [201, undefined, '{"ok":true}', 'application/json; charset=utf-8']],
    'envelope text body': [{ statusCode: 200, body: 'hi' }, [200, undefined, 'hi', 'text/plain; charset=utf-8']],
    'envelope no body': [{ statusCode: 204 }, [204, undefined, Buffer.alloc(0), null]],
    'plain string': ['hi', [200, null, '"hi"', 'application/json; charset=utf-8']],
    'plain undefined': [undefined, [200, null, 'null', 'application/json; charset=utf-8']],
    'plain function': [() => 1, [200, null, 'null', 'application/json; charset=utf-8']],
    'statusCode as a string is data': [{ statusCode: '201' }, [200, null, '{"statusCode":"201"}', 'application/json; charset=utf-8']],
  };
  for (const [name, [value, want]] of Object.entries(cases)) {
    assert.deepEqual(rt.toResponse(value), want, name);
  }
  const circular = {};
  circular.self = circular;
  assert.throws(() => rt.toResponse(circular), /cannot be sent as JSON/);
  assert.throws(() => rt.toResponse({ statusCode: 99 }), /statusCode 99: use an integer from 100 to 599/);
  assert.throws(() => rt.toResponse({ statusCode: 200, headers: 'x' }), /headers that are not an object/);
  assert.throws(() => rt.toResponse({ statusCode: 200, headers: { 'bad name': 'x' } }), /invalid header "bad name"/);
});

test('loadHandler: good and broken files', () => {
  assert.equal(typeof rt.loadHandler(path.join(fixtures, 'main'), 'handler.js').fn, 'function');
  assert.match(rt.loadHandler(path.join(fixtures, 'syntax'), 'handler.js').error, /^SyntaxError: .*\(handler\.js:3\)$/);
  assert.match(rt.loadHandler(path.join(fixtures, 'noexport'), 'handler.js').error, /exports an object with keys \[notTheHandler, handle\], not a function/);
  assert.match(rt.loadHandler(path.join(fixtures, 'importerror'), 'handler.js').error, /^TypeError: .*\(handler\.js:3\)$/);
  assert.match(rt.loadHandler(path.join(fixtures, 'missing'), 'handler.js').error, /does not exist: put the handler in SKIPPER_CODE_DIR/);
});

test('installConsole: log, dir and trace write one line each', () => {
  const { spawnSync } = require('node:child_process');
  const script = `
    const rt = require(${JSON.stringify(path.join(__dirname, '../server.js'))});
    rt.installConsole();
    console.log('a\\nb');
    console.dir({ deep: { nested: { object: [1, 2, 3], more: 'x'.repeat(80) } } });
    console.trace('here');
  `;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  const out = run.stdout;
  const lines = out.split('\n').filter(Boolean);
  const errLines = run.stderr.split('\n').filter(Boolean);
  assert.equal(errLines.length, 1, run.stderr);
  assert.match(errLines[0], /^Trace: here\\n {4}at /);
  assert.equal(lines.length, 2, out);
  assert.equal(lines[0], 'a\\nb');
  assert.match(lines[1], /^\{\\n  deep: .*'x+'.*\}$/);
});

test('main: a runtime that cannot start exits non-zero', () => {
  const { spawnSync } = require('node:child_process');
  const fs = require('node:fs');
  const os = require('node:os');
  // A copy of server.js where no node_modules can be found: express is missing.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skipper-node-'));
  try {
    fs.copyFileSync(path.join(__dirname, '../server.js'), path.join(dir, 'server.js'));
    const env = { PATH: process.env.PATH, PORT: '0', SKIPPER_CODE_DIR: path.join(fixtures, 'main') };
    const run = spawnSync(process.execPath, [path.join(dir, 'server.js')], { encoding: 'utf8', env, timeout: 20000 });
    assert.equal(run.status, 1, `exit status ${run.status}, signal ${run.signal}\n${run.stdout}${run.stderr}`);
    assert.match(run.stdout + run.stderr, /cannot start the runtime.*express/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('decodePath: bytewise, UTF-8 with replacement, like WSGI', () => {
  assert.equal(rt.decodePath('/plain'), '/plain');
  assert.equal(rt.decodePath('/caf%C3%A9/a%20b/%2F'), '/café/a b//');
  assert.equal(rt.decodePath('/%ff%zz%4'), '/\ufffd%zz%4');
});

test('originForm: absolute-form targets become path and query', () => {
  assert.equal(rt.originForm('/a?b=1'), '/a?b=1');
  assert.equal(rt.originForm('http://example.com/abs/p?x=1'), '/abs/p?x=1');
  assert.equal(rt.originForm('*'), '*');
});
