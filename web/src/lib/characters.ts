// Characters: their cards read, edited field by field, exported and deleted,
// through /api/v1/characters (see src/taleweaver/api/routes/characters.py).

import { json } from './api';
import type { Character, Session } from './types';

export { changes, embeddedBook, greetings, TEXT_FIELDS, toForm } from './character-card';
export type { CardForm, EmbeddedBook, TextField } from './character-card';

const q = encodeURIComponent;
const BASE = '/api/v1';

export type ExportFormat = 'png' | 'json' | 'charx';
export type OnDuplicate = 'update' | 'copy' | 'skip';

export interface CharacterDetail extends Character {
  lorebook_id: string | null;
  created_at: string;
  edited: boolean;
  taleweaver: { voice?: Record<string, unknown>; avatar_url?: string | null; model_url?: string | null };
  assets: { kind: 'image' | 'file'; path: string; media_type: string; size: number }[];
  duplicate?: { of: string; match: string; outcome: OnDuplicate } | null;
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
