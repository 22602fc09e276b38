import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changes, embeddedBook, greetings, toForm } from '../../.unit/character-card.js';

const character = (data, taleweaver = {}) => ({ name: 'Wren', card: { data }, taleweaver });

test('the form holds every editable field, missing ones as empty', () => {
  const form = toForm(character({ name: 'Wren', first_mes: 'Hello', tags: ['river', 7], alternate_greetings: ['Hi'] }, { avatar_url: null }));
  assert.equal(form.name, 'Wren');
  assert.equal(form.description, '');
  assert.equal(form.post_history_instructions, '');
  assert.deepEqual(form.tags, ['river']);
  assert.deepEqual(form.alternate_greetings, ['Hi']);
  assert.deepEqual(form.group_only_greetings, []);
  assert.equal(form.avatar_url, '');
});

test('only what changed is sent: the name trimmed, an emptied address as null', () => {
  const before = toForm(character({ name: 'Wren', description: 'A pilot', alternate_greetings: ['a', 'b'] }, { avatar_url: 'https://x/y.png' }));
  assert.deepEqual(changes(before, structuredClone(before)), {});
  const after = { ...structuredClone(before), name: '  Wren Ferrier ', alternate_greetings: ['b', 'a'], avatar_url: ' ' };
  assert.deepEqual(changes(before, after), { name: 'Wren Ferrier', alternate_greetings: ['b', 'a'], avatar_url: null });
});

test('greetings keep the numbers the server knows them by, empty ones left out', () => {
  assert.deepEqual(greetings(character({ first_mes: '', alternate_greetings: ['One', ' ', 'Two'] })), [
    { index: 1, text: 'One' },
    { index: 3, text: 'Two' },
  ]);
  assert.deepEqual(greetings(character({ first_mes: 'Hi' })), [{ index: 0, text: 'Hi' }]);
});

test("an embedded book is named and counted, else it is the character's", () => {
  assert.equal(embeddedBook(character({})), null);
  assert.deepEqual(embeddedBook(character({ character_book: { name: 'Ferry lore', entries: [{}, {}] } })), { name: 'Ferry lore', entries: 2 });
  assert.deepEqual(embeddedBook(character({ character_book: { entries: [] } })), { name: "Wren's lorebook", entries: 0 });
});
