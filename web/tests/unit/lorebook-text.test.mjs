import assert from 'node:assert/strict';
import { test } from 'node:test';
import { entryMatches, entryTitle, reasonText } from '../../.unit/lorebook-text.js';

const entry = (fields) => ({ uid: '7', comment: '', keys: [], secondary_keys: [], content: '', ...fields });

test('an entry is called by its comment, else its first keys, else its id', () => {
  assert.equal(entryTitle(entry({ comment: '  The lighthouse ' })), 'The lighthouse');
  assert.equal(entryTitle(entry({ keys: ['a', 'b', 'c', 'd'] })), 'a, b, c');
  assert.equal(entryTitle(entry({})), 'Entry 7');
});

test('a search finds entries by title, keys, secondary keys or content, ignoring case', () => {
  const lighthouse = entry({ comment: 'Gull Point', keys: ['Lamp'], secondary_keys: ['fog'], content: 'Dark for years.' });
  for (const needle of ['', 'gull', 'lamp', 'FOG', 'for years']) assert.ok(entryMatches(lighthouse, needle), needle);
  assert.ok(!entryMatches(lighthouse, 'dragon'));
});

test("the engine's reasons read as sentences, naming entries by title", () => {
  const title = (uid) => ({ 0: 'Dragons', 11: 'Rain' })[uid] ?? `Entry ${uid}`;
  assert.equal(reasonText("key 'wyrm' in narrator message (1 back)", title), "Key 'wyrm' in narrator message (1 back)");
  assert.equal(reasonText("recursion from entry 0 (key 'Ember Court')", title), "Recursion from “Dragons” (key 'Ember Court')");
  assert.equal(reasonText("lost group 'weather' to entry 11", title), "Lost group 'weather' to “Rain”");
  assert.equal(reasonText('constant', title), 'Always active');
  assert.equal(reasonText("key 'entry 5' in player message", title), "Key 'entry 5' in player message");
});
