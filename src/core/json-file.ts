/**
 * A JSON file the server reads beside a model (a reference profile, a quantization record): bounded in size, because a
 * repository's files are not the server's to trust with its memory, and named in errors as clients see it.
 */
import { open } from 'node:fs/promises';

export interface JsonFileOptions {
  /** How errors name the file, as clients may see it (a path inside the repository), never by where it lies here. */
  shownAs: string;
  /** The most bytes it may have; a larger one is refused unread. */
  maxBytes: number;
  /** What the file is, for the refusal of one too large: "a reference profile". */
  kind: string;
}

/**
 * The parsed JSON of the file at `path`. Refused, naming it, when it is over `maxBytes` or not JSON; a file that cannot
 * be opened throws with the system's code kept (ENOENT: there is none) and its error as the cause.
 */
export async function readJsonFile(path: string, { shownAs, maxBytes, kind }: JsonFileOptions): Promise<unknown> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    throw Object.assign(new Error(`cannot read ${shownAs}: ${code ?? message}`, { cause: error }), { code });
  }
  let text: string;
  try {
    // The size of the file opened, not of whatever the path names a moment later; and no more than that is read.
    const { size } = await handle.stat();
    if (size > maxBytes) throw new Error(`${shownAs} is ${size} bytes; ${kind} is at most ${maxBytes}`);
    const buffer = Buffer.alloc(size);
    const { bytesRead } = await handle.read(buffer, 0, size, 0);
    text = buffer.toString('utf8', 0, bytesRead);
  } finally {
    await handle.close();
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${shownAs} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}
