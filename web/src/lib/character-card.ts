// A character card's fields as the editor holds them, and back as a PATCH body: no
// imports, so the unit tests run it as it is.

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

/** What these helpers read of a character as the API answers it. */
export interface CardLike {
  name: string;
  card: { data?: Record<string, unknown> };
  taleweaver?: { avatar_url?: string | null; model_url?: string | null };
}

/** The embedded character book's name and entry count, if the card carries one. */
export interface EmbeddedBook {
  name: string;
  entries: number;
}

const text = (value: unknown): string => (typeof value === 'string' ? value : '');
const strings = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];

export function toForm(character: CardLike): CardForm {
  const data = character.card.data ?? {};
  const form = Object.fromEntries(TEXT_FIELDS.map((f) => [f, text(data[f])])) as Record<TextField, string>;
  return {
    ...form,
    alternate_greetings: strings(data['alternate_greetings']),
    group_only_greetings: strings(data['group_only_greetings']),
    tags: strings(data['tags']),
    avatar_url: character.taleweaver?.avatar_url ?? '',
    model_url: character.taleweaver?.model_url ?? '',
  };
}

/** Only the fields that differ from `before`, as the PATCH body wants them: the name
 * trimmed, an emptied address as null. */
export function changes(before: CardForm, after: CardForm): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(after) as (keyof CardForm)[]) {
    const value = after[key];
    if (JSON.stringify(value) === JSON.stringify(before[key])) continue;
    if (key === 'avatar_url' || key === 'model_url') out[key] = (value as string).trim() || null;
    else if (key === 'name') out[key] = (value as string).trim();
    else out[key] = value;
  }
  return out;
}

export function embeddedBook(character: CardLike): EmbeddedBook | null {
  const book = (character.card.data ?? {})['character_book'];
  if (!book || typeof book !== 'object') return null;
  const b = book as Record<string, unknown>;
  return {
    name: text(b['name']) || `${character.name}'s lorebook`,
    entries: Array.isArray(b['entries']) ? b['entries'].length : 0,
  };
}

/** The greetings a chat may open with, each with the number the server knows it by
 * (0: first_mes, then the alternates); empty ones left out, the others' numbers kept. */
export function greetings(character: CardLike): { index: number; text: string }[] {
  const data = character.card.data ?? {};
  return [text(data['first_mes']), ...strings(data['alternate_greetings'])]
    .map((t, index) => ({ index, text: t }))
    .filter((g) => g.text.trim() !== '');
}
