// Characters: their cards read, edited field by field, exported and deleted,
// through /api/v1/characters (see src/taleweaver/api/routes/characters.py).

import { json } from './api';
import type { Character, Session } from './types';

const q = encodeURIComponent;
const BASE = '/api/v1';

export type ExportFormat = 'png' | 'json' | 'charx';
export type OnDuplicate = 'update' | 'copy' | 'skip';

/** The card's text fields the editor changes, by their Character Card V2/V3 names. */
export const TEXT_FIELDS = [
  'name',
  'nickname',
  'description',
  'personality',
  'scenario',
  'first_mes',
  'mes_example',
  'creator_notes',
  'system_prompt',
  'post_history_instructions',
  'creator',
  'character_version',
] as const;
export type TextField = (typeof TEXT_FIELDS)[number];

/** What the editor holds: every editable card field, and Taleweaver's own links. */
export type CardForm = Record<TextField, string> & {
  alternate_greetings: string[];
  group_only_greetings: string[];
  tags: string[];
  avatar_url: string;
  model_url: string;
};

export interface CharacterDetail extends Character {
  lorebook_id: string | null;
  created_at: string;
  edited: boolean;
  taleweaver: { voice?: Record<string, unknown>; avatar_url?: string | null; model_url?: string | null };
  assets: { kind: 'image' | 'file'; path: string; media_type: string; size: number }[];
  duplicate?: { of: string; match: string; outcome: OnDuplicate } | null;
}

/** The embedded character book's name and entry count, if the card carries one. */
export interface EmbeddedBook {
  name: string;
  entries: number;
}

const text = (value: unknown): string => (typeof value === 'string' ? value : '');
const strings = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];

export function toForm(character: CharacterDetail): CardForm {
  const data = (character.card.data ?? {}) as Record<string, unknown>;
  const form = Object.fromEntries(TEXT_FIELDS.map((f) => [f, text(data[f])])) as Record<TextField, string>;
  return {
    ...form,
    alternate_greetings: strings(data['alternate_greetings']),
    group_only_greetings: strings(data['group_only_greetings']),
    tags: strings(data['tags']),
    avatar_url: character.taleweaver.avatar_url ?? '',
    model_url: character.taleweaver.model_url ?? '',
  };
}

/** Only the fields that differ from `before`, as the PATCH body wants them. */
export function changes(before: CardForm, after: CardForm): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(after) as (keyof CardForm)[]) {
    const a = after[key];
    if (JSON.stringify(a) === JSON.stringify(before[key])) continue;
    if (key === 'avatar_url' || key === 'model_url') out[key] = (a as string).trim() || null;
    else if (key === 'name') out[key] = (a as string).trim();
    else out[key] = a;
  }
  return out;
}

export function embeddedBook(character: CharacterDetail): EmbeddedBook | null {
  const book = ((character.card.data ?? {}) as Record<string, unknown>)['character_book'];
  if (!book || typeof book !== 'object') return null;
  const b = book as Record<string, unknown>;
  return {
    name: text(b['name']) || `${character.name}'s lorebook`,
    entries: Array.isArray(b['entries']) ? b['entries'].length : 0,
  };
}

/** The greetings a chat may open with, each with the index the server numbers it by
 * (0: first_mes, then the alternates); empty ones left out, their numbers kept. */
export function greetings(character: Character): { index: number; text: string }[] {
  const data = (character.card.data ?? {}) as Record<string, unknown>;
  return [text(data['first_mes']), ...strings(data['alternate_greetings'])]
    .map((t, index) => ({ index, text: t }))
    .filter((g) => g.text.trim() !== '');
}

export const characters = {
  get: (id: string) => json<CharacterDetail>('GET', `/characters/${q(id)}`),
  update: (id: string, fields: Record<string, unknown>) =>
    json<CharacterDetail>('PATCH', `/characters/${q(id)}`, fields),
  remove: (id: string) => json<void>('DELETE', `/characters/${q(id)}`),
  import: (file: File, onDuplicate?: OnDuplicate) =>
    json<CharacterDetail>(
      'POST',
      `/characters/import?filename=${q(file.name)}${onDuplicate ? `&on_duplicate=${onDuplicate}` : ''}`,
      file,
    ),
  chat: (id: string, greeting: number | null) =>
    json<Session>('POST', `/characters/${q(id)}/sessions`, greeting === null ? {} : { greeting }),
  exportUrl: (id: string, format: ExportFormat, relationship = false) =>
    `${BASE}/characters/${q(id)}/export?format=${format}${relationship ? '&relationship=true' : ''}`,
  avatarUrl: (id: string) => `${BASE}/characters/${q(id)}/avatar`,
};
