// The control room's side of the HTTP API: account and API keys, workspaces with
// their members, settings, flags and secrets, models and their health, token spend
// and budgets, and the audit log. Plus the small pure helpers its screens share.

import { ApiError, currentWorkspace, json } from './api';
import type { Me } from './types';
import type { AuditEntry, Role, Scope } from './control-view';

export * from './control-view';

export interface Workspace {
  id: string;
  name: string;
  sensitive: boolean;
  created_at: string;
  role: Role | null;
  /** Where requests without an X-Workspace header act. */
  default: boolean;
}

export interface Member {
  user_id: string;
  email: string;
  display_name: string;
  role: Role;
}

export interface User {
  id: string;
  email: string;
  display_name: string;
  is_instance_admin: boolean;
}

export interface ApiKey {
  id: string;
  name: string;
  scopes: Scope[];
  workspace_id: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface ApiKeyCreated extends ApiKey {
  /** The secret itself: shown this once only. */
  key: string;
}

export interface Flag {
  name: string;
  description: string;
  default: boolean;
  enabled: boolean;
  updated_at: string | null;
  updated_by: string | null;
}

export interface Secret {
  name: string;
  updated_at: string;
}

export interface ModelInfo {
  alias: string;
  name: string;
  provider: string;
  kind: string;
  model: string;
  type: 'chat' | 'embedding';
  price: { input_usd_per_mtok: number; output_usd_per_mtok: number };
  tasks: string[];
}

export interface Models {
  models: ModelInfo[];
  routes: Record<string, string[]>;
}

export interface ProviderHealth {
  status: 'ok' | 'error';
  kind: string;
  models: string[];
  breaker: string | null;
  latency_ms: number;
  detail: string | null;
}

export interface ModelsHealth {
  status: 'ok' | 'error';
  detail: string | null;
  providers: Record<string, ProviderHealth>;
}

export interface UsageTotals {
  calls: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cost_usd: number;
}

export interface Budget {
  scope: 'workspace' | 'session';
  period: string;
  limit_usd: number;
  spent_usd: number;
  remaining_usd: number;
  warn_at: number;
  level: 'ok' | 'warning' | 'exceeded';
}

export interface WorkspaceUsage {
  workspace_id: string;
  since: string | null;
  totals: UsageTotals;
  by_task: (UsageTotals & { task: string })[];
  by_model: (UsageTotals & { model: string; provider: string })[];
  by_session: (UsageTotals & { session_id: string | null })[];
  budgets: Budget[];
}

export interface SessionUsage {
  session_id: string;
  totals: UsageTotals;
  by_task: (UsageTotals & { task: string })[];
  by_model: (UsageTotals & { model: string; provider: string })[];
  budgets: Budget[];
}


const q = encodeURIComponent;

export const control = {
  me: () => json<Me>('GET', '/auth/me'),
  rename: (displayName: string) => json<User>('PATCH', '/auth/me', { display_name: displayName }),
  logout: () => json<void>('POST', '/auth/logout'),

  keys: () => json<ApiKey[]>('GET', '/auth/keys'),
  createKey: (name: string, scopes: Scope[], workspaceId: string | null) =>
    json<ApiKeyCreated>('POST', '/auth/keys', { name, scopes, workspace_id: workspaceId }),
  revokeKey: (id: string) => json<ApiKey>('DELETE', `/auth/keys/${q(id)}`),

  workspaces: () => json<Workspace[]>('GET', '/workspaces'),
  createWorkspace: (name: string, sensitive: boolean) =>
    json<Workspace>('POST', '/workspaces', { name, sensitive }),
  updateWorkspace: (id: string, change: { name?: string; sensitive?: boolean }) =>
    json<Workspace>('PATCH', `/workspaces/${q(id)}`, change),

  members: (ws: string) => json<Member[]>('GET', `/workspaces/${q(ws)}/members`),
  setMember: (ws: string, userId: string, role: Role) =>
    json<Member[]>('PUT', `/workspaces/${q(ws)}/members/${q(userId)}`, { role }),
  removeMember: (ws: string, userId: string) =>
    json<void>('DELETE', `/workspaces/${q(ws)}/members/${q(userId)}`),
  /** Every account on the instance (instance administrators only). */
  users: () => json<User[]>('GET', '/users'),

  secrets: (ws: string) => json<Secret[]>('GET', `/workspaces/${q(ws)}/secrets`),
  setSecret: (ws: string, name: string, value: string) =>
    json<Secret>('PUT', `/workspaces/${q(ws)}/secrets/${q(name)}`, { value }),
  deleteSecret: (ws: string, name: string) => json<void>('DELETE', `/workspaces/${q(ws)}/secrets/${q(name)}`),

  flags: () => json<Flag[]>('GET', '/flags'),
  setFlag: (name: string, enabled: boolean) => json<Flag>('PUT', `/flags/${q(name)}`, { enabled }),
  clearFlag: (name: string) => json<Flag>('DELETE', `/flags/${q(name)}`),

  models: () => json<Models>('GET', '/models'),
  /** Each provider's health; a 503 (some task has no working model) is an answer too. */
  async health(): Promise<ModelsHealth> {
    try {
      return await json<ModelsHealth>('GET', '/models/health');
    } catch (e) {
      if (e instanceof ApiError && e.status === 503 && 'providers' in e.body) return e.body as unknown as ModelsHealth;
      throw e;
    }
  },
  usage: (since: Date | null = null) =>
    json<WorkspaceUsage>('GET', since ? `/usage?since=${q(since.toISOString())}` : '/usage'),
  sessionUsage: (sessionId: string) => json<SessionUsage>('GET', `/sessions/${q(sessionId)}/usage`),

  audit: (ws: string, after: number, limit: number) =>
    json<AuditEntry[]>('GET', `/workspaces/${q(ws)}/audit?after=${after}&limit=${limit}`),

  /** Whether this server offers single sign-on (its start answers with a redirect). */
  async ssoAvailable(): Promise<boolean> {
    try {
      const response = await fetch('/api/v1/auth/oidc/login?next=%2F', {
        redirect: 'manual',
        credentials: 'same-origin',
      });
      return response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400);
    } catch {
      return false;
    }
  },
};

/** The workspace requests act in now: the one chosen on this device, or the default. */
export function activeWorkspace(list: Workspace[]): Workspace | null {
  const chosen = currentWorkspace();
  return list.find((w) => w.id === chosen) ?? list.find((w) => w.default) ?? list[0] ?? null;
}

/** Every audit entry after `after`, page by page, up to `cap` entries. */
export async function auditAll(ws: string, cap = 5000, page = 500): Promise<AuditEntry[]> {
  const found: AuditEntry[] = [];
  let after = 0;
  while (found.length < cap) {
    const rows = await control.audit(ws, after, page);
    found.push(...rows);
    const last = rows[rows.length - 1];
    if (rows.length < page || !last) break;
    after = last.seq;
  }
  return found;
}

