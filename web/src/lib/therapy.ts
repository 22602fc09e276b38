// The wellbeing (therapy) side of the HTTP API: a player's profile with consent and
// retention, goals, PHQ-9 / GAD-7 check-ins and progress; for therapists, the players
// they support and the crisis flags to acknowledge. `me` stands for the signed-in user.

import { ApiError, json } from './api';
import type { GoalStatus, Instrument } from './therapy-view';

export * from './therapy-view';

export interface Consent {
  therapy_data: boolean;
  emotion_tracking: boolean;
  at: string;
  by: string;
}

export interface CrisisContact {
  name: string;
  phone?: string | null;
  email?: string | null;
  relation?: string | null;
}

export interface Profile {
  user_id: string;
  approaches: string[];
  intensity: number;
  avoid_topics: string[];
  crisis_contacts: CrisisContact[];
  consent: Consent;
  retention_days: number;
  created_at: string;
  updated_at: string;
}

export interface ProfileChange {
  consent: { therapy_data: boolean; emotion_tracking: boolean };
  retention_days?: number | null;
}

export interface Goal {
  id: string;
  title: string;
  description: string;
  approach: string | null;
  progress: number;
  status: GoalStatus;
  created_at: string;
  updated_at: string;
}

export interface GoalChange {
  title?: string;
  description?: string;
  progress?: number;
  status?: GoalStatus;
}

export interface InstrumentText {
  instrument: Instrument;
  name: string;
  question: string;
  items: string[];
  answers: string[];
}

export interface Assessment {
  id: string | null;
  instrument: Instrument;
  answers: number[];
  score: number;
  severity: string;
  taken_at: string;
}

export interface CrisisResource {
  name: string;
  contact?: string;
  url?: string;
  [key: string]: string | undefined;
}

export interface Crisis {
  message: string;
  resources: CrisisResource[];
}

export interface AssessmentResult extends Assessment {
  stored: boolean;
  crisis: Crisis | null;
}

export interface Progress {
  bucket: 'day' | 'week' | 'month';
  goals: { goal_id: string; title: string; points: { start: string; progress: number }[] }[];
  assessments: {
    instrument: Instrument;
    points: { start: string; count: number; mean: number; last: number; severity: string }[];
  }[];
}

export interface Person {
  user_id: string;
  email: string;
  display_name: string | null;
  open_flags: number;
}

export interface Flag {
  id: string;
  user_id: string;
  session_id: string | null;
  level: string;
  categories: string[];
  source: string;
  paused: boolean;
  status: 'open' | 'resolved';
  detail: Record<string, unknown>;
  created_at: string;
  resolved_at: string | null;
  resolved_by: string | null;
}

export interface WorkspaceRole {
  id: string;
  name: string;
  role: string | null;
  default: boolean;
}

const q = encodeURIComponent;
const player = (id: string) => `/players/${q(id)}`;

export const therapy = {
  instruments: () => json<InstrumentText[]>('GET', '/therapy/instruments'),
  workspaces: () => json<WorkspaceRole[]>('GET', '/workspaces'),

  /** The profile, or null when the player has not chosen about consent yet. */
  profile: async (id: string): Promise<Profile | null> => {
    try {
      return await json<Profile>('GET', `${player(id)}/profile`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && /no therapy profile/.test(e.detail)) return null;
      throw e;
    }
  },
  /** Set consent and retention, keeping the rest of the profile as it was. */
  saveProfile: (id: string, current: Profile | null, change: ProfileChange) =>
    json<Profile>('PUT', `${player(id)}/profile`, {
      approaches: current?.approaches ?? [],
      intensity: current?.intensity ?? 2,
      avoid_topics: current?.avoid_topics ?? [],
      crisis_contacts: (current?.crisis_contacts ?? []).map((c) =>
        Object.fromEntries(Object.entries(c).filter(([, v]) => v !== null && v !== undefined)),
      ),
      consent: change.consent,
      retention_days: change.retention_days ?? current?.retention_days ?? null,
    }),

  goals: (id: string) => json<Goal[]>('GET', `${player(id)}/goals`),
  createGoal: (id: string, title: string, description: string) =>
    json<Goal>('POST', `${player(id)}/goals`, { title, description }),
  updateGoal: (id: string, goalId: string, change: GoalChange) =>
    json<Goal>('PATCH', `${player(id)}/goals/${q(goalId)}`, change),
  deleteGoal: (id: string, goalId: string) => json<void>('DELETE', `${player(id)}/goals/${q(goalId)}`),

  assessments: (id: string) => json<Assessment[]>('GET', `${player(id)}/assessments`),
  takeAssessment: (id: string, instrument: Instrument, answers: number[]) =>
    json<AssessmentResult>('POST', `${player(id)}/assessments`, { instrument, answers }),
  progress: (id: string, bucket: Progress['bucket'] = 'day') =>
    json<Progress>('GET', `${player(id)}/progress?bucket=${bucket}`),
  export: (id: string) => json<Record<string, unknown>>('GET', `${player(id)}/export`),

  /** The players whose records you follow (403 for players themselves). */
  people: () => json<Person[]>('GET', '/therapy/players'),
  flags: (id: string) => json<Flag[]>('GET', `/safety/flags?player_id=${q(id)}&limit=50`),
  acknowledge: (id: string, flagId: string) =>
    json<Flag>('POST', `${player(id)}/flags/${q(flagId)}/acknowledge`),
  resume: (sessionId: string) => json<unknown>('POST', `/sessions/${q(sessionId)}/safety/resume`),
};

/** What went wrong, said calmly, with what to do. */
export function calmly(e: unknown, about = 'this'): string {
  if (e instanceof ApiError) {
    if (e.status === 403) return `Your role in this workspace doesn't include ${about}. A workspace owner can change that.`;
    if (e.status === 404) return `We couldn't find ${about}. It may have been removed, or it isn't shared with you.`;
    if (e.status === 409 && /consent/i.test(e.detail)) return 'Saving needs your agreement first: see Privacy.';
    if (e.status === 0) return e.detail;
    return e.detail || e.title;
  }
  return e instanceof Error ? e.message : String(e);
}
