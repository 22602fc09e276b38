// Client routes: `/`, `/s/<session id>` (with `?turn=N` to open at a turn) and
// `/characters[/<id>]`, `/worlds[/<id>[/entities/<id>]]`, `/lorebooks[/<id>]`,
// `/control[/account|workspace|models|audit]`, `/wellbeing[/check-ins|privacy|people[/<user id>]]`. The server answers every such path with the app, so a reload keeps
// the place.

export interface Route {
  view: 'home' | 'session' | 'characters' | 'worlds' | 'lorebooks' | 'control' | 'wellbeing';
  sessionId: string | null;
  worldId: string | null;
  entityId: string | null;
  lorebookId: string | null;
  characterId: string | null;
  turn: number | null;
  controlTab: ControlTab;
  wellbeingTab: WellbeingTab;
  personId: string | null;
}

export type ControlTab = 'account' | 'workspace' | 'models' | 'audit';
export type WellbeingTab = 'goals' | 'check-ins' | 'privacy' | 'people';

function parse(): Route {
  const match = /^\/s\/([^/]+)$/.exec(location.pathname);
  const turn = Number(new URLSearchParams(location.search).get('turn'));
  const sessionId = match ? decodeURIComponent(match[1] ?? '') : null;
  const world = /^\/worlds(?:\/([^/]+)(?:\/entities\/([^/]+))?)?$/.exec(location.pathname);
  const book = /^\/lorebooks(?:\/([^/]+))?$/.exec(location.pathname);
  const character = /^\/characters(?:\/([^/]+))?$/.exec(location.pathname);
  const control = /^\/control(?:\/(account|workspace|models|audit))?$/.exec(location.pathname);
  const wellbeing = /^\/wellbeing(?:\/(goals|check-ins|privacy|people)(?:\/([^/]+))?)?$/.exec(location.pathname);
  return {
    view: sessionId
      ? 'session'
      : character
        ? 'characters'
        : world
          ? 'worlds'
          : book
            ? 'lorebooks'
            : control
              ? 'control'
              : wellbeing
                ? 'wellbeing'
                : 'home',
    sessionId,
    worldId: world?.[1] ? decodeURIComponent(world[1]) : null,
    entityId: world?.[2] ? decodeURIComponent(world[2]) : null,
    lorebookId: book?.[1] ? decodeURIComponent(book[1]) : null,
    characterId: character?.[1] ? decodeURIComponent(character[1]) : null,
    turn: Number.isInteger(turn) && turn > 0 ? turn : null,
    controlTab: (control?.[1] as ControlTab | undefined) ?? 'account',
    wellbeingTab: (wellbeing?.[1] as WellbeingTab | undefined) ?? 'goals',
    personId: wellbeing?.[1] === 'people' && wellbeing[2] ? decodeURIComponent(wellbeing[2]) : null,
  };
}

export const route = $state<Route>(parse());

function sync(): void {
  Object.assign(route, parse());
}

// A screen with unsaved work may hold a move away: its guard answers false to stay,
// and later (having cleared itself) calls `proceed` if the user leaves after all.
type LeaveGuard = (proceed: () => void) => boolean;
let leaveGuard: LeaveGuard | null = null;
let here = location.pathname + location.search;

/** Set (or clear, with null) the guard asked before the app leaves the current place. */
export function guardLeave(guard: LeaveGuard | null): void {
  leaveGuard = guard;
}

addEventListener('popstate', () => {
  const target = location.pathname + location.search;
  if (leaveGuard && target !== here && !leaveGuard(() => navigate(target, false))) {
    // The browser has moved already: put the place back while the user decides.
    history.pushState(null, '', here);
    return;
  }
  here = target;
  sync();
});

function navigate(path: string, replace: boolean): void {
  if (leaveGuard && path !== here && !leaveGuard(() => navigate(path, replace))) return;
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  here = path;
  sync();
}

export function go(sessionId: string | null, turn: number | null = null, replace = false): void {
  navigate(sessionId ? `/s/${encodeURIComponent(sessionId)}${turn ? `?turn=${turn}` : ''}` : '/', replace);
}

export function goCharacters(characterId: string | null = null, replace = false): void {
  navigate(characterId ? `/characters/${encodeURIComponent(characterId)}` : '/characters', replace);
}

export function goWorld(worldId: string | null = null, entityId: string | null = null): void {
  const e = encodeURIComponent;
  navigate(worldId ? `/worlds/${e(worldId)}${entityId ? `/entities/${e(entityId)}` : ''}` : '/worlds', false);
}

export function goLorebook(lorebookId: string | null = null, replace = false): void {
  navigate(lorebookId ? `/lorebooks/${encodeURIComponent(lorebookId)}` : '/lorebooks', replace);
}

export function goControl(tab: ControlTab = 'account', replace = false): void {
  navigate(`/control/${tab}`, replace);
}

export function goWellbeing(tab: WellbeingTab = 'goals', personId: string | null = null, replace = false): void {
  const person = tab === 'people' && personId ? `/${encodeURIComponent(personId)}` : '';
  navigate(tab === 'goals' ? '/wellbeing' : `/wellbeing/${tab}${person}`, replace);
}
