import type { Pass, StageAssignment } from "../ir.js";

/**
 * Layers split evenly over the stages, whole layers each; the first `layers mod stages` stages
 * take one extra (the last stage also carries the head, so it is the one to spare).
 * Stage i runs on device i. Cost-driven, sub-layer partitioning replaces this split later; the
 * plan already speaks in blocks (attention and MLP halves) so that needs no format change.
 */
export const partition: Pass = {
  name: "partition",
  needs: ["model", "job"],
  run(ir, ctx) {
    const { layers } = ir.model!.arch;
    const { cluster, plan } = ir.job!;
    const devices = cluster.gpusPerNode * cluster.nodes;
    const at = plan.spans["stages"] ?? plan.span ?? cluster.span;
    const stages = plan.stages === "auto" ? Math.min(devices, layers) : plan.stages;
    if (stages > devices) {
      ctx.report("tooManyStages", `${stages} stages need ${stages} devices; the cluster has ${devices} (${cluster.nodes} x ${cluster.gpusPerNode})`, at);
      return ir;
    }
    if (stages > layers) {
      ctx.report("tooManyStages", `${stages} stages for ${layers} layers would leave a stage without a layer`, at);
      return ir;
    }
    const base = Math.floor(layers / stages);
    const extra = layers % stages;
    const assignments: StageAssignment[] = [];
    let layer = 0;
    for (let s = 0; s < stages; s++) {
      const count = base + (s < extra ? 1 : 0);
      assignments.push({ index: s, device: s, blocks: [2 * layer, 2 * (layer + count)], embedding: s === 0, head: s === stages - 1 });
      layer += count;
    }
    return { ...ir, stages: assignments };
  },
};
