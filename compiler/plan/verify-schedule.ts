import { parseActionList, type Action } from "./actions.js";

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
 * does) neither deadlocks nor receives out of order, over two consecutive rounds of every phase
 * so that what crosses round boundaries is checked too.
 *
 * Plans hold tens of thousands of actions and every compile verifies each candidate schedule, so
 * the sound path builds no strings: problems are worded only once one is found.
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
    // Per adapter and step, the micro-batches that train it, in the order the phase lists them.
    const trainedBy = new Map<number, Map<number, number[]>>();
    for (const [mb, parts] of mbParts) {
      for (const part of parts) {
        let steps = trainedBy.get(part.adapter);
        if (!steps) trainedBy.set(part.adapter, (steps = new Map()));
        const list = steps.get(part.step);
        if (!list) steps.set(part.step, [mb]);
        else if (list[list.length - 1] !== mb) list.push(mb);
      }
    }
    const phaseActions: Action[][] = [];
    phase.actions.forEach((list, s) => {
      const at = `${where}, stage ${s}`;
      const label = (i: number) => `${at}, action ${i} \`${list[i]}\``;
      const actions: Action[] = [];
      const forwarded = new Set<number>();
      const backwarded = new Set<number>();
      const receivedAct = new Set<number>();
      const receivedGrad = new Set<number>();
      const sentAct = new Set<number>();
      const sentGrad = new Set<number>();
      const stepped = new Map<number, number>();  // adapter -> STEPs taken this round
      const listed = parseActionList(list);
      for (let i = 0; i < list.length; i++) {
        const action = listed[i];
        if (!action) {
          problems.push(`${at}, action ${i}: \`${list[i]}\` is not an action`);
          continue;
        }
        actions.push(action);
        if (action.op === "STEP") {
          if (!phase.adapters.includes(action.adapter)) problems.push(`${label(i)}: adapter ${action.adapter} is not in the phase`);
          const taken = stepped.get(action.adapter) ?? 0;
          if (taken >= phase.stepsPerRound) problems.push(`${label(i)}: the adapter already took its ${phase.stepsPerRound} step(s) this round`);
          for (const mb of trainedBy.get(action.adapter)?.get(taken) ?? []) {
            if (!backwarded.has(mb)) problems.push(`${label(i)}: comes before B mb${mb}`);
          }
          stepped.set(action.adapter, taken + 1);
          continue;
        }
        const parts = mbParts.get(action.mb);
        if (!parts) {
          problems.push(`${label(i)}: mb${action.mb} is not in the phase`);
          continue;
        }
        for (const part of parts) {
          const taken = stepped.get(part.adapter) ?? 0;
          if (taken > part.step) problems.push(`${label(i)}: adapter ${part.adapter} already stepped past step ${part.step}`);
          else if (taken < part.step) problems.push(`${label(i)}: runs before adapter ${part.adapter}'s step ${part.step - 1} was taken here`);
        }
        if (action.op === "SEND" || action.op === "RECV") {
          const expectedPeer = (action.what === "act") === (action.op === "SEND") ? s + 1 : s - 1;
          if (action.peer !== expectedPeer) problems.push(`${label(i)}: ${action.what} goes between s${s} and s${expectedPeer}`);
          const act = action.what === "act";
          if (action.op === "RECV") (act ? receivedAct : receivedGrad).add(action.mb);
          else {
            (act ? sentAct : sentGrad).add(action.mb);
            if (!(act ? forwarded : backwarded).has(action.mb)) problems.push(`${label(i)}: sent before it was computed`);
          }
          continue;
        }
        if (action.op === "F") {
          if (forwarded.has(action.mb)) problems.push(`${label(i)}: a second forward`);
          if (s > 0 && !receivedAct.has(action.mb)) problems.push(`${label(i)}: runs before RECV act mb${action.mb}`);
          forwarded.add(action.mb);
        } else {
          if (backwarded.has(action.mb)) problems.push(`${label(i)}: a second backward`);
          if (!forwarded.has(action.mb)) problems.push(`${label(i)}: runs before F mb${action.mb}`);
          if (s < stages - 1 && !receivedGrad.has(action.mb)) problems.push(`${label(i)}: runs before RECV grad mb${action.mb}`);
          backwarded.add(action.mb);
        }
      }
      for (const mb of mbParts.keys()) {
        if (!forwarded.has(mb)) problems.push(`${at}: mb${mb} has no forward`);
        if (!backwarded.has(mb)) problems.push(`${at}: mb${mb} has no backward`);
      }
      for (const a of phase.adapters) {
        if ((stepped.get(a) ?? 0) !== phase.stepsPerRound) problems.push(`${at}: adapter ${a} steps ${stepped.get(a) ?? 0} time(s), not ${phase.stepsPerRound}`);
      }
      for (const mb of mbParts.keys()) {
        if (s < stages - 1 && !sentAct.has(mb)) problems.push(`${at}: the activations of mb${mb} are never sent on`);
        if (s > 0 && !sentGrad.has(mb)) problems.push(`${at}: the input gradient of mb${mb} is never sent back`);
      }
      phaseActions.push(actions);
    });
    parsed.push(phaseActions);
  });
  if (problems.length > 0) return problems;
  return execute(stages, adapterCount, phases, parsed);
}

/** What was sent on a channel (one direction of one link, for one kind of message), in order. */
interface Channel {
  name: string;
  sent: number[];
  received: number;
}

/**
 * Runs the lists: a receive blocks until its send; an adapter's STEP blocks until every stage has
 * run all backwards of that adapter's step (each stage's share of the gradient norm); sends do
 * not block. Reports a deadlock or an out-of-order receive. Called only on lists that passed the
 * checks above: every micro-batch, adapter and step they name is the phase's, and every peer is
 * a neighbour (or one past the last stage, whose messages nobody receives).
 */
function execute(stages: number, adapterCount: number, phases: readonly VerifiablePhase[], parsed: Action[][][]): string[] {
  // Each stage runs two rounds of every phase, phase after phase: where it stands in them.
  const at = Array.from({ length: stages }, () => ({ p: 0, r: 0, i: 0 }));
  const roundsOf = phases.map((phase) => Math.min(phase.rounds, 2));
  const settle = (s: number) => {
    const c = at[s]!;
    while (c.p < phases.length && c.i >= parsed[c.p]![s]!.length) {
      c.i = 0;
      if (++c.r >= roundsOf[c.p]!) {
        c.r = 0;
        c.p++;
      }
    }
  };
  const finished = (s: number) => at[s]!.p >= phases.length;
  const where = (s: number) => `phase ${at[s]!.p}, round ${at[s]!.r}, stage ${s}, action ${at[s]!.i}`;
  // Channels by kind, sender and receiver (peers run from -1 to `stages`), in the order first used.
  const span = stages + 2;
  const byKey: (Channel | undefined)[] = new Array(2 * span * span);
  const channels: Channel[] = [];
  const channel = (what: "act" | "grad", from: number, to: number): Channel => {
    const k = ((what === "act" ? 0 : span) + from + 1) * span + to + 1;
    let c = byKey[k];
    if (!c) channels.push((c = byKey[k] = { name: `${what} ${from}->${to}`, sent: [], received: 0 }));
    return c;
  };
  // Per phase: backwards each (adapter, step) needs on a stage; and per (round, adapter, step),
  // how many each stage has run. Keys are (r * adapters + adapter) * steps + step.
  const steps = phases.map((phase) => phase.stepsPerRound);
  const needed = phases.map((phase, p) => {
    const n = new Map<number, number>();
    for (const mb of phase.microBatches) for (const part of mb.parts) {
      const k = part.adapter * steps[p]! + part.step;
      n.set(k, (n.get(k) ?? 0) + 1);
    }
    return n;
  });
  const partsOf = phases.map((phase) => new Map(phase.microBatches.map((m) => [m.id, m.parts])));
  const done = phases.map(() => new Map<number, Int32Array>());
  const counts = (p: number, k: number): Int32Array => {
    let c = done[p]!.get(k);
    if (!c) done[p]!.set(k, (c = new Int32Array(stages)));
    return c;
  };
  // Per stage: STEPs taken, by (phase, round * adapters + adapter).
  const stepsTaken = Array.from({ length: stages }, () => phases.map(() => new Map<number, number>()));
  for (let s = 0; s < stages; s++) settle(s);
  for (;;) {
    let progressed = false;
    for (let s = 0; s < stages; s++) {
      const c = at[s]!;
      while (!finished(s)) {
        const { p, r } = c;
        const action = parsed[p]![s]![c.i]!;
        if (action.op === "SEND") {
          channel(action.what, s, action.peer).sent.push(action.mb);
        } else if (action.op === "RECV") {
          const ch = channel(action.what, action.peer, s);
          if (ch.received === ch.sent.length) break;
          const next = ch.sent[ch.received]!;
          if (next !== action.mb) return [`${where(s)}: receives ${action.what} mb${action.mb} from s${action.peer}, which sent mb${next} first`];
          ch.received++;
        } else if (action.op === "B") {
          for (const part of partsOf[p]!.get(action.mb)!) counts(p, (r * adapterCount + part.adapter) * steps[p]! + part.step)[s]!++;
        } else if (action.op === "STEP") {
          const round = r * adapterCount + action.adapter;
          const j = stepsTaken[s]![p]!.get(round) ?? 0;
          const need = needed[p]!.get(action.adapter * steps[p]! + j) ?? 0;
          const ran = done[p]!.get(round * steps[p]! + j);
          if (need > 0 && !(ran && ran.every((n) => n >= need))) break;
          stepsTaken[s]![p]!.set(round, j + 1);
        }
        c.i++;
        settle(s);
        progressed = true;
      }
    }
    if (at.every((_, s) => finished(s))) break;
    if (!progressed) {
      const blocked = at.map((_, s) => (finished(s) ? "" : `${where(s)} waits`)).filter(Boolean);
      return [`deadlock: ${blocked.join("; ")}`];
    }
  }
  const leftover = channels.filter((c) => c.received < c.sent.length).map((c) => `${c.name}: mb${c.sent.slice(c.received).join(", mb")}`);
  return leftover.length > 0 ? [`sent but never received: ${leftover.join("; ")}`] : [];
}
