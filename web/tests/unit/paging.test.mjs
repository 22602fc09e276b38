import assert from 'node:assert/strict';
import { test } from 'node:test';
import { latestPage, mergeMessages, olderPage } from '../../.unit/paging.js';

test('a long session opens at its newest page', () => {
  assert.deepEqual(latestPage(10_000, 40), { afterTurn: 9_960, throughTurn: 10_000, limit: 82 });
  assert.deepEqual(latestPage(3, 40), { afterTurn: 0, throughTurn: 3, limit: 8 });
  assert.deepEqual(latestPage(0, 40), { afterTurn: 0, throughTurn: 0, limit: 2 });
});

test('older pages step back to the first turn, then stop', () => {
  assert.deepEqual(olderPage(9_961, 40), { afterTurn: 9_920, throughTurn: 9_960, limit: 82 });
  assert.deepEqual(olderPage(30, 40), { afterTurn: 0, throughTurn: 29, limit: 60 });
  assert.equal(olderPage(1, 40), null);
});

test('merging keeps turn order, each message once, the newer copy winning', () => {
  const shown = [
    { id: 'p2', turn_number: 2, v: 1 },
    { id: 'n2', turn_number: 2, v: 1 },
  ];
  const incoming = [
    { id: 'p1', turn_number: 1, v: 1 },
    { id: 'n1', turn_number: 1, v: 1 },
    { id: 'n2', turn_number: 2, v: 2 },
  ];
  const merged = mergeMessages(shown, incoming);
  assert.deepEqual(
    merged.map((m) => [m.id, m.v]),
    [
      ['p1', 1],
      ['n1', 1],
      ['p2', 1],
      ['n2', 2],
    ],
  );
});
