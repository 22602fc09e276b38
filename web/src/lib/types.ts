// The API's shapes, as the web app uses them (see /openapi.json).

export type SessionKind = 'story' | 'companion' | 'studio' | 'therapy';

export interface Session {
  id: string;
  kind: SessionKind;
  title: string;
  pinned: boolean;
  archived: boolean;
  version: number;
  turn_count: number;
  forked_from: string | null;
  settings: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

export interface SessionPage {
  items: Session[];
  total: number;
  next_offset: number | null;
}

export interface Alternative {
  text: string;
  choices: string[];
}

export interface Message {
  id: string;
  turn_id: string;
  turn_number: number;
  role: 'player' | 'narrator';
  content: string;
  choices: string[];
  alternatives: Alternative[];
  active: number;
  created_at: string;
}

export interface Me {
  user_id: string;
  email: string;
  display_name: string | null;
  via: string;
  is_instance_admin: boolean;
  login_required: boolean;
}

export interface Safety {
  level: 'safe' | 'warning' | 'blocked';
  crisis: boolean;
  crisis_level: string;
  categories: string[];
  action: string;
}

/** A continuity finding on a reply: what the world bible says against it. */
export interface Finding {
  id: string | null;
  kind: string;
  summary: string;
  entity_ids: string[];
}

export interface Turn {
  id: string;
  number: number;
  action: string;
  status: 'completed' | 'cancelled';
  reply: { text: string; choices: { number: number; text: string }[] } | null;
  safety: Safety;
}

export interface SearchHit {
  message_id: string;
  session_id: string;
  session_title: string;
  turn_number: number;
  role: string;
  snippet: string;
}

export type TurnBody =
  | { text: string }
  | { choice: number }
  | { action: 'continue' | 'regenerate' }
  | { action: 'edit'; text: string };

export interface CharacterSummary {
  id: string;
  name: string;
  display_name: string;
  format: 'png' | 'json' | 'charx';
  spec: string;
  tags: string[];
  updated_at: string;
}

export interface Character extends CharacterSummary {
  card: { data?: Record<string, unknown> } & Record<string, unknown>;
  has_avatar: boolean;
}

export interface World {
  id: string;
  name: string;
  description: string;
}

export interface SourceRef {
  session_id?: string;
  turn_id?: string;
}

export interface Artifact {
  id: string;
  session_id: string;
  kind: 'entity' | 'fact' | 'relation' | 'event' | string;
  payload: Record<string, unknown>;
  confidence: Record<string, number>;
  status: string;
}

export interface Fact {
  id: string;
  attribute: string;
  value: unknown;
  valid_from: number | string | null;
  valid_to: number | string | null;
  source_refs: SourceRef[];
}

export interface Relation {
  id: string;
  source_id: string;
  type: string;
  target_id: string;
}

export interface Entity {
  id: string;
  type: string;
  name: string;
  aliases: string[];
  summary: string;
  status: string;
  source_refs: SourceRef[];
  facts?: Fact[];
  relations?: Relation[];
}

/** One piece of what the narrator saw (or was cut), and why. */
export interface ContextPiece {
  source: string;
  ref?: string;
  reason?: string;
  detail?: string;
  cut?: string;
}
