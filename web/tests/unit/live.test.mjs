import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  backoff,
  changeOf,
  initials,
  LiveClient,
  liveUrl,
  othersHere,
  parseFrame,
  personLabel,
  presenceLine,
  writerLabel,
  ResumePoint,
  TypingSignal,
} from '../../.unit/live.js';

const frame = (value) => JSON.stringify(value);

test('frames are read into what the app uses; anything else is null', () => {
  assert.deepEqual(parseFrame(frame({ type: 'hello', session_id: 's', connection: 'c1', user_id: 'u1' })), {
    type: 'hello',
    connection: 'c1',
    userId: 'u1',
  });
  assert.deepEqual(
    parseFrame(frame({ type: 'turn.token', turn_id: 't1', seq: 3, data: { text: 'Hi' } })),
    { type: 'turn', name: 'token', turnId: 't1', seq: 3, data: { text: 'Hi' } },
  );
  const event = parseFrame(
    frame({ type: 'event', position: 42, event: { type: 'turn.committed', version: 7, payload: { number: 2 }, metadata: {} } }),
  );
  assert.equal(event.type, 'event');
  assert.equal(event.position, 42);
  assert.deepEqual(event.event.payload, { number: 2 });
  assert.deepEqual(parseFrame(frame({ type: 'replayed', position: 9 })), { type: 'replayed', position: 9 });
  assert.deepEqual(parseFrame(frame({ type: 'ping', at: 1 })), { type: 'ping' });
  const presence = parseFrame(
    frame({
      type: 'presence',
      here: [
        { user_id: 'u1', connection: 'c1', typing: true, name: ' Ana ' },
        { user_id: 'u2', connection: 'c2', typing: false },
        { connection: 'broken' },
      ],
      typing: ['u1'],
    }),
  );
  assert.deepEqual(presence.here, [
    { user_id: 'u1', connection: 'c1', typing: true, name: 'Ana' },
    { user_id: 'u2', connection: 'c2', typing: false, name: null },
  ]);
  for (const bad of ['not json', '[]', '{}', frame({ type: 'event', position: -1, event: { type: 'x' } }), frame({ type: 'turn.token', seq: 1 }), frame({ type: 'table', table: {} })]) {
    assert.equal(parseFrame(bad), null, bad);
  }
});

test('the resume point says each event and turn frame once', () => {
  const point = new ResumePoint(10);
  assert.equal(point.query(), 'after=10');
  assert.equal(point.event(10), false);
  assert.equal(point.event(11), true);
  assert.equal(point.event(11), false);
  point.replayed(15);
  assert.equal(point.event(14), false);
  assert.equal(point.after, 15);
  assert.equal(point.turn('t1', 1, 'start'), true);
  assert.equal(point.turn('t1', 2, 'token'), true);
  assert.equal(point.turn('t1', 2, 'token'), false);
  assert.equal(point.turn('t1', 1, 'start'), false);
  assert.equal(point.query(), 'after=15&turn=t1%3A2');
  assert.equal(point.turn('t1', 3, 'done'), true);
  // The server may still hold an ended turn as current: a replay of it from the start is a repeat.
  assert.equal(point.turn('t1', 1, 'start'), false);
  assert.equal(point.turn('t2', 1, 'start'), true);
});

test('backoff doubles from half a second, jittered, and stops growing at 15 s', () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 10].map((n) => backoff(n, mid)), [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  assert.equal(backoff(0, () => 0), 375);
  assert.equal(backoff(0, () => 1), 625);
});

test('the channel address follows the page: ws beside http, wss beside https', () => {
  assert.equal(liveUrl({ protocol: 'http:', host: '127.0.0.1:8000' }, 'a b', 'after=3'), 'ws://127.0.0.1:8000/api/v1/sessions/a%20b/live?after=3');
  assert.equal(liveUrl({ protocol: 'https:', host: 'tw.example' }, 's1', 'after=0'), 'wss://tw.example/api/v1/sessions/s1/live?after=0');
});

test('an event names the turns to fetch again, or the session', () => {
  const event = (type, payload = {}) => ({ type, version: 1, position: 1, payload, metadata: {} });
  assert.deepEqual(changeOf(event('turn.committed', { number: 5, turn_id: 't5' }), 4), { kind: 'turns', afterTurn: 4, throughTurn: 5, turnId: 't5' });
  assert.deepEqual(changeOf(event('turn.committed', { number: 7 }), 4), { kind: 'turns', afterTurn: 4, throughTurn: 7, turnId: null });
  assert.deepEqual(changeOf(event('turn.regenerated', { number: 4, turn_id: 't' }), 4), { kind: 'turns', afterTurn: 3, throughTurn: 4, turnId: 't' });
  assert.deepEqual(changeOf(event('turn.selected', { number: 4, active: 1 }), 4), { kind: 'turns', afterTurn: 3, throughTurn: 4, turnId: null });
  assert.deepEqual(changeOf(event('turn.edited', { number: 2 }), 4).throughTurn, 2);
  assert.deepEqual(changeOf(event('session.renamed', { title: 'x' }), 4), { kind: 'session' });
  assert.deepEqual(changeOf(event('session.deleted'), 4), { kind: 'deleted' });
  assert.deepEqual(changeOf(event('turn.failed', { turn_id: 't' }), 4), { kind: 'ended', turnId: 't' });
  assert.equal(changeOf(event('turn.committed', {}), 4), null);
  assert.equal(changeOf(event('memory.summarized', { number: 2 }), 4), null);
});

test('presence lists the others once each, naming yourself on another device', () => {
  const here = [
    { user_id: 'me', connection: 'c1', typing: false, name: null },
    { user_id: 'me', connection: 'c2', typing: true, name: null },
    { user_id: 'ana', connection: 'c3', typing: false, name: 'Ana Lopez' },
    { user_id: 'ana', connection: 'c4', typing: false, name: 'Ana Lopez' },
  ];
  const people = othersHere(here, { connection: 'c1', userId: 'me' });
  assert.deepEqual(people, [
    { userId: 'me', name: null, me: true, typing: true, connections: 1 },
    { userId: 'ana', name: 'Ana Lopez', me: false, typing: false, connections: 2 },
  ]);
  assert.equal(personLabel(people[0]), 'You, on another device');
  assert.equal(personLabel(people[1]), 'Ana Lopez');
  assert.equal(personLabel({ name: null, me: false }), 'Someone');
  assert.equal(initials(people[1]), 'AL');
  assert.equal(initials({ name: 'bea', me: false }), 'B');
  assert.equal(initials({ name: null, me: true }), 'Y');
  assert.equal(initials({ name: null, me: false }), '?');
});

test('one quiet line says who is typing, else who is here', () => {
  const ana = { userId: 'a', name: 'Ana', me: false, typing: false, connections: 1 };
  const bo = { userId: 'b', name: 'Bo', me: false, typing: false, connections: 1 };
  const self = { userId: 'me', name: 'Player', me: true, typing: false, connections: 1 };
  assert.equal(presenceLine([]), '');
  assert.equal(presenceLine([ana]), 'Ana is here');
  assert.equal(presenceLine([self]), 'Also open on your other device');
  assert.equal(presenceLine([ana, bo]), 'Ana and Bo are here');
  assert.equal(presenceLine([ana, bo, self]), 'Ana and 2 others are here');
  assert.equal(presenceLine([{ ...ana, typing: true }, bo]), 'Ana is typing…');
  assert.equal(presenceLine([{ ...self, typing: true }]), 'Typing on your other device…');
  assert.equal(presenceLine([{ ...ana, typing: true }, { ...bo, typing: true }]), 'Ana and Bo are typing…');
  assert.equal(writerLabel([ana]), 'Ana is playing · the narrator is writing…');
  assert.equal(writerLabel([self]), 'From your other device · the narrator is writing…');
  assert.equal(writerLabel([]), 'Writing on another device…');
  assert.equal(writerLabel([ana, bo]), 'Someone else is playing · the narrator is writing…');
});

// --- the client, against a fake socket and fake timers ---------------------------------

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closed = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(value) {
    this.onmessage?.({ data: JSON.stringify(value) });
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000) {
    this.closed = code;
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

function harness(after = 0) {
  const sockets = [];
  const frames = [];
  const statuses = [];
  const pending = [];
  const timers = {
    setTimeout: (fn, ms) => {
      const handle = { fn, ms };
      pending.push(handle);
      return handle;
    },
    clearTimeout: (handle) => {
      const at = pending.indexOf(handle);
      if (at >= 0) pending.splice(at, 1);
    },
  };
  const client = new LiveClient(after, {
    url: (query) => `ws://x/live?${query}`,
    connect: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    onFrame: (f) => frames.push(f),
    onStatus: (s) => statuses.push(s),
    timers,
    random: () => 0.5,
  });
  const fire = () => {
    const next = pending.shift();
    next.fn();
    return next.ms;
  };
  return { client, sockets, frames, statuses, pending, fire };
}

test('the client answers pings and passes on each new frame once', () => {
  const { client, sockets, frames } = harness(5);
  client.start();
  const socket = sockets[0];
  assert.equal(socket.url, 'ws://x/live?after=5');
  socket.open();
  socket.deliver({ type: 'hello', connection: 'c1', user_id: 'u' });
  socket.deliver({ type: 'event', position: 5, event: { type: 'turn.committed', payload: {} } });
  socket.deliver({ type: 'event', position: 6, event: { type: 'turn.committed', payload: {} } });
  socket.deliver({ type: 'replayed', position: 6 });
  socket.deliver({ type: 'ping', at: 1 });
  socket.deliver({ type: 'turn.start', turn_id: 't', seq: 1, data: {} });
  socket.deliver({ type: 'turn.start', turn_id: 't', seq: 1, data: {} });
  assert.deepEqual(socket.sent, [{ type: 'pong' }]);
  assert.deepEqual(
    frames.map((f) => f.type),
    ['hello', 'event', 'replayed', 'turn'],
  );
  assert.equal(client.status, 'live');
  assert.equal(client.send({ type: 'typing', typing: true }), true);
});

test('after a drop the client waits, longer each time, then resumes where it was', () => {
  const { client, sockets, frames, pending, fire, statuses } = harness(0);
  client.start();
  sockets[0].open();
  sockets[0].deliver({ type: 'hello', connection: 'c1', user_id: 'u' });
  sockets[0].deliver({ type: 'event', position: 8, event: { type: 'turn.committed', payload: {} } });
  sockets[0].deliver({ type: 'turn.token', turn_id: 't', seq: 4, data: { text: 'a' } });
  sockets[0].close(1006);
  assert.equal(client.status, 'waiting');
  assert.equal(client.send({ type: 'pong' }), false);
  assert.equal(fire(), 500);
  assert.equal(sockets[1].url, 'ws://x/live?after=8&turn=t%3A4');
  sockets[1].close(1006); // refused before hello: wait longer
  assert.equal(fire(), 1000);
  sockets[2].open();
  sockets[2].deliver({ type: 'hello', connection: 'c2', user_id: 'u' });
  // What the server replays from the resume point is new; repeats are dropped all the same.
  sockets[2].deliver({ type: 'turn.token', turn_id: 't', seq: 4, data: { text: 'a' } });
  sockets[2].deliver({ type: 'turn.token', turn_id: 't', seq: 5, data: { text: 'b' } });
  sockets[2].deliver({ type: 'event', position: 8, event: { type: 'turn.committed', payload: {} } });
  sockets[2].deliver({ type: 'event', position: 9, event: { type: 'turn.committed', payload: {} } });
  assert.deepEqual(
    frames.filter((f) => f.type !== 'hello').map((f) => (f.type === 'event' ? f.position : f.seq)),
    [8, 4, 5, 9],
  );
  sockets[2].close(1006);
  assert.equal(fire(), 500, 'a connection that said hello starts the backoff again');
  assert.equal(pending.length, 0);
  assert.deepEqual(statuses.slice(0, 4), ['connecting', 'live', 'waiting', 'connecting']);
});

test('waking skips the wait; stopping closes for good', () => {
  const { client, sockets, pending } = harness(0);
  client.start();
  sockets[0].close(1006);
  assert.equal(pending.length, 1);
  client.wake();
  assert.equal(pending.length, 0);
  assert.equal(sockets.length, 2);
  sockets[1].open();
  client.stop();
  assert.equal(sockets[1].closed, 1000);
  assert.equal(client.status, 'stopped');
  assert.equal(pending.length, 0, 'no reconnect after stop');
});

test('typing is said once while keys come, and ended after a quiet spell or on send', () => {
  const said = [];
  const pending = [];
  const timers = {
    setTimeout: (fn, ms) => {
      const handle = { fn, ms };
      pending.push(handle);
      return handle;
    },
    clearTimeout: (handle) => {
      const at = pending.indexOf(handle);
      if (at >= 0) pending.splice(at, 1);
    },
  };
  const typing = new TypingSignal((on) => said.push(on), 3000, timers);
  typing.input('H');
  typing.input('He');
  typing.input('Hel');
  assert.deepEqual(said, [true]);
  assert.equal(pending.length, 1);
  pending.shift().fn();
  assert.deepEqual(said, [true, false]);
  typing.input('Hell');
  typing.stop();
  typing.stop();
  assert.deepEqual(said, [true, false, true, false]);
  typing.input('   ');
  assert.deepEqual(said, [true, false, true, false]);
});
