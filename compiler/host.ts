import * as fs from "node:fs";

/**
 * Everything the compiler reads from outside, so that tools embedding it (or tests) can serve
 * files from memory. The compiler never writes.
 */
export interface CompileHost {
  /** "file", "dir", or undefined when nothing is there. */
  kind(path: string): "file" | "dir" | undefined;
  size(path: string): number;
  readText(path: string): string;
  /** Up to `length` bytes from `offset`; fewer at the end of the file. */
  readRange(path: string, offset: number, length: number): Uint8Array;
  listDir(path: string): string[];
  /** Non-blank lines of a text file, counted without holding it in memory. */
  countLines(path: string): number;
}

export const nodeHost: CompileHost = {
  kind(path) {
    try {
      const st = fs.statSync(path);
      return st.isDirectory() ? "dir" : st.isFile() ? "file" : undefined;
    } catch {
      return undefined;
    }
  },
  size: (path) => fs.statSync(path).size,
  readText: (path) => fs.readFileSync(path, "utf8"),
  readRange(path, offset, length) {
    const fd = fs.openSync(path, "r");
    try {
      const buffer = Buffer.alloc(length);
      const n = fs.readSync(fd, buffer, 0, length, offset);
      return buffer.subarray(0, n);
    } finally {
      fs.closeSync(fd);
    }
  },
  listDir: (path) => fs.readdirSync(path),
  countLines(path) {
    const fd = fs.openSync(path, "r");
    const chunk = Buffer.alloc(1 << 20);
    let lines = 0;
    let blank = true;
    try {
      for (;;) {
        const n = fs.readSync(fd, chunk, 0, chunk.length, null);
        if (n === 0) break;
        for (let i = 0; i < n; i++) {
          const c = chunk[i]!;
          if (c === 10) {
            if (!blank) lines++;
            blank = true;
          } else if (c !== 32 && c !== 9 && c !== 13) {
            blank = false;
          }
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    return blank ? lines : lines + 1;
  },
};
