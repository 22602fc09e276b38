import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readEvents, SseParser } from '../../.unit/sse.js';

test('events split across chunks come out whole and in order', () => {
  const parser = new SseParser();
  const wire = 'retry: 1000\n\nid: t:1\nevent: start\ndata: {"a":1}\n\nid: t:2\nevent: token\ndata: {"text":"Hel';
  assert.deepEqual(parser.push(wire.slice(0, 17)), []);
  const first = parser.push(wire.slice(17));
  assert.deepEqual(first, [{ id: 't:1', event: 'start', data: '{"a":1}' }]);
  assert.deepEqual(parser.push('lo"}\n\n'), [{ id: 't:2', event: 'token', data: '{"text":"Hello"}' }]);
});

test('CRLF line ends, comments and multi-line data follow the spec', () => {
  const parser = new SseParser();
  const events = parser.push(': keep-alive\r\nevent: done\r\ndata: one\r\ndata: two\r');
  assert.deepEqual(events, []);
  assert.deepEqual(parser.push('\n\r\n'), [{ id: null, event: 'done', data: 'one\ntwo' }]);
});

test('an event without a name is a message, and the last id carries over', () => {
  const parser = new SseParser();
  assert.deepEqual(parser.push('id: 7\ndata: x\n\ndata:y\n\n'), [
    { id: '7', event: 'message', data: 'x' },
    { id: '7', event: 'message', data: 'y' },
  ]);
});

test('a stream read to its end flushes an unterminated last event', async () => {
  const bytes = new TextEncoder().encode('event: token\ndata: {"text":"é"}\n\nevent: done\ndata: {}');
  const body = new ReadableStream({
    start(controller) {
      // split inside the two-byte "é" to check decoding across chunks
      controller.enqueue(bytes.slice(0, 30));
      controller.enqueue(bytes.slice(30));
      controller.close();
    },
  });
  const seen = [];
  await readEvents(body, (e) => seen.push([e.event, e.data]));
  assert.deepEqual(seen, [
    ['token', '{"text":"é"}'],
    ['done', '{}'],
  ]);
});
