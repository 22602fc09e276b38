// Client routes: `/`, `/s/<session id>` (with `?turn=N` to open at a turn) and
// `/characters`. The server answers every such path with the app, so a reload keeps
// the place.

export interface Route {
  view: 'home' | 'session' | 'characters';
  sessionId: string | null;
  turn: number | null;
}

function parse(): Route {
  const match = /^\/s\/([^/]+)$/.exec(location.pathname);
  const turn = Number(new URLSearchParams(location.search).get('turn'));
  const sessionId = match ? decodeURIComponent(match[1] ?? '') : null;
  return {
    view: sessionId ? 'session' : location.pathname === '/characters' ? 'characters' : 'home',
    sessionId,
    turn: Number.isInteger(turn) && turn > 0 ? turn : null,
  };
}

export const route = $state<Route>(parse());

function sync(): void {
  Object.assign(route, parse());
}

addEventListener('popstate', sync);

function navigate(path: string, replace: boolean): void {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  sync();
}

export function go(sessionId: string | null, turn: number | null = null, replace = false): void {
  navigate(sessionId ? `/s/${encodeURIComponent(sessionId)}${turn ? `?turn=${turn}` : ''}` : '/', replace);
}

export function goCharacters(): void {
  navigate('/characters', false);
}
