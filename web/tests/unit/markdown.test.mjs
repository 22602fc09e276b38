import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderMarkdown } from '../../.unit/markdown.js';

test('HTML in the text is shown as text, never run', () => {
  const html = renderMarkdown('<img src=x onerror=alert(1)> and <script>bad()</script>');
  assert.ok(!html.includes('<img'));
  assert.ok(!html.includes('<script'));
  assert.match(html, /&lt;img src=x onerror=alert\(1\)&gt;/);
});

test('paragraphs, emphasis, lists and quotes render', () => {
  const html = renderMarkdown('The **door** is *open*.\nStill.\n\n- one\n- two\n\n> a whisper');
  assert.equal(
    html,
    '<p>The <strong>door</strong> is <em>open</em>.<br>Still.</p><ul><li>one</li><li>two</li></ul>' +
      '<blockquote><p>a whisper</p></blockquote>',
  );
});

test('web addresses become safe links; other schemes stay text', () => {
  const html = renderMarkdown('Call https://findahelpline.com. Not javascript:alert(1)');
  assert.match(html, /<a href="https:\/\/findahelpline\.com" target="_blank" rel="noopener noreferrer">/);
  assert.ok(html.includes('</a>. Not javascript:alert(1)'));
  const quoted = renderMarkdown('https://x.example/"onmouseover="alert(1)');
  assert.ok(!quoted.includes('"onmouseover'));
});

test('snake_case words are not italicised', () => {
  assert.equal(renderMarkdown('a snake_case_name here'), '<p>a snake_case_name here</p>');
});
