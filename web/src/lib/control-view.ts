// The control room's pure parts: roles in words, calm explanations of refusals, the
// per-day spend, audit filters and number formats (no imports: unit-tested under node).

export type Role = 'owner' | 'admin' | 'editor' | 'reviewer' | 'player' | 'therapist' | 'viewer';
export type Scope = 'read' | 'write' | 'admin';

export const ROLES: readonly Role[] = ['owner', 'admin', 'editor', 'reviewer', 'player', 'therapist', 'viewer'];

/** What each role may do, in a person's words. */
export const ROLE_HELP: Record<Role, string> = {
  owner: 'Everything, including deleting the workspace and naming other owners',
  admin: 'Manages members, settings, secrets and the audit log; plays and writes',
  editor: 'Plays, writes worlds and characters, sees token spend',
  reviewer: 'Reads everything and reviews what the narrator proposes for the world',
  player: 'Plays their own sessions',
  therapist: 'Reads their own and their assigned players’ sessions and care records',
  viewer: 'Reads, changes nothing',
};

/** Roles that may manage members, settings, secrets and read the audit log and spend. */
export function manages(role: Role | null | undefined): boolean {
  return role === 'owner' || role === 'admin';
}

/** Roles that may read token spend and budgets. */
export function seesUsage(role: Role | null | undefined): boolean {
  return manages(role) || role === 'editor';
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  workspace_id: string | null;
  target: string | null;
  details: Record<string, unknown>;
  hash: string;
}

/** A failed request as the API client describes it (its ApiError). */
interface Failure {
  status: number;
  title: string;
  detail: string;
  body: Record<string, unknown>;
}

function failure(error: unknown): Failure | null {
  if (typeof error !== 'object' || error === null || !('status' in error) || !('body' in error)) return null;
  return error as Failure;
}

/**
 * What a refusal means, calmly: `what` names the thing ("the members"), the answer
 * says what happened and what to do.
 */
export function explain(thrown: unknown, what: string): string {
  const error = failure(thrown);
  if (error) {
    if (error.status === 401) return `You are signed out, so ${what} cannot be shown. Sign in again to continue.`;
    if (error.status === 403)
      return `Your role here does not include ${what}. Ask an owner or admin of this workspace if you need it.`;
    if (error.status === 404)
      return `${capitalize(what)} could not be found: it may have been removed, or you are no longer a member. Choose another workspace above.`;
    if (error.status === 0) return error.detail;
    if (error.status === 422) return `${firstError(error) ?? error.detail ?? 'That was not accepted.'} Correct it and try again.`;
    if (error.status === 429) return error.detail;
    const said = (error.detail || error.title).replace(/\.$/, '');
    return /try again/i.test(said) ? `${said}.` : `${said}. Try again in a moment.`;
  }
  return 'Something went wrong. Try again in a moment.';
}

/** Whether the answer was "not for you" (hide the feature) rather than a failure. */
export function refused(error: unknown): boolean {
  const failed = failure(error);
  return failed !== null && (failed.status === 403 || failed.status === 404);
}

function firstError(error: Failure): string | null {
  const errors = error.body['errors'];
  if (!Array.isArray(errors) || errors.length === 0) return null;
  const first = errors[0] as { msg?: unknown };
  return typeof first.msg === 'string' ? capitalize(first.msg.replace(/^Value error, /, '')) + '.' : null;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export const SECRET_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/** Starts of the last `days` days (local midnight), oldest first, and today's end. */
export function dayStarts(now: Date, days: number): Date[] {
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  return Array.from({ length: days }, (_, i) => new Date(today.getFullYear(), today.getMonth(), today.getDate() - (days - 1 - i)));
}

/**
 * Per-day amounts from running totals "since the start of each day": the spend of day
 * i is what was spent since its start less what was spent since the next day's.
 */
export function perDay(sinceTotals: number[]): number[] {
  return sinceTotals.map((total, i) => Math.max(0, total - (sinceTotals[i + 1] ?? 0)));
}

export function formatTokens(n: number): string {
  if (n >= 1_000_000) return `${(n / 1_000_000).toFixed(n >= 10_000_000 ? 0 : 1)}M`;
  if (n >= 10_000) return `${Math.round(n / 1000)}k`;
  if (n >= 1000) return `${(n / 1000).toFixed(1)}k`;
  return String(n);
}

export function formatUsd(n: number): string {
  if (n === 0) return '$0';
  if (n < 0.01) return '<$0.01';
  return `$${n.toFixed(2)}`;
}

/** A short, readable "when" for lists: today's time, or the date. */
export function when(iso: string | null, now = new Date()): string {
  if (!iso) return 'never';
  const at = new Date(iso);
  const sameDay = at.toDateString() === now.toDateString();
  return sameDay
    ? at.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
    : at.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

const ACTIONS: Record<string, string> = {
  'api_key.created': 'API key created',
  'api_key.revoked': 'API key revoked',
  'api_key.used': 'API key used',
  'member.role_changed': 'Member added or role changed',
  'member.removed': 'Member removed',
  'login.succeeded': 'Signed in',
  'login.failed': 'Sign-in refused',
  'login.locked': 'Sign-in locked after failures',
  'user.renamed': 'Display name changed',
  'flag.set': 'Feature switched',
  'flag.cleared': 'Feature back to its default',
};

/** An audit action ("secret.created") in words ("Secret created"). */
export function actionLabel(action: string): string {
  return ACTIONS[action] ?? capitalize(action.replace(/[._]/g, ' '));
}

/** One entry's headline: its action, told more exactly where its details allow. */
export function entryTitle(entry: AuditEntry): string {
  if (entry.action === 'member.role_changed') return entry.details['from'] == null ? 'Member added' : 'Role changed';
  if (entry.action === 'flag.set') return entry.details['enabled'] === false ? 'Feature switched off' : 'Feature switched on';
  return actionLabel(entry.action);
}

/** "a viewer", "an editor". */
export function withArticle(word: string): string {
  return `${/^[aeiou]/i.test(word) ? 'an' : 'a'} ${word}`;
}

export interface AuditFilter {
  action: string;
  actor: string;
  text: string;
}

/** The entries matching a filter, newest first. */
export function filterAudit(entries: AuditEntry[], filter: AuditFilter): AuditEntry[] {
  const text = filter.text.trim().toLowerCase();
  return entries
    .filter(
      (e) =>
        (!filter.action || e.action === filter.action) &&
        (!filter.actor || e.actor === filter.actor) &&
        (!text ||
          e.action.toLowerCase().includes(text) ||
          (e.target ?? '').toLowerCase().includes(text) ||
          JSON.stringify(e.details).toLowerCase().includes(text)),
    )
    .sort((a, b) => b.seq - a.seq);
}
