// The live channel of a session (`GET /api/v1/sessions/{id}/live`, a WebSocket): frame
// parsing, where to resume after a drop, backoff, typing signals. No DOM and no Svelte:
// the browser's WebSocket and timers are passed in, so all of it runs under node --test.

/** One committed event of the session, as `GET .../events` shows it. */
export interface LiveEvent {
  type: string;
  version: number;
  position: number;
  payload: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

/** One live connection to the session: who, and whether they are typing. */
export interface Here {
  user_id: string;
  connection: string;
  typing: boolean;
  name: string | null;
}

export type LiveFrame =
  | { type: 'hello'; connection: string; userId: string }
  | { type: 'event'; position: number; event: LiveEvent }
  | { type: 'replayed'; position: number }
  | { type: 'turn'; name: string; turnId: string; seq: number; data: Record<string, unknown> }
  | { type: 'presence'; here: Here[] }
  | { type: 'ping' }
  | { type: 'error'; title: string; detail: string };

function record(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

const count = (value: unknown): number | null =>
  typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : null;

/** A server frame, or null for anything this app does not use (or cannot read). */
export function parseFrame(text: string): LiveFrame | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  const frame = record(raw);
  const type = frame?.['type'];
  if (!frame || typeof type !== 'string') return null;
  if (type === 'hello') {
    const connection = frame['connection'];
    const userId = frame['user_id'];
    return typeof connection === 'string' && typeof userId === 'string' ? { type, connection, userId } : null;
  }
  if (type === 'event') {
    const position = count(frame['position']);
    const event = record(frame['event']);
    if (position === null || !event || typeof event['type'] !== 'string') return null;
    return {
      type,
      position,
      event: {
        type: event['type'],
        version: count(event['version']) ?? 0,
        position,
        payload: record(event['payload']) ?? {},
        metadata: record(event['metadata']) ?? {},
      },
    };
  }
  if (type === 'replayed') {
    const position = count(frame['position']);
    return position === null ? null : { type, position };
  }
  if (type.startsWith('turn.')) {
    const turnId = frame['turn_id'];
    const seq = count(frame['seq']);
    if (typeof turnId !== 'string' || seq === null) return null;
    return { type: 'turn', name: type.slice('turn.'.length), turnId, seq, data: record(frame['data']) ?? {} };
  }
  if (type === 'presence') {
    const list = Array.isArray(frame['here']) ? frame['here'] : [];
    const here: Here[] = [];
    for (const item of list) {
      const entry = record(item);
      if (!entry || typeof entry['user_id'] !== 'string' || typeof entry['connection'] !== 'string') continue;
      const name = entry['name'];
      here.push({
        user_id: entry['user_id'],
        connection: entry['connection'],
        typing: entry['typing'] === true,
        name: typeof name === 'string' && name.trim() ? name.trim() : null,
      });
    }
    return { type, here };
  }
  if (type === 'ping') return { type };
  if (type === 'error') {
    const title = frame['title'];
    const detail = frame['detail'];
    return { type, title: typeof title === 'string' ? title : 'Error', detail: typeof detail === 'string' ? detail : '' };
  }
  return null;
}

const TURN_ENDS = new Set(['done', 'error']);

/**
 * Where the channel is: the last event position and the last frame of the turn being
 * followed. Everything seen is said once: a frame at or before the point is a repeat.
 */
export class ResumePoint {
  private turnId: string | null = null;
  private seq = 0;
  private readonly ended: string[] = [];

  constructor(public after: number) {}

  /** True for an event not seen before (and it moves the point on). */
  event(position: number): boolean {
    if (position <= this.after) return false;
    this.after = position;
    return true;
  }

  /** The store's replay reached `position`: everything up to it is seen. */
  replayed(position: number): void {
    if (position > this.after) this.after = position;
  }

  /** True for a turn frame not seen before: a later seq of the turn followed, or a new turn. */
  turn(turnId: string, seq: number, name: string): boolean {
    if (this.ended.includes(turnId)) return false;
    if (turnId === this.turnId && seq <= this.seq) return false;
    this.turnId = turnId;
    this.seq = seq;
    if (TURN_ENDS.has(name)) {
      this.ended.push(turnId);
      if (this.ended.length > 16) this.ended.shift();
    }
    return true;
  }

  /** The query to connect (or reconnect) with: `after=N`, and `turn=id:seq` once a turn was seen. */
  query(): string {
    const query = new URLSearchParams({ after: String(this.after) });
    if (this.turnId !== null) query.set('turn', `${this.turnId}:${this.seq}`);
    return query.toString();
  }
}

/** How long to wait before reconnect attempt `attempt` (0 first): doubling, capped, jittered. */
export function backoff(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(500 * 2 ** Math.max(0, attempt), 15_000);
  return Math.round(base * (0.75 + random() * 0.5));
}

/** The channel's address beside the page: ws: for http:, wss: for https:. */
export function liveUrl(location: { protocol: string; host: string }, sessionId: string, query: string): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/api/v1/sessions/${encodeURIComponent(sessionId)}/live?${query}`;
}

/** What a turn-changing event asks of the view. */
export type Change =
  | { kind: 'turns'; afterTurn: number; throughTurn: number; turnId: string | null }
  | { kind: 'session' }
  | { kind: 'deleted' }
  | { kind: 'ended'; turnId: string | null };

/** What an event changes, given the last turn shown: the turns to fetch again, or the session. */
export function changeOf(event: LiveEvent, lastTurn: number): Change | null {
  const number = count(event.payload['number']);
  const turnId = typeof event.payload['turn_id'] === 'string' ? event.payload['turn_id'] : null;
  switch (event.type) {
    case 'turn.committed':
      if (number === null) return null;
      // A turn further on than the next one: fetch what is missing in between too.
      return { kind: 'turns', afterTurn: Math.min(lastTurn, number - 1), throughTurn: number, turnId };
    case 'turn.regenerated':
    case 'turn.edited':
    case 'turn.selected':
      if (number === null || number < 1) return null;
      return { kind: 'turns', afterTurn: number - 1, throughTurn: number, turnId };
    case 'turn.cancelled':
    case 'turn.failed':
      return { kind: 'ended', turnId };
    case 'session.deleted':
      return { kind: 'deleted' };
    default:
      return event.type.startsWith('session.') ? { kind: 'session' } : null;
  }
}

/** The people on other connections, one entry each, the typing ones flagged. */
export interface Person {
  userId: string;
  name: string | null;
  me: boolean;
  typing: boolean;
  connections: number;
}

export function othersHere(here: Here[], mine: { connection: string; userId: string } | null): Person[] {
  const people = new Map<string, Person>();
  for (const entry of here) {
    if (mine && entry.connection === mine.connection) continue;
    const person = people.get(entry.user_id) ?? {
      userId: entry.user_id,
      name: entry.name,
      me: mine?.userId === entry.user_id,
      typing: false,
      connections: 0,
    };
    person.typing ||= entry.typing;
    person.connections += 1;
    person.name ??= entry.name;
    people.set(entry.user_id, person);
  }
  return [...people.values()];
}

/** What to call a person in a sentence ("Ana", "You, on another device", "Someone"). */
export function personLabel(person: Pick<Person, 'name' | 'me'>): string {
  if (person.me) return 'You, on another device';
  return person.name ?? 'Someone';
}

/** Up to two letters for an avatar. */
export function initials(person: Pick<Person, 'name' | 'me'>): string {
  const words = (person.name ?? (person.me ? 'You' : '')).split(/[\s._@-]+/).filter(Boolean);
  if (words.length === 0) return '?';
  const letters = words.length === 1 ? [...(words[0] ?? '')].slice(0, 1) : [words[0]?.[0], words.at(-1)?.[0]];
  return letters.join('').toUpperCase();
}

function names(people: Person[]): string {
  const labels = people.map((p) => (p.me ? 'you, on another device' : (p.name ?? 'someone')));
  const first = labels[0] ?? 'someone';
  const sentence = labels.length === 1 ? first : labels.length === 2 ? `${first} and ${labels[1]}` : `${first} and ${labels.length - 1} others`;
  return sentence.charAt(0).toUpperCase() + sentence.slice(1);
}

/** One quiet line about the others: who is typing, else who is here ('' when nobody). */
export function presenceLine(people: Person[]): string {
  const typing = people.filter((p) => p.typing);
  if (typing.length === 1 && typing[0]?.me) return 'Typing on your other device…';
  if (typing.length > 0) return `${names(typing)} ${typing.length === 1 ? 'is' : 'are'} typing…`;
  if (people.length === 1 && people[0]?.me) return 'Also open on your other device';
  if (people.length > 0) return `${names(people)} ${people.length === 1 ? 'is' : 'are'} here`;
  return '';
}

/** Whose turn streams in, when it is not this tab's: the one other person here, if one. */
export function writerLabel(people: Person[]): string {
  const [only] = people;
  if (people.length !== 1 || !only) return people.length === 0 ? 'Writing on another device…' : 'Someone else is playing · the narrator is writing…';
  if (only.me) return 'From your other device · the narrator is writing…';
  return `${only.name ?? 'Someone'} is playing · the narrator is writing…`;
}

// --- the connection ---------------------------------------------------------------------

/** The part of the browser's WebSocket the client uses. */
export interface SocketLike {
  readonly readyState: number;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type LiveStatus = 'connecting' | 'live' | 'waiting' | 'stopped';

export interface LiveOptions {
  /** The address for a query from `ResumePoint.query()`. */
  url: (query: string) => string;
  /** Every new frame, after repeats are dropped and pings answered. */
  onFrame: (frame: LiveFrame) => void;
  onStatus?: (status: LiveStatus) => void;
  connect: (url: string) => SocketLike;
  timers?: Timers;
  random?: () => number;
}

const OPEN = 1;

/**
 * One session's live channel, kept open: it answers pings, drops repeats, and after a
 * drop reconnects (with backoff) from the last event and turn frame it saw.
 */
export class LiveClient {
  readonly point: ResumePoint;
  status: LiveStatus = 'stopped';
  private socket: SocketLike | null = null;
  private retry: unknown = null;
  private attempt = 0;
  private readonly timers: Timers;

  constructor(
    after: number,
    private readonly options: LiveOptions,
  ) {
    this.point = new ResumePoint(after);
    this.timers = options.timers ?? { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as number) };
  }

  start(): void {
    if (this.status !== 'stopped') return;
    this.open();
  }

  /** Close for good (the view is leaving). */
  stop(): void {
    this.setStatus('stopped');
    this.cancelRetry();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onmessage = socket.onerror = socket.onclose = null;
      socket.close(1000, 'leaving');
    }
  }

  /** Try again now (the browser says it is back online), not at the end of the backoff. */
  wake(): void {
    if (this.status !== 'waiting') return;
    this.cancelRetry();
    this.attempt = 0;
    this.open();
  }

  /** Send a frame when connected; false when it could not go. */
  send(frame: Record<string, unknown>): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    try {
      socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Drop the connection as a network would (tests, and a socket that went quiet). */
  drop(): void {
    this.socket?.close(4001, 'dropped');
  }

  private open(): void {
    this.setStatus('connecting');
    let socket: SocketLike;
    try {
      socket = this.options.connect(this.options.url(this.point.query()));
    } catch {
      this.later();
      return;
    }
    this.socket = socket;
    socket.onmessage = (message) => {
      if (this.socket !== socket || typeof message.data !== 'string') return;
      this.receive(message.data);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.later();
    };
    socket.onerror = () => {
      // a close follows an error; that is where reconnecting starts
    };
  }

  private receive(text: string): void {
    const frame = parseFrame(text);
    if (!frame) return;
    if (frame.type === 'ping') {
      this.send({ type: 'pong' });
      return;
    }
    if (frame.type === 'hello') {
      this.attempt = 0;
      this.setStatus('live');
    } else if (frame.type === 'event') {
      if (!this.point.event(frame.position)) return;
    } else if (frame.type === 'replayed') {
      this.point.replayed(frame.position);
    } else if (frame.type === 'turn') {
      if (!this.point.turn(frame.turnId, frame.seq, frame.name)) return;
    }
    this.options.onFrame(frame);
  }

  private later(): void {
    if (this.status === 'stopped') return;
    this.setStatus('waiting');
    const wait = backoff(this.attempt++, this.options.random);
    this.retry = this.timers.setTimeout(() => {
      this.retry = null;
      if (this.status === 'waiting') this.open();
    }, wait);
  }

  private cancelRetry(): void {
    if (this.retry !== null) this.timers.clearTimeout(this.retry);
    this.retry = null;
  }

  private setStatus(status: LiveStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.options.onStatus?.(status);
  }
}

/**
 * Typing signals from a composer: `typing: true` at the first key, not again while keys
 * keep coming; `typing: false` after a quiet spell, on send, or when the draft empties.
 */
export class TypingSignal {
  private typing = false;
  private idle: unknown = null;
  private readonly timers: Timers;

  constructor(
    private readonly send: (typing: boolean) => void,
    private readonly quietMs = 3000,
    timers?: Timers,
  ) {
    this.timers = timers ?? { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as number) };
  }

  /** The draft changed. */
  input(draft: string): void {
    if (draft.trim() === '') {
      this.stop();
      return;
    }
    if (!this.typing) {
      this.typing = true;
      this.send(true);
    }
    if (this.idle !== null) this.timers.clearTimeout(this.idle);
    this.idle = this.timers.setTimeout(() => {
      this.idle = null;
      this.stop();
    }, this.quietMs);
  }

  /** Sent, cleared or left: no longer typing. */
  stop(): void {
    if (this.idle !== null) this.timers.clearTimeout(this.idle);
    this.idle = null;
    if (this.typing) {
      this.typing = false;
      this.send(false);
    }
  }
}
