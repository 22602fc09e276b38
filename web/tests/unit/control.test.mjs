import assert from 'node:assert/strict';
import { test } from 'node:test';

// What the API client throws (web/src/lib/api.ts's ApiError has the same shape).
class ApiError extends Error {
  constructor(status, title, detail, body = {}) {
    super(detail || title);
    Object.assign(this, { status, title, detail, body });
  }
}

import {
  actionLabel,
  dayStarts,
  explain,
  filterAudit,
  formatTokens,
  formatUsd,
  manages,
  perDay,
  refused,
  SECRET_NAME,
  seesUsage,
} from '../../.unit/control-view.js';

test('a day’s spend is the running total since its start less the next day’s', () => {
  assert.deepEqual(perDay([100, 60, 60, 10, 0]), [40, 0, 50, 10, 0]);
  assert.deepEqual(perDay([5]), [5]);
  // a total that shrinks between requests (a race) never draws a negative bar
  assert.deepEqual(perDay([3, 7]), [0, 7]);
});

test('the last seven days start at local midnight, oldest first, ending today', () => {
  const now = new Date(2026, 2, 3, 15, 30); // 3 March
  const days = dayStarts(now, 7);
  assert.equal(days.length, 7);
  assert.deepEqual(
    days.map((d) => [d.getMonth(), d.getDate(), d.getHours()]),
    [[1, 25, 0], [1, 26, 0], [1, 27, 0], [1, 28, 0], [2, 1, 0], [2, 2, 0], [2, 3, 0]],
  );
});

test('refusals are explained calmly, with what to do', () => {
  assert.match(explain(new ApiError(403, 'Forbidden', "role 'player' may not audit.read"), 'the audit log'), /Your role here does not include the audit log\. Ask an owner or admin/);
  assert.match(explain(new ApiError(404, 'Not found', 'workspace x not found'), 'the members'), /^The members could not be found/);
  assert.match(explain(new ApiError(401, 'Unauthorized', ''), 'your keys'), /Sign in again/);
  const invalid = new ApiError(422, 'Invalid', 'bad', { errors: [{ loc: ['body', 'name'], msg: 'String should have at least 1 character' }] });
  assert.equal(explain(invalid, 'x'), 'String should have at least 1 character. Correct it and try again.');
  assert.equal(explain(new ApiError(500, 'Server Error', 'The server had a problem. Try again in a moment.'), 'x'), 'The server had a problem. Try again in a moment.');
  assert.ok(!explain(new ApiError(403, 'Forbidden', "role 'player' may not audit.read"), 'x').includes('audit.read'));
  assert.equal(refused(new ApiError(403, 'Forbidden', '')), true);
  assert.equal(refused(new ApiError(500, 'Oops', '')), false);
  assert.equal(refused(new Error('x')), false);
});

test('roles: who manages, who sees spend', () => {
  assert.deepEqual(['owner', 'admin', 'editor', 'player', null].map(manages), [true, true, false, false, false]);
  assert.deepEqual(['owner', 'admin', 'editor', 'viewer', 'player'].map(seesUsage), [true, true, true, false, false]);
});

test('audit filters match action, actor and text, newest first', () => {
  const entries = [
    { seq: 1, at: '', actor: 'u1', action: 'secret.created', workspace_id: 'w', target: 'OPENAI', details: {}, hash: '' },
    { seq: 2, at: '', actor: 'u2', action: 'member.added', workspace_id: 'w', target: 'u3', details: { role: 'editor' }, hash: '' },
    { seq: 3, at: '', actor: 'u1', action: 'secret.deleted', workspace_id: 'w', target: 'OPENAI', details: {}, hash: '' },
  ];
  const seqs = (f) => filterAudit(entries, { action: '', actor: '', text: '', ...f }).map((e) => e.seq);
  assert.deepEqual(seqs({}), [3, 2, 1]);
  assert.deepEqual(seqs({ actor: 'u1' }), [3, 1]);
  assert.deepEqual(seqs({ action: 'member.added' }), [2]);
  assert.deepEqual(seqs({ text: 'openai' }), [3, 1]);
  assert.deepEqual(seqs({ text: 'EDITOR' }), [2]);
  assert.equal(actionLabel('secret.created'), 'Secret created');
});

test('numbers read short; secret names follow the server’s pattern', () => {
  assert.deepEqual([0, 999, 1234, 45_678, 2_500_000].map(formatTokens), ['0', '999', '1.2k', '46k', '2.5M']);
  assert.deepEqual([0, 0.004, 1.5].map(formatUsd), ['$0', '<$0.01', '$1.50']);
  assert.ok(SECRET_NAME.test('OPENAI_API_KEY'));
  assert.ok(!SECRET_NAME.test('-bad'));
  assert.ok(!SECRET_NAME.test('has space'));
});
