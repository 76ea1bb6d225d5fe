/** What the compiler needs to know of a device to plan for it. */
export interface DeviceProfile {
  name: string;
  memoryBytes: number;
  /** Dense bf16 (tensor-core) TFLOP/s; fp32 FMA rate for `cpu`. */
  tflops: number;
  bandwidthBytesPerSecond: number;
  /** The usual link between two devices of one node. */
  link: { kind: "pcie" | "nvlink" | "shm"; bytesPerSecond: number };
}

const GiB = 2 ** 30;

/** Published figures (dense, no sparsity). Users override any field in their cluster block. */
export const DEVICE_PROFILES: Readonly<Record<string, DeviceProfile>> = {
  A6000: { name: "A6000", memoryBytes: 48 * GiB, tflops: 155, bandwidthBytesPerSecond: 768e9, link: { kind: "pcie", bytesPerSecond: 25e9 } },
  RTX3090: { name: "RTX3090", memoryBytes: 24 * GiB, tflops: 71, bandwidthBytesPerSecond: 936e9, link: { kind: "pcie", bytesPerSecond: 25e9 } },
  "A100-40G": { name: "A100-40G", memoryBytes: 40 * GiB, tflops: 312, bandwidthBytesPerSecond: 1555e9, link: { kind: "nvlink", bytesPerSecond: 300e9 } },
  "A100-80G": { name: "A100-80G", memoryBytes: 80 * GiB, tflops: 312, bandwidthBytesPerSecond: 2039e9, link: { kind: "nvlink", bytesPerSecond: 300e9 } },
  H100: { name: "H100", memoryBytes: 80 * GiB, tflops: 989, bandwidthBytesPerSecond: 3350e9, link: { kind: "nvlink", bytesPerSecond: 450e9 } },
  H200: { name: "H200", memoryBytes: 141e9, tflops: 989, bandwidthBytesPerSecond: 4800e9, link: { kind: "nvlink", bytesPerSecond: 450e9 } },
  cpu: { name: "cpu", memoryBytes: 16 * GiB, tflops: 0.15, bandwidthBytesPerSecond: 40e9, link: { kind: "shm", bytesPerSecond: 10e9 } },
};

/** Between nodes, when the cluster block gives no `net`: 100 Gb/s Ethernet or InfiniBand. */
export const DEFAULT_NET_BYTES_PER_SECOND = 100e9 / 8;

/** Profile names are matched without regard to case ("a6000", "h100"). */
export function findProfile(name: string): DeviceProfile | undefined {
  const key = Object.keys(DEVICE_PROFILES).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : DEVICE_PROFILES[key];
}
