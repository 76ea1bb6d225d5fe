/**
 * Actions of a stage's list, as plan.json writes them: short, readable, diffable strings.
 *   F mb3                 forward of micro-batch 3 through this stage
 *   B mb3                 backward (dX and LoRA gradients) of micro-batch 3
 *   SEND act mb3 to s1    activations of mb3 to stage 1 (does not wait for the receiver)
 *   RECV act mb3 from s0  waits for mb3's activations from stage 0
 *   SEND grad mb3 to s0   gradients w.r.t. this stage's input, to stage 0
 *   RECV grad mb3 from s2
 *   STEP a2               optimizer step of adapter 2 on this stage's LoRA weights; a collective:
 *                         it completes when every stage reaches it (the global gradient norm)
 * Micro-batch ids index the phase's micro-batch table; adapter ids index the plan's adapters.
 */
export type Action =
  | { op: "F" | "B"; mb: number }
  | { op: "SEND" | "RECV"; what: "act" | "grad"; mb: number; peer: number }
  | { op: "STEP"; adapter: number };

const PATTERN = /^(?:(F|B) mb(\d+)|(SEND|RECV) (act|grad) mb(\d+) (to|from) s(\d+)|STEP a(\d+))$/;

export function formatAction(a: Action): string {
  switch (a.op) {
    case "F":
    case "B":
      return `${a.op} mb${a.mb}`;
    case "SEND":
      return `SEND ${a.what} mb${a.mb} to s${a.peer}`;
    case "RECV":
      return `RECV ${a.what} mb${a.mb} from s${a.peer}`;
    case "STEP":
      return `STEP a${a.adapter}`;
  }
}

// Plans repeat a few thousand distinct action strings millions of times: parse each once.
const parsed = new Map<string, Action | undefined>();

/** The action a string stands for, or undefined when it is not one. Treat the result as read-only. */
export function parseAction(text: string): Action | undefined {
  let action = parsed.get(text);
  if (action === undefined && !parsed.has(text)) {
    action = parseUncached(text);
    if (parsed.size > 1 << 20) parsed.clear();
    parsed.set(text, action);
  }
  return action;
}

// Each compile reads a candidate schedule's lists several times (verifier, simulator, memory
// plan): the parse of a list is kept beside a copy of its strings, and reused while the list
// still holds the same strings, so a list changed in place is parsed again.
const parsedLists = new WeakMap<readonly string[], { texts: string[]; actions: (Action | undefined)[] }>();

/** parseAction of every string of a list (undefined where one is not an action). Treat the result as read-only. */
export function parseActionList(list: readonly string[]): readonly (Action | undefined)[] {
  const kept = parsedLists.get(list);
  if (kept && kept.texts.length === list.length && kept.texts.every((t, i) => t === list[i])) return kept.actions;
  const texts = list.slice();
  const actions = texts.map((t) => parseAction(t));
  parsedLists.set(list, { texts, actions });
  return actions;
}

/**
 * A stage's list as a schedule builds it: the strings plan.json keeps, with their parse kept
 * beside them, so that no later pass parses what the compiler itself wrote.
 */
export class ActionListBuilder {
  private readonly texts: string[] = [];
  private readonly actions: Action[] = [];

  push(action: Action): void {
    this.texts.push(formatAction(action));
    this.actions.push(action);
  }

  /** The list; building on after this is an error. */
  list(): string[] {
    parsedLists.set(this.texts, { texts: this.texts.slice(), actions: this.actions });
    return this.texts;
  }
}

function parseUncached(text: string): Action | undefined {
  const m = PATTERN.exec(text);
  if (!m) return undefined;
  if (m[1]) return { op: m[1] as "F" | "B", mb: Number(m[2]) };
  if (m[3]) {
    const op = m[3] as "SEND" | "RECV";
    if ((op === "SEND") !== (m[6] === "to")) return undefined;
    return { op, what: m[4] as "act" | "grad", mb: Number(m[5]), peer: Number(m[7]) };
  }
  return { op: "STEP", adapter: Number(m[8]) };
}
