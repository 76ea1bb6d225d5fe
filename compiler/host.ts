import * as fs from "node:fs";

/**
 * Opens a file for reading, refusing anything but a regular file. O_NONBLOCK keeps the open
 * itself from waiting on a FIFO's writer (or a device); the check is on the opened descriptor,
 * so what is read is what was checked.
 */
export function openRegularFile(file: string): number {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  try {
    if (!fs.fstatSync(fd).isFile()) throw Object.assign(new Error(`${file} is not a regular file`), { code: "ENOTREG" });
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return fd;
}

/** A regular file's bytes (see openRegularFile). */
export function readRegularFile(file: string): Buffer {
  const fd = openRegularFile(file);
  try {
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Everything the compiler reads from outside, so that tools embedding it (or tests) can serve
 * files from memory. The compiler never writes.
 */
export interface CompileHost {
  /** "file", "dir", "other" (a FIFO, socket or device), or undefined when nothing is there. */
  kind(path: string): "file" | "dir" | "other" | undefined;
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
      return st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
    } catch {
      return undefined;
    }
  },
  size: (path) => fs.statSync(path).size,
  readText: (path) => readRegularFile(path).toString("utf8"),
  readRange(path, offset, length) {
    const fd = openRegularFile(path);
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
    const fd = openRegularFile(path);
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
