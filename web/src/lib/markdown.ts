// A small, safe Markdown renderer for story text: everything is escaped first, then a
// few inline forms (bold, italic, code) and paragraphs, lists and quotes are added.
// No HTML from the text ever reaches the page, so nothing needs sanitising after.

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

function inline(text: string): string {
  return escapeHtml(text)
    .replace(/`([^`\n]+)`/g, '<code>$1</code>')
    .replace(/\*\*([^*\n]+)\*\*/g, '<strong>$1</strong>')
    .replace(/__([^_\n]+)__/g, '<strong>$1</strong>')
    .replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, '$1<em>$2</em>')
    .replace(/(^|[^_\w])_([^_\n]+)_(?!\w)/g, '$1<em>$2</em>')
    .replace(/\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)]/g, (url) => `<a href="${url}" target="_blank" rel="noopener noreferrer">${url}</a>`);
}

function block(lines: string[]): string {
  if (lines.every((l) => /^\s*[-*]\s+/.test(l))) {
    return `<ul>${lines.map((l) => `<li>${inline(l.replace(/^\s*[-*]\s+/, ''))}</li>`).join('')}</ul>`;
  }
  if (lines.every((l) => /^\s*\d+[.)]\s+/.test(l))) {
    return `<ol>${lines.map((l) => `<li>${inline(l.replace(/^\s*\d+[.)]\s+/, ''))}</li>`).join('')}</ol>`;
  }
  if (lines.every((l) => /^\s*>/.test(l))) {
    return `<blockquote>${block(lines.map((l) => l.replace(/^\s*>\s?/, '')))}</blockquote>`;
  }
  const heading = /^(#{1,3})\s+(.*)$/.exec(lines[0] ?? '');
  if (heading && lines.length === 1) {
    const level = (heading[1] ?? '#').length + 2; // h3..h5: headings inside a message stay small
    return `<h${level}>${inline(heading[2] ?? '')}</h${level}>`;
  }
  return `<p>${lines.map(inline).join('<br>')}</p>`;
}

/** HTML for `text`; safe to insert with innerHTML. */
export function renderMarkdown(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .split(/\n\s*\n/)
    .map((part) => part.split('\n').filter((l) => l.trim() !== ''))
    .filter((lines) => lines.length > 0)
    .map(block)
    .join('');
}
