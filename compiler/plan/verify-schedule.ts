import { parseAction, type Action } from "./actions.js";

/** The part of a plan the verifier reads; the IR's Schedule and plan.json's both have this shape. */
export interface VerifiablePhase {
  rounds: number;
  adapters: number[];
  microBatches: { id: number; parts: { adapter: number }[] }[];
  actions: string[][];
}

/**
 * Checks a schedule against the design's scheduling model and returns what is wrong (empty when
 * sound): every action parses and names a known micro-batch, adapter and neighbouring stage;
 * every stage runs F then B of every micro-batch exactly once, each after the receive it needs
 * and before the send it owes; an adapter steps once per round, after all its backwards there;
 * and executing the lists (a receive blocks until its send; sends do not block; an adapter's
 * STEP waits for the same STEP on every stage, as its gradient-norm reduction does) neither
 * deadlocks nor receives out of order, over two consecutive rounds of every phase so that
 * what crosses round boundaries is checked too.
 */
export function verifySchedule(stages: number, adapterCount: number, phases: readonly VerifiablePhase[]): string[] {
  const problems: string[] = [];
  const parsed: Action[][][] = [];
  phases.forEach((phase, p) => {
    const where = `phase ${p}`;
    if (!Number.isSafeInteger(phase.rounds) || phase.rounds < 1) problems.push(`${where}: rounds ${phase.rounds} is not a positive whole number`);
    if (phase.actions.length !== stages) problems.push(`${where}: ${phase.actions.length} action lists for ${stages} stages`);
    const mbAdapters = new Map<number, Set<number>>();
    for (const mb of phase.microBatches) {
      if (mbAdapters.has(mb.id)) problems.push(`${where}: micro-batch id ${mb.id} appears twice`);
      mbAdapters.set(mb.id, new Set(mb.parts.map((x) => x.adapter)));
      for (const part of mb.parts) {
        if (!phase.adapters.includes(part.adapter)) problems.push(`${where}: mb${mb.id} trains adapter ${part.adapter}, which is not in the phase`);
      }
    }
    for (const a of phase.adapters) {
      if (!Number.isSafeInteger(a) || a < 0 || a >= adapterCount) problems.push(`${where}: adapter ${a} does not exist`);
    }
    const phaseActions: Action[][] = [];
    phase.actions.forEach((list, s) => {
      const at = `${where}, stage ${s}`;
      const actions: Action[] = [];
      const forwarded = new Set<number>();
      const backwarded = new Set<number>();
      const received = new Set<string>();
      const stepped = new Set<number>();
      list.forEach((text, i) => {
        const action = parseAction(text);
        if (!action) {
          problems.push(`${at}, action ${i}: \`${text}\` is not an action`);
          return;
        }
        actions.push(action);
        // Built only when a problem is reported: most plans have none, and they are large.
        const label = () => `${at}, action ${i} \`${text}\``;
        if (action.op === "STEP") {
          if (!phase.adapters.includes(action.adapter)) problems.push(`${label()}: adapter ${action.adapter} is not in the phase`);
          if (stepped.has(action.adapter)) problems.push(`${label()}: the adapter already stepped this round`);
          stepped.add(action.adapter);
          for (const [mb, members] of mbAdapters) {
            if (members.has(action.adapter) && !backwarded.has(mb)) problems.push(`${label()}: comes before B mb${mb}`);
          }
          return;
        }
        if (!mbAdapters.has(action.mb)) {
          problems.push(`${label()}: mb${action.mb} is not in the phase`);
          return;
        }
        for (const a of mbAdapters.get(action.mb)!) {
          if (stepped.has(a)) problems.push(`${label()}: adapter ${a} already stepped this round`);
        }
        if (action.op === "SEND" || action.op === "RECV") {
          const expectedPeer = (action.what === "act") === (action.op === "SEND") ? s + 1 : s - 1;
          if (action.peer !== expectedPeer) problems.push(`${label()}: ${action.what} goes between s${s} and s${expectedPeer}`);
          if (action.op === "RECV") received.add(`${action.what} ${action.mb}`);
          else if (!(action.what === "act" ? forwarded : backwarded).has(action.mb)) problems.push(`${label()}: sent before it was computed`);
          return;
        }
        if (action.op === "F") {
          if (forwarded.has(action.mb)) problems.push(`${label()}: a second forward`);
          if (s > 0 && !received.has(`act ${action.mb}`)) problems.push(`${label()}: runs before RECV act mb${action.mb}`);
          forwarded.add(action.mb);
        } else {
          if (backwarded.has(action.mb)) problems.push(`${label()}: a second backward`);
          if (!forwarded.has(action.mb)) problems.push(`${label()}: runs before F mb${action.mb}`);
          if (s < stages - 1 && !received.has(`grad ${action.mb}`)) problems.push(`${label()}: runs before RECV grad mb${action.mb}`);
          backwarded.add(action.mb);
        }
      });
      for (const mb of mbAdapters.keys()) {
        if (!forwarded.has(mb)) problems.push(`${at}: mb${mb} has no forward`);
        if (!backwarded.has(mb)) problems.push(`${at}: mb${mb} has no backward`);
      }
      for (const a of phase.adapters) if (!stepped.has(a)) problems.push(`${at}: adapter ${a} never steps`);
      const sent = new Set(actions.flatMap((x) => (x.op === "SEND" ? [`${x.what} ${x.mb}`] : [])));
      for (const mb of mbAdapters.keys()) {
        if (s < stages - 1 && !sent.has(`act ${mb}`)) problems.push(`${at}: the activations of mb${mb} are never sent on`);
        if (s > 0 && !sent.has(`grad ${mb}`)) problems.push(`${at}: the input gradient of mb${mb} is never sent back`);
      }
      phaseActions.push(actions);
    });
    parsed.push(phaseActions);
  });
  if (problems.length > 0) return problems;
  return execute(stages, phases, parsed);
}

/** Runs the lists with blocking receives; reports a deadlock or an out-of-order receive. */
function execute(stages: number, phases: readonly VerifiablePhase[], parsed: Action[][][]): string[] {
  const programs: { action: Action; where: string }[][] = Array.from({ length: stages }, () => []);
  phases.forEach((phase, p) => {
    const rounds = Math.min(phase.rounds, 2);
    for (let r = 0; r < rounds; r++) {
      for (let s = 0; s < stages; s++) {
        parsed[p]![s]!.forEach((action, i) => programs[s]!.push({ action, where: `phase ${p}, round ${r}, stage ${s}, action ${i}` }));
      }
    }
  });
  // Per channel, what was sent in order and how much of it has been received.
  const channels = new Map<string, { sent: number[]; received: number }>();
  const key = (what: string, from: number, to: number) => `${what} ${from}->${to}`;
  const channel = (k: string) => {
    let c = channels.get(k);
    if (!c) channels.set(k, (c = { sent: [], received: 0 }));
    return c;
  };
  // STEP is a collective: clipping needs the adapter's gradient norm over all its stages, so a
  // stage's k-th STEP of an adapter completes only once every stage has reached its k-th.
  const arrivals = new Map<number, number[]>();
  const arrivedAt = new Array<number>(stages).fill(-1);
  const pc = new Array<number>(stages).fill(0);
  for (;;) {
    let progressed = false;
    for (let s = 0; s < stages; s++) {
      const program = programs[s]!;
      while (pc[s]! < program.length) {
        const { action, where } = program[pc[s]!]!;
        if (action.op === "SEND") {
          channel(key(action.what, s, action.peer)).sent.push(action.mb);
        } else if (action.op === "RECV") {
          const c = channel(key(action.what, action.peer, s));
          if (c.received === c.sent.length) break;
          const next = c.sent[c.received]!;
          if (next !== action.mb) return [`${where}: receives ${action.what} mb${action.mb} from s${action.peer}, which sent mb${next} first`];
          c.received++;
        } else if (action.op === "STEP") {
          const counts = arrivals.get(action.adapter) ?? new Array<number>(stages).fill(0);
          arrivals.set(action.adapter, counts);
          if (arrivedAt[s] !== pc[s]) {
            counts[s]!++;
            arrivedAt[s] = pc[s]!;
          }
          if (Math.min(...counts) < counts[s]!) break;
        }
        pc[s]!++;
        progressed = true;
      }
    }
    if (pc.every((x, s) => x === programs[s]!.length)) break;
    if (!progressed) {
      const blocked = pc.map((x, s) => (x < programs[s]!.length ? `${programs[s]![x]!.where} waits` : "")).filter(Boolean);
      return [`deadlock: ${blocked.join("; ")}`];
    }
  }
  const leftover = [...channels].filter(([, c]) => c.received < c.sent.length).map(([k, c]) => `${k}: mb${c.sent.slice(c.received).join(", mb")}`);
  return leftover.length > 0 ? [`sent but never received: ${leftover.join("; ")}`] : [];
}
