import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bandNote, bandPhrase, checkInMessage, describeSeries, pathOf, plot, retentionChoices, scoreOf, timeline, yOf } from '../../.unit/therapy-view.js';

const box = { width: 200, height: 120, left: 20, right: 20, top: 10, bottom: 10 };

test('scores and bands are said gently', () => {
  assert.equal(scoreOf(12, 'phq9'), '12 of 27');
  assert.equal(scoreOf(3, 'gad7'), '3 of 21');
  assert.equal(bandPhrase('Moderately severe'), 'in the range usually called moderately severe');
  assert.match(bandNote('severe'), /don’t have to carry it alone/);
  assert.doesNotMatch(bandNote('severe'), /danger|warning|alarm/i);
});

test('the crisis message leaves out what only a story can say', () => {
  const server = "I'm going to pause our story for a moment, because this matters. If you are in immediate danger, please call 911 now.";
  assert.equal(checkInMessage(server), 'If you are in immediate danger, please call 911 now.');
  assert.match(checkInMessage('Our story pauses.'), /emergency number/);
});

test('retention choices keep an unusual current value among them', () => {
  assert.ok(retentionChoices(365).some((c) => c.label === '1 year'));
  const own = retentionChoices(45);
  assert.deepEqual(own.slice(0, 2).map((c) => c.days), [30, 45]);
});

test('points share one timeline, evenly spaced, scaled to the maximum', () => {
  const a = [{ at: '2025-01-02', value: 10, label: '2 Jan' }, { at: '2025-01-01', value: 0, label: '1 Jan' }];
  const b = [{ at: '2025-01-03', value: 20, label: '3 Jan' }];
  const keys = timeline([a, b]);
  assert.deepEqual(keys, ['2025-01-01', '2025-01-02', '2025-01-03']);
  const plotted = plot(a, keys, 20, box);
  assert.deepEqual(plotted.map((p) => [p.x, p.y]), [[20, 110], [100, 60]]);
  assert.deepEqual(plot(b, ['2025-01-03'], 20, box).map((p) => p.x), [100]);
  assert.equal(yOf(99, 20, box), 10, 'values above the maximum stay inside the box');
  assert.equal(pathOf(plotted), 'M20.0 110.0 L100.0 60.0');
  assert.equal(describeSeries('PHQ-9', []), 'PHQ-9: nothing recorded yet.');
  assert.equal(describeSeries('Walk', a.slice().reverse(), '%'), 'Walk: from 0% on 1 Jan to 10% on 2 Jan, 2 points.');
});
