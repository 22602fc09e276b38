// Client routes: `/`, `/s/<session id>` (with `?turn=N` to open at a turn) and
// `/characters`, `/worlds[/<id>[/entities/<id>]]`, `/lorebooks[/<id>]`. The server answers every such path with the app, so a reload keeps
// the place.

export interface Route {
  view: 'home' | 'session' | 'characters' | 'worlds' | 'lorebooks';
  sessionId: string | null;
  worldId: string | null;
  entityId: string | null;
  lorebookId: string | null;
  turn: number | null;
}

function parse(): Route {
  const match = /^\/s\/([^/]+)$/.exec(location.pathname);
  const turn = Number(new URLSearchParams(location.search).get('turn'));
  const sessionId = match ? decodeURIComponent(match[1] ?? '') : null;
  const world = /^\/worlds(?:\/([^/]+)(?:\/entities\/([^/]+))?)?$/.exec(location.pathname);
  const book = /^\/lorebooks(?:\/([^/]+))?$/.exec(location.pathname);
  return {
    view: sessionId
      ? 'session'
      : location.pathname === '/characters'
        ? 'characters'
        : world
          ? 'worlds'
          : book
            ? 'lorebooks'
            : 'home',
    sessionId,
    worldId: world?.[1] ? decodeURIComponent(world[1]) : null,
    entityId: world?.[2] ? decodeURIComponent(world[2]) : null,
    lorebookId: book?.[1] ? decodeURIComponent(book[1]) : null,
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

export function goWorld(worldId: string | null = null, entityId: string | null = null): void {
  const e = encodeURIComponent;
  navigate(worldId ? `/worlds/${e(worldId)}${entityId ? `/entities/${e(entityId)}` : ''}` : '/worlds', false);
}

export function goLorebook(lorebookId: string | null = null, replace = false): void {
  navigate(lorebookId ? `/lorebooks/${encodeURIComponent(lorebookId)}` : '/lorebooks', replace);
}
