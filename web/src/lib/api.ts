// The one way the web app talks to the server: the HTTP API under /api/v1.

import { readEvents, type SseEvent } from './sse';
import type {
  Artifact,
  Character,
  ContextPiece,
  Entity,
  CharacterSummary,
  Me,
  Message,
  SearchHit,
  Session,
  SessionKind,
  SessionPage,
  Turn,
  TurnBody,
  World,
} from './types';

const BASE = '/api/v1';

/** A failed request, with the server's own words for what happened. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    /** The whole problem+json body: `errors` ({loc, msg}[]) and any other members. */
    readonly body: Record<string, unknown> = {},
  ) {
    super(detail || title);
  }
}

// The workspace requests act in (sent as X-Workspace); null: the server's default, your
// first one. Remembered per account on this device by the control room's switcher.
let workspace: string | null = null;
let workspaceKey = '';

/** The workspace chosen on this device for `userId` (call once signed in). */
export function restoreWorkspace(userId: string): string | null {
  workspaceKey = `tw.workspace.${userId}`;
  try {
    workspace = localStorage.getItem(workspaceKey);
  } catch {
    workspace = null;
  }
  return workspace;
}

/** Act in `id` from now on (null: the default workspace), and remember it. */
export function useWorkspace(id: string | null): void {
  workspace = id;
  try {
    if (!workspaceKey) return;
    if (id) localStorage.setItem(workspaceKey, id);
    else localStorage.removeItem(workspaceKey);
  } catch {
    // storage refused (private mode): the choice lasts until the page reloads
  }
}

export function currentWorkspace(): string | null {
  return workspace;
}

function csrf(): string {
  const match = /(?:^|;\s*)tw_csrf=([^;]+)/.exec(document.cookie);
  return match ? decodeURIComponent(match[1] ?? '') : '';
}

async function failure(response: Response): Promise<ApiError> {
  let title = response.statusText || 'Request failed';
  let detail = '';
  let problem: Record<string, unknown> = {};
  try {
    const body = (await response.json()) as { title?: string; detail?: string };
    problem = body as Record<string, unknown>;
    title = body.title ?? title;
    detail = body.detail ?? '';
  } catch {
    // not a problem+json body: the status says enough
  }
  if (response.status === 429) detail = 'Too many requests just now. Wait a moment and try again.';
  if (response.status >= 500 && !detail) detail = 'The server had a problem. Try again in a moment.';
  return new ApiError(response.status, title, detail, problem);
}

async function request(
  method: string,
  path: string,
  body?: unknown,
  accept = 'application/json',
): Promise<Response> {
  const headers: Record<string, string> = { accept };
  const raw = body instanceof Blob;
  if (body !== undefined) headers['content-type'] = raw ? 'application/octet-stream' : 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = csrf();
  if (workspace) headers['x-workspace'] = workspace;
  let response: Response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError(0, 'Offline', 'Could not reach the server. Check your connection and try again.');
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/** A request whose answer is JSON (or nothing, for a 204). */
export async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await request(method, path, body);
  return (response.status === 204 ? undefined : await response.json()) as T;
}

const q = encodeURIComponent;

export const api = {
  me: () => json<Me>('GET', '/auth/me'),
  login: (email: string, password: string) => json<unknown>('POST', '/auth/login', { email, password }),
  setup: (token: string, email: string, password: string) =>
    json<unknown>('POST', '/auth/setup', { token, email, password }),
  logout: () => json<void>('POST', '/auth/logout'),
  workspaces: () => json<{ id: string }[]>('GET', '/workspaces'),

  sessions: (archived: boolean) =>
    json<SessionPage>('GET', `/sessions?limit=200&archived=${archived}`),
  session: (id: string) => json<Session>('GET', `/sessions/${q(id)}`),
  create: (kind: SessionKind, title: string, settings: Record<string, unknown>) =>
    json<Session>('POST', '/sessions', { kind, title, settings }),
  update: (id: string, change: Partial<Pick<Session, 'title' | 'pinned' | 'archived'>>) =>
    json<Session>('PATCH', `/sessions/${q(id)}`, change),
  remove: (id: string) => json<void>('DELETE', `/sessions/${q(id)}`),
  fork: (id: string, atTurn: number, title?: string) =>
    json<Session>('POST', `/sessions/${q(id)}/fork`, { at_turn: atTurn, title }),
  messages: (id: string, afterTurn: number, limit: number) =>
    json<Message[]>('GET', `/sessions/${q(id)}/messages?after_turn=${afterTurn}&limit=${limit}`),
  /** Make telling `active` of the last reply the one the story goes on from. */
  chooseTelling: (id: string, messageId: string, active: number) =>
    json<Message>('PATCH', `/sessions/${q(id)}/messages/${q(messageId)}`, { active }),
  /** The session's events after stream version `afterVersion` (each with its global position). */
  events: (id: string, afterVersion: number, limit: number) =>
    json<{ version: number; position: number; type: string }[]>(
      'GET',
      `/sessions/${q(id)}/events?after=${afterVersion}&limit=${limit}`,
    ),
  search: (text: string) => json<SearchHit[]>('GET', `/search?q=${q(text)}&limit=20`),

  characters: () => json<{ items: CharacterSummary[] }>('GET', '/characters?limit=200'),
  character: (id: string) => json<Character>('GET', `/characters/${q(id)}`),
  importCard: (file: File) => json<Character>('POST', `/characters/import?filename=${q(file.name)}`, file),
  removeCharacter: (id: string) => json<void>('DELETE', `/characters/${q(id)}`),
  chatWith: (id: string, greeting: number) =>
    json<Session>('POST', `/characters/${q(id)}/sessions`, { greeting }),
  importChat: (file: File) => json<Session>('POST', '/sessions/import', file),
  exportUrl: (id: string, format: 'png' | 'json' | 'charx') => `${BASE}/characters/${q(id)}/export?format=${format}`,
  avatarUrl: (id: string) => `${BASE}/characters/${q(id)}/avatar`,

  worlds: () => json<World[]>('GET', '/worlds'),
  world: (id: string) => json<World>('GET', `/worlds/${q(id)}`),
  createWorld: (name: string, description: string) => json<World>('POST', '/worlds', { name, description }),
  review: (worldId: string) => json<Artifact[]>('GET', `/worlds/${q(worldId)}/review`),
  decide: (worldId: string, artifactId: string, decision: 'accept' | 'reject', fields: Record<string, 'reject'> = {}) =>
    json<Artifact>('POST', `/worlds/${q(worldId)}/review/${q(artifactId)}`, { decision, fields }),
  entities: (worldId: string) => json<Entity[]>('GET', `/worlds/${q(worldId)}/entities?limit=500`),
  entity: (worldId: string, id: string) => json<Entity>('GET', `/worlds/${q(worldId)}/entities/${q(id)}`),

  context: (sessionId: string, turnId: string) =>
    json<{ kept: ContextPiece[]; cut: ContextPiece[] }>('GET', `/sessions/${q(sessionId)}/turns/${q(turnId)}/context`),

  cancel: (sessionId: string, turnId: string) =>
    json<Turn>('POST', `/sessions/${q(sessionId)}/turns/${q(turnId)}/cancel`),

  /** Post a turn and stream it: `onEvent` sees start, token, choices, safety, done, error. */
  async turn(sessionId: string, body: TurnBody, onEvent: (event: SseEvent) => void): Promise<void> {
    const response = await request('POST', `/sessions/${q(sessionId)}/turns`, body, 'text/event-stream');
    if (!response.body) throw new ApiError(0, 'No stream', 'The browser did not receive the reply stream.');
    await readEvents(response.body, onEvent);
  },
};
