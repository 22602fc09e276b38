// Lorebooks (World Info): the books, their entries, and the activation preview,
// through /api/v1/lorebooks (see src/taleweaver/api/routes/lorebooks.py).

import { json } from './api';

export { entryMatches, entryTitle, reasonText } from './lorebook-text';

export type Logic = 'and_any' | 'not_all' | 'not_any' | 'and_all';
export type Position =
  | 'before_char'
  | 'after_char'
  | 'an_top'
  | 'an_bottom'
  | 'at_depth'
  | 'em_top'
  | 'em_bottom'
  | 'outlet';
export type Role = 'system' | 'user' | 'assistant';
export type ExportFormat = 'sillytavern' | 'lorebook_v3' | 'character_book' | 'novelai';

/** One entry, in Taleweaver's field names; null in an optional setting: the book's. */
export interface Entry {
  uid: string;
  keys: string[];
  secondary_keys: string[];
  content: string;
  comment: string;
  enabled: boolean;
  constant: boolean;
  selective: boolean;
  logic: Logic;
  order: number;
  position: Position;
  depth: number;
  role: Role;
  scan_depth: number | null;
  case_sensitive: boolean | null;
  match_whole_words: boolean | null;
  use_group_scoring: boolean | null;
  exclude_recursion: boolean;
  prevent_recursion: boolean;
  delay_until_recursion: number;
  probability: number;
  use_probability: boolean;
  group: string;
  group_override: boolean;
  group_weight: number;
  sticky: number;
  cooldown: number;
  delay: number;
  ignore_budget: boolean;
}

export type EntryFields = Omit<Entry, 'uid'>;

/** The fields the entry form edits and sends: a field the server adds later is left alone. */
export const ENTRY_FIELDS = [
  'keys',
  'secondary_keys',
  'content',
  'comment',
  'enabled',
  'constant',
  'selective',
  'logic',
  'order',
  'position',
  'depth',
  'role',
  'scan_depth',
  'case_sensitive',
  'match_whole_words',
  'use_group_scoring',
  'exclude_recursion',
  'prevent_recursion',
  'delay_until_recursion',
  'probability',
  'use_probability',
  'group',
  'group_override',
  'group_weight',
  'sticky',
  'cooldown',
  'delay',
  'ignore_budget',
] as const satisfies readonly (keyof EntryFields)[];

export interface BookSettings {
  scan_depth: number;
  token_budget: number | null;
  recursive: boolean;
  max_recursion_steps: number;
  case_sensitive: boolean;
  match_whole_words: boolean;
  use_group_scoring: boolean;
}

export interface LorebookSummary {
  id: string;
  name: string;
  format: string;
  entries: number;
  world_id: string | null;
}

export interface Lorebook extends LorebookSummary {
  version: number;
  settings: BookSettings;
  created_at: string;
  updated_at: string;
}

export interface LorebookDetail extends Lorebook {
  items: Entry[];
}

export interface Reimport {
  of: string;
  match: 'same content' | 'same name';
  outcome: 'update' | 'copy' | 'skip';
}

export interface LorebookImported extends LorebookSummary {
  duplicate: Reimport | null;
}

export interface Activated {
  ref: string;
  uid: string;
  comment: string;
  reason: string;
  step: number;
  matched: string[];
  position: string;
  content: string;
}

export interface Skipped {
  ref: string;
  uid: string;
  why: string;
}

export interface Activation {
  activated: Activated[];
  cut: Skipped[];
  rejected: Skipped[];
  steps: number;
}

export type OnDuplicate = 'update' | 'copy' | 'skip';

const q = encodeURIComponent;
const BOOKS = '/lorebooks';

export const lorebooks = {
  list: () => json<Lorebook[]>('GET', BOOKS),
  get: (id: string) => json<LorebookDetail>('GET', `${BOOKS}/${q(id)}`),
  /** A new, empty book: an import of SillyTavern World Info with no entries. */
  create: (name: string) =>
    json<LorebookImported>('POST', `${BOOKS}/import?name=${q(name)}&on_duplicate=copy`, { entries: {} }),
  /** Import a lorebook file's JSON; without `onDuplicate`, one imported before is a 409. */
  import: (data: unknown, filename: string, onDuplicate?: OnDuplicate) =>
    json<LorebookImported>(
      'POST',
      `${BOOKS}/import?filename=${q(filename)}${onDuplicate ? `&on_duplicate=${onDuplicate}` : ''}`,
      data,
    ),
  update: (
    id: string,
    change: { name?: string; world_id?: string | null; settings?: Partial<BookSettings> },
  ) => json<Lorebook>('PATCH', `${BOOKS}/${q(id)}`, change),
  remove: (id: string) => json<void>('DELETE', `${BOOKS}/${q(id)}`),
  exportUrl: (id: string, format: ExportFormat) => `/api/v1${BOOKS}/${q(id)}/export?format=${format}`,

  addEntry: (id: string, fields: Partial<EntryFields>) =>
    json<Entry>('POST', `${BOOKS}/${q(id)}/entries`, { content: '', ...fields }),
  updateEntry: (id: string, uid: string, fields: Partial<EntryFields>) =>
    json<Entry>('PATCH', `${BOOKS}/${q(id)}/entries/${q(uid)}`, fields),
  removeEntry: (id: string, uid: string) => json<void>('DELETE', `${BOOKS}/${q(id)}/entries/${q(uid)}`),

  /** Which entries would activate for this text (the player's words), and why. */
  preview: (id: string, text: string) => json<Activation>('POST', `${BOOKS}/${q(id)}/activate`, { text }),
};

export const POSITIONS: { value: Position; label: string }[] = [
  { value: 'before_char', label: 'Before the character' },
  { value: 'after_char', label: 'After the character' },
  { value: 'an_top', label: "Top of the author's note" },
  { value: 'an_bottom', label: "Bottom of the author's note" },
  { value: 'at_depth', label: 'At a depth in the chat' },
  { value: 'em_top', label: 'Top of the example messages' },
  { value: 'em_bottom', label: 'Bottom of the example messages' },
  { value: 'outlet', label: 'Outlet (only where a prompt names it)' },
];

export const LOGICS: { value: Logic; label: string }[] = [
  { value: 'and_any', label: 'Only if any of them also appears' },
  { value: 'and_all', label: 'Only if all of them also appear' },
  { value: 'not_any', label: 'Only if none of them appears' },
  { value: 'not_all', label: 'Unless all of them appear' },
];

export const FORMATS: { value: ExportFormat; label: string; hint: string }[] = [
  { value: 'sillytavern', label: 'SillyTavern World Info', hint: 'For SillyTavern and most apps' },
  { value: 'lorebook_v3', label: 'Lorebook v3', hint: 'The character card spec’s standalone lorebook' },
  { value: 'character_book', label: 'Character book', hint: 'To embed in a character card' },
  { value: 'novelai', label: 'NovelAI', hint: 'For NovelAI’s Lorebook' },
];

