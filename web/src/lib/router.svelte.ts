// Client routes: `/` and `/s/<session id>` (with `?turn=N` to open at a turn). The
// server answers every such path with the app, so a reload keeps the place.

export interface Route {
  sessionId: string | null;
  turn: number | null;
}

function parse(): Route {
  const match = /^\/s\/([^/]+)$/.exec(location.pathname);
  const turn = Number(new URLSearchParams(location.search).get('turn'));
  return {
    sessionId: match ? decodeURIComponent(match[1] ?? '') : null,
    turn: Number.isInteger(turn) && turn > 0 ? turn : null,
  };
}

export const route = $state<Route>(parse());

function sync(): void {
  const next = parse();
  route.sessionId = next.sessionId;
  route.turn = next.turn;
}

addEventListener('popstate', sync);

export function go(sessionId: string | null, turn: number | null = null, replace = false): void {
  const path = sessionId ? `/s/${encodeURIComponent(sessionId)}${turn ? `?turn=${turn}` : ''}` : '/';
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  sync();
}
