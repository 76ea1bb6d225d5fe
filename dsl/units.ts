/** Bytes per unit. Bit units are eighths of their byte counterparts: 100Gb/s = 12.5e9 bytes/s. */
const UNIT_BYTES: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
  b: 1 / 8,
  Kb: 1e3 / 8,
  Mb: 1e6 / 8,
  Gb: 1e9 / 8,
  Tb: 1e12 / 8,
};

export interface ParsedQuantity {
  /** In bytes, or bytes per second when `perSecond`. */
  value: number;
  perSecond: boolean;
  /** The unit was a bit unit (b, Kb, Mb, Gb, Tb). */
  bits: boolean;
  unit: string;
}

/** Parses the text of a Quantity token ("48GB", "100Gb/s"). */
export function parseQuantity(text: string): ParsedQuantity {
  const match = /^([0-9.eE+-]+?)(KiB|MiB|GiB|TiB|KB|MB|GB|TB|Kb|Mb|Gb|Tb|B|b)(\/s)?$/.exec(text);
  if (!match) throw new Error(`not a quantity: ${text}`);
  const unit = match[2]!;
  return {
    value: Number(match[1]) * UNIT_BYTES[unit]!,
    perSecond: match[3] !== undefined,
    bits: unit.endsWith("b"),
    unit,
  };
}

/** "48 GB", "1.5 GiB": decimal units for sizes in the thousands, for messages and summaries. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1000 && i < units.length - 1) {
    value /= 1000;
    i++;
  }
  return `${i === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[i]}`;
}
