import { parseAction, type Action } from "./actions.js";

/** The part of a plan the verifier reads; the IR's Schedule and plan.json's both have this shape. */
export interface VerifiablePhase {
  rounds: number;
  stepsPerRound: number;
  adapters: number[];
  microBatches: { id: number; parts: { adapter: number; step: number }[] }[];
  actions: string[][];
}

/**
 * Checks a schedule against the design's scheduling model and returns what is wrong (empty when
 * sound): every action parses and names a known micro-batch, adapter and neighbouring stage;
 * every stage runs F then B of every micro-batch exactly once, each after the receive it needs
 * and before the send it owes; an adapter steps stepsPerRound times per round, its j-th STEP
 * after every backward of its step j there and before any forward of its step j + 1;
 * and executing the lists (a receive blocks until its send; sends do not block; an adapter's
 * STEP waits until every stage has run that step's backwards, as the gradient-norm reduction
 * does) neither
 * deadlocks nor receives out of order, over two consecutive rounds of every phase so that
 * what crosses round boundaries is checked too.
 */
export function verifySchedule(stages: number, adapterCount: number, phases: readonly VerifiablePhase[]): string[] {
  const problems: string[] = [];
  const parsed: Action[][][] = [];
  phases.forEach((phase, p) => {
    const where = `phase ${p}`;
    if (!Number.isSafeInteger(phase.rounds) || phase.rounds < 1) problems.push(`${where}: rounds ${phase.rounds} is not a positive whole number`);
    if (!Number.isSafeInteger(phase.stepsPerRound) || phase.stepsPerRound < 1) problems.push(`${where}: stepsPerRound ${phase.stepsPerRound} is not a positive whole number`);
    if (phase.actions.length !== stages) problems.push(`${where}: ${phase.actions.length} action lists for ${stages} stages`);
    // Per micro-batch, the (adapter, step) pairs it trains.
    const mbParts = new Map<number, { adapter: number; step: number }[]>();
    phase.microBatches.forEach((mb, i) => {
      // The engine finds a micro-batch by its place in the list: its id must be that place.
      if (mb.id !== i) problems.push(`${where}: micro-batch ${i} has id ${mb.id}; ids are the micro-batches' places in the list`);
    });
    for (const mb of phase.microBatches) {
      if (mbParts.has(mb.id)) problems.push(`${where}: micro-batch id ${mb.id} appears twice`);
      mbParts.set(mb.id, mb.parts);
      for (const part of mb.parts) {
        if (!phase.adapters.includes(part.adapter)) problems.push(`${where}: mb${mb.id} trains adapter ${part.adapter}, which is not in the phase`);
        if (!(part.step >= 0 && part.step < phase.stepsPerRound)) problems.push(`${where}: mb${mb.id} is in step ${part.step} of a ${phase.stepsPerRound}-step round`);
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
      const stepped = new Map<number, number>();  // adapter -> STEPs taken this round
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
          const taken = stepped.get(action.adapter) ?? 0;
          if (taken >= phase.stepsPerRound) problems.push(`${label()}: the adapter already took its ${phase.stepsPerRound} step(s) this round`);
          for (const [mb, parts] of mbParts) {
            if (parts.some((x) => x.adapter === action.adapter && x.step === taken) && !backwarded.has(mb)) problems.push(`${label()}: comes before B mb${mb}`);
          }
          stepped.set(action.adapter, taken + 1);
          return;
        }
        if (!mbParts.has(action.mb)) {
          problems.push(`${label()}: mb${action.mb} is not in the phase`);
          return;
        }
        for (const part of mbParts.get(action.mb)!) {
          const taken = stepped.get(part.adapter) ?? 0;
          if (taken > part.step) problems.push(`${label()}: adapter ${part.adapter} already stepped past step ${part.step}`);
          else if (taken < part.step) problems.push(`${label()}: runs before adapter ${part.adapter}'s step ${part.step - 1} was taken here`);
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
      for (const mb of mbParts.keys()) {
        if (!forwarded.has(mb)) problems.push(`${at}: mb${mb} has no forward`);
        if (!backwarded.has(mb)) problems.push(`${at}: mb${mb} has no backward`);
      }
      for (const a of phase.adapters) {
        if ((stepped.get(a) ?? 0) !== phase.stepsPerRound) problems.push(`${at}: adapter ${a} steps ${stepped.get(a) ?? 0} time(s), not ${phase.stepsPerRound}`);
      }
      const sent = new Set(actions.flatMap((x) => (x.op === "SEND" ? [`${x.what} ${x.mb}`] : [])));
      for (const mb of mbParts.keys()) {
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

/**
 * Runs the lists: a receive blocks until its send; an adapter's STEP blocks until every stage has
 * run all backwards of that adapter's step (each stage's share of the gradient norm); sends do
 * not block. Reports a deadlock or an out-of-order receive.
 */
function execute(stages: number, phases: readonly VerifiablePhase[], parsed: Action[][][]): string[] {
  const programs: { action: Action; p: number; r: number; where: string }[][] = Array.from({ length: stages }, () => []);
  phases.forEach((phase, p) => {
    const rounds = Math.min(phase.rounds, 2);
    for (let r = 0; r < rounds; r++) {
      for (let s = 0; s < stages; s++) {
        parsed[p]![s]!.forEach((action, i) => programs[s]!.push({ action, p, r, where: `phase ${p}, round ${r}, stage ${s}, action ${i}` }));
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
  // Backwards each (phase, round, adapter, step) needs on a stage, and how many each stage ran.
  const needed = phases.map((phase) => {
    const n = new Map<string, number>();
    for (const mb of phase.microBatches) for (const part of mb.parts) n.set(`${part.adapter} ${part.step}`, (n.get(`${part.adapter} ${part.step}`) ?? 0) + 1);
    return n;
  });
  const byId = phases.map((phase) => new Map(phase.microBatches.map((m) => [m.id, m.parts])));
  const done = new Map<string, number[]>();
  const stepsTaken = Array.from({ length: stages }, () => new Map<string, number>());
  const pc = new Array<number>(stages).fill(0);
  for (;;) {
    let progressed = false;
    for (let s = 0; s < stages; s++) {
      const program = programs[s]!;
      while (pc[s]! < program.length) {
        const { action, p, r, where } = program[pc[s]!]!;
        if (action.op === "SEND") {
          channel(key(action.what, s, action.peer)).sent.push(action.mb);
        } else if (action.op === "RECV") {
          const c = channel(key(action.what, action.peer, s));
          if (c.received === c.sent.length) break;
          const next = c.sent[c.received]!;
          if (next !== action.mb) return [`${where}: receives ${action.what} mb${action.mb} from s${action.peer}, which sent mb${next} first`];
          c.received++;
        } else if (action.op === "B") {
          for (const part of byId[p]!.get(action.mb)!) {
            const k = `${p} ${r} ${part.adapter} ${part.step}`;
            const counts = done.get(k) ?? new Array<number>(stages).fill(0);
            counts[s]!++;
            done.set(k, counts);
          }
        } else if (action.op === "STEP") {
          const round = `${p} ${r} ${action.adapter}`;
          const j = stepsTaken[s]!.get(round) ?? 0;
          const need = needed[p]!.get(`${action.adapter} ${j}`) ?? 0;
          const counts = done.get(`${round} ${j}`) ?? new Array<number>(stages).fill(0);
          if (!counts.every((c) => c >= need)) break;
          stepsTaken[s]!.set(round, j + 1);
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
