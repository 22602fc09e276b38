// Which turns to fetch: the newest first, older ones a page at a time as the reader
// scrolls up, so a 10,000-message session opens as fast as a 10-message one.

export interface TurnRange {
  /** Fetch turns strictly after this number... */
  afterTurn: number;
  /** ...up to and including this one. */
  throughTurn: number;
  /** The `limit` to ask for: two messages a turn, plus the greeting's. */
  limit: number;
}

export const PAGE_TURNS = 40;

/** The newest page of a session that has `turnCount` turns. */
export function latestPage(turnCount: number, pageTurns = PAGE_TURNS): TurnRange {
  const throughTurn = Math.max(turnCount, 0);
  return range(Math.max(throughTurn - pageTurns, 0), throughTurn);
}

/** The page just before the oldest turn already shown, or null at the beginning. */
export function olderPage(oldestShown: number, pageTurns = PAGE_TURNS): TurnRange | null {
  if (oldestShown <= 1) return null;
  const throughTurn = oldestShown - 1;
  return range(Math.max(throughTurn - pageTurns, 0), throughTurn);
}

function range(afterTurn: number, throughTurn: number): TurnRange {
  return { afterTurn, throughTurn, limit: Math.min(Math.max((throughTurn - afterTurn) * 2 + 2, 1), 500) };
}

export interface Numbered {
  id: string;
  turn_number: number;
}

/** `incoming` merged into `shown`, ordered by turn, each id once (the incoming copy wins). */
export function mergeMessages<T extends Numbered>(shown: T[], incoming: T[]): T[] {
  const byId = new Map<string, T>();
  for (const m of shown) byId.set(m.id, m);
  for (const m of incoming) byId.set(m.id, m);
  const order = new Map<string, number>();
  [...shown, ...incoming].forEach((m, i) => {
    if (!order.has(m.id)) order.set(m.id, i);
  });
  return [...byId.values()].sort(
    (a, b) => a.turn_number - b.turn_number || (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0),
  );
}
