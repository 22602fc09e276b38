// How the lorebook screens word entries and activations: plain functions, no requests.

interface Named {
  uid: string;
  comment: string;
  keys: string[];
}

interface Searchable extends Named {
  content: string;
  secondary_keys: string[];
}

/** An entry's name as a list shows it: its comment, else its first keys. */
export function entryTitle(entry: Named): string {
  if (entry.comment.trim()) return entry.comment.trim();
  if (entry.keys.length) return entry.keys.slice(0, 3).join(', ');
  return `Entry ${entry.uid}`;
}

/** Whether an entry matches a search: in its title, keys or content, ignoring case. */
export function entryMatches(entry: Searchable, needle: string): boolean {
  const text = needle.trim().toLowerCase();
  if (!text) return true;
  return [entry.comment, entry.content, ...entry.keys, ...entry.secondary_keys].some((s) =>
    s.toLowerCase().includes(text),
  );
}

/** The engine's reason for an activation, in words for the preview: entries by title. */
export function reasonText(reason: string, title: (uid: string) => string): string {
  const text = reason === 'constant' ? 'always active' : reason;
  const named = text.replace(/\b(from|to) entry (\S+?)(?=[\s,)]|$)/g, (_, word: string, uid: string) => `${word} “${title(uid)}”`);
  return named.charAt(0).toUpperCase() + named.slice(1);
}
