// The wellbeing screens' pure helpers: gentle words for scores and bands, retention
// choices, and the geometry of the small line charts. No I/O, so unit-tested alone.

export type Instrument = 'phq9' | 'gad7';
export type GoalStatus = 'active' | 'paused' | 'achieved';

export const INSTRUMENT_NAMES: Record<Instrument, string> = { phq9: 'PHQ-9', gad7: 'GAD-7' };
export const INSTRUMENT_ABOUT: Record<Instrument, string> = {
  phq9: 'Nine questions about mood and energy over the last two weeks.',
  gad7: 'Seven questions about worry and tension over the last two weeks.',
};
/** The highest possible score: 3 for each item. */
export const MAX_SCORE: Record<Instrument, number> = { phq9: 27, gad7: 21 };
/** Where each band begins (its lowest score), lowest first: the charts' quiet guides. */
export const BAND_STARTS: Record<Instrument, number[]> = { phq9: [5, 10, 15, 20], gad7: [5, 10, 15] };
/** PHQ-9's ninth item: any answer above "Not at all" raises the crisis protocol. */
export const SELF_HARM_ITEM = 9;

/** A band's name as a sentence can hold it: "in the range usually called mild". */
export function bandPhrase(severity: string): string {
  const name = severity.trim().toLowerCase();
  return name === 'minimal' ? 'in the range usually called minimal' : `in the range usually called ${name}`;
}

/** A kind word to go with a result: never alarming, always pointing to people. */
export function bandNote(severity: string): string {
  const name = severity.trim().toLowerCase();
  if (name === 'minimal') return 'It sounds like these two weeks have been fairly steady. Keep noticing what helps.';
  if (name === 'mild') return 'Some of this has been weighing on you. Small, kind routines and talking to someone can help.';
  return 'This has been a lot to carry. You don’t have to carry it alone: sharing this with your therapist, or someone you trust, can really help.';
}

/** "12 of 27". */
export function scoreOf(score: number, instrument: Instrument): string {
  return `${score} of ${MAX_SCORE[instrument]}`;
}

export interface RetentionChoice {
  days: number;
  label: string;
}

export const RETENTION_CHOICES: RetentionChoice[] = [
  { days: 30, label: '1 month' },
  { days: 90, label: '3 months' },
  { days: 180, label: '6 months' },
  { days: 365, label: '1 year' },
  { days: 730, label: '2 years' },
  { days: 1825, label: '5 years' },
];

/** The retention choices, with `current` among them even when it is none of the usual. */
export function retentionChoices(current: number | null): RetentionChoice[] {
  if (current === null || RETENTION_CHOICES.some((c) => c.days === current)) return RETENTION_CHOICES;
  const own = { days: current, label: `${current} days` };
  return [...RETENTION_CHOICES, own].sort((a, b) => a.days - b.days);
}

export function retentionLabel(days: number): string {
  return RETENTION_CHOICES.find((c) => c.days === days)?.label ?? `${days} days`;
}

export const GOAL_STATUS_LABELS: Record<GoalStatus, string> = {
  active: 'In progress',
  paused: 'Resting for now',
  achieved: 'Reached',
};

/** A day as people say it ("12 Mar"), with the year only when it is not this one. */
export function shortDate(iso: string, now: Date = new Date()): string {
  const day = new Date(iso.length === 10 ? `${iso}T12:00:00` : iso);
  if (Number.isNaN(day.getTime())) return iso;
  const sameYear = day.getFullYear() === now.getFullYear();
  return day.toLocaleDateString(undefined, sameYear ? { day: 'numeric', month: 'short' } : { day: 'numeric', month: 'short', year: 'numeric' });
}

// --- charts ---------------------------------------------------------------------------

export interface ChartBox {
  width: number;
  height: number;
  /** Room for the axis labels: left, right, top, bottom. */
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export interface SeriesPoint {
  /** Sorts the points in time: an ISO date or time. */
  at: string;
  value: number;
  /** How the point's time is said ("12 Mar"). */
  label: string;
}

export interface Plotted extends SeriesPoint {
  x: number;
  y: number;
}

/** Every distinct time the series have a point at, oldest first: the shared x axis. */
export function timeline(series: SeriesPoint[][]): string[] {
  return [...new Set(series.flat().map((p) => p.at))].sort();
}

/** A series' points on the box: evenly spaced along the shared timeline, 0 at the
 * bottom and `max` at the top; a lone time sits in the middle. */
export function plot(points: SeriesPoint[], keys: string[], max: number, box: ChartBox): Plotted[] {
  const inner = box.width - box.left - box.right;
  return [...points]
    .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0))
    .map((p) => {
      const i = Math.max(keys.indexOf(p.at), 0);
      return {
        ...p,
        x: box.left + (keys.length <= 1 ? inner / 2 : (inner * i) / (keys.length - 1)),
        y: yOf(p.value, max, box),
      };
    });
}

/** An SVG path through the points ("M x y L x y …"), empty for none. */
export function pathOf(points: { x: number; y: number }[]): string {
  return points.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(' ');
}

/** The y of a value on the box's scale (for guide lines). */
export function yOf(value: number, max: number, box: ChartBox): number {
  const tall = box.height - box.top - box.bottom;
  return box.top + tall - (Math.min(Math.max(value, 0), max) / (max || 1)) * tall;
}

/** A sentence describing a series, for people who do not see the chart. */
export function describeSeries(name: string, points: SeriesPoint[], unit = ''): string {
  if (points.length === 0) return `${name}: nothing recorded yet.`;
  const first = points[0]!;
  const last = points[points.length - 1]!;
  if (points.length === 1) return `${name}: ${last.value}${unit} on ${last.label}.`;
  return `${name}: from ${first.value}${unit} on ${first.label} to ${last.value}${unit} on ${last.label}, ${points.length} points.`;
}

/** The server's crisis message as a check-in can say it: the protocol's words are
 * written for a story, so sentences about pausing the story are left out. */
export function checkInMessage(message: string): string {
  const kept = message
    .split(/(?<=[.!?])\s+/)
    .filter((sentence) => !/\bstory\b/i.test(sentence))
    .join(' ')
    .trim();
  return kept || 'If you are in immediate danger, please call your local emergency number now.';
}
