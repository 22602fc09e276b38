// The sessions the sidebar lists, shared by every view that changes one.

import { api } from './api';
import type { Session, SessionKind } from './types';

export const sessions = $state<{ items: Session[]; loaded: boolean; archived: boolean; error: string }>({
  items: [],
  loaded: false,
  archived: false,
  error: '',
});

function sort(items: Session[]): Session[] {
  return items.sort(
    (a, b) => Number(b.pinned) - Number(a.pinned) || b.updated_at.localeCompare(a.updated_at),
  );
}

/** Load the list; a failure is kept in `sessions.error` for the sidebar to show. */
export async function loadSessions(archived = sessions.archived): Promise<void> {
  try {
    const page = await api.sessions(archived);
    sessions.archived = archived;
    sessions.items = sort(page.items);
    sessions.loaded = true;
    sessions.error = '';
  } catch (e) {
    sessions.error = `Your sessions could not be loaded. ${e instanceof Error ? e.message : String(e)}`;
  }
}

/** Put a changed session in its place (or drop it when it left the shown list). */
export function upsert(session: Session): void {
  const rest = sessions.items.filter((s) => s.id !== session.id);
  sessions.items = sort(session.archived === sessions.archived ? [...rest, session] : rest);
}

export async function createSession(
  kind: SessionKind,
  title: string,
  settings: Record<string, unknown>,
): Promise<Session> {
  const created = await api.create(kind, title, settings);
  if (sessions.archived) await loadSessions(false);
  else upsert(created);
  return created;
}

export async function changeSession(
  id: string,
  change: Partial<Pick<Session, 'title' | 'pinned' | 'archived'>>,
): Promise<Session> {
  const updated = await api.update(id, change);
  upsert(updated);
  return updated;
}

export async function deleteSession(id: string): Promise<void> {
  await api.remove(id);
  sessions.items = sessions.items.filter((s) => s.id !== id);
}

export const KINDS: { kind: SessionKind; label: string; blurb: string; icon: 'book' | 'chat' | 'leaf' | 'globe' }[] = [
  { kind: 'story', label: 'Story', blurb: 'An interactive tale with choices', icon: 'book' },
  { kind: 'companion', label: 'Companion', blurb: 'A conversation with a character', icon: 'chat' },
  { kind: 'therapy', label: 'Reflective journey', blurb: 'A gentle story around your goals', icon: 'leaf' },
  { kind: 'studio', label: 'World studio', blurb: 'Build places, people and history', icon: 'globe' },
];

export function kindLabel(kind: SessionKind): string {
  return KINDS.find((k) => k.kind === kind)?.label ?? kind;
}
