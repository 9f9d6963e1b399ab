/**
 * The friendly endpoints beside V2: POST an image (raw body, Content-Type image/* or, as the CLI
 * and HttpClient send it, application/octet-stream) or several
 * (multipart form files) and get labels with a confidence (/classify), or labelled boxes
 * (/detect), back as plain JSON.
 */
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { invalidArgument, NereidError, quoteName } from '../../core/errors.js';
import type { RequestContext } from '../../core/inference.js';
import { timingAnswer, type UnreadableFile } from '../../model/image-classification.js';
import { DECIMAL_NUMBER } from '../../core/decimal-number.js';
import type { Server } from '../../server/server.js';
import { bodyTallyOf, bodyTooLarge } from './body-admission.js';

type ModelParams = { model: string; version?: string };

type BodyLimits = { maxBodyBytes: number; maxBodyChunks: number };

export interface ClassifyRouteOptions extends BodyLimits {
  /** Images one multipart request may carry. */
  maxFiles?: number;
  modelPaths: (suffix: string) => string[];
  contextOf: (request: FastifyRequest, reply: FastifyReply) => RequestContext;
  /** Refuses, from its headers, a request the server could not serve now. */
  admission: onRequestAsyncHookHandler;
}

function topKOf(request: FastifyRequest): number | undefined {
  const query = request.query as Record<string, string | string[] | undefined>;
  const unknown = Object.keys(query).filter((key) => key !== 'top_k');
  if (unknown.length > 0) throw invalidArgument(`unknown option ${unknown.map(quoteName).join(', ')}; /classify takes top_k`);
  const raw = query.top_k;
  if (raw === undefined) return undefined;
  if (Array.isArray(raw)) throw invalidArgument(`top_k is given ${raw.length} times; give it once`);
  const topK = Number(raw);
  if (!DECIMAL_NUMBER.test(raw) || !Number.isInteger(topK) || topK < 1) throw invalidArgument(`top_k must be a positive integer, got ${quoteName(raw)}`);
  return topK;
}

async function imagesOf(request: FastifyRequest, limits: BodyLimits, maxFiles: number): Promise<{ file?: string; data: Buffer }[]> {
  if (request.isMultipart()) {
    const images: { file?: string; data: Buffer }[] = [];
    // The form as a whole is held to what any other body is (its size, its pieces, the server's budget), as it arrives.
    const tally = bodyTallyOf(request, limits);
    try {
      for await (const part of request.parts()) {
        if (part.type !== 'file') continue;
        const pieces: Buffer[] = [];
        let length = 0;
        for await (const piece of part.file as AsyncIterable<Buffer>) {
          tally.add(piece.length);
          pieces.push(piece);
          length += piece.length;
        }
        // busboy stops a file at fileSize (the body limit) and marks it cut.
        if (part.file.truncated) throw bodyTooLarge();
        images.push({ file: part.filename, data: Buffer.concat(pieces, length) });
      }
    } catch (error) {
      if (error instanceof NereidError) throw error;
      const { code, statusCode } = error as { code?: string; statusCode?: number };
      if (code === 'FST_FILES_LIMIT') throw Object.assign(new Error(`the form holds more than ${maxFiles} files; send at most ${maxFiles} in one request`), { statusCode: 413 });
      if (code === 'FST_ERR_CTP_BODY_TOO_LARGE' || (statusCode !== undefined && statusCode < 500)) throw error;
      // busboy's parse errors (no boundary, cut-off parts) carry no status: they are the client's.
      throw invalidArgument(`the multipart/form-data body is malformed: ${(error as Error).message}`);
    }
    if (images.length === 0) throw invalidArgument('the multipart form has no files; send each image as a file part');
    return images;
  }
  const type = String(request.headers['content-type'] ?? '');
  if (!/^(image\/|application\/octet-stream)/i.test(type)) {
    throw invalidArgument(`send the image as the body with Content-Type image/* or application/octet-stream (got ${type ? quoteName(type) : 'none'}), or as multipart/form-data files`);
  }
  return [{ data: (request.body as Buffer | undefined) ?? Buffer.alloc(0) }];
}

export function registerClassifyRoutes(app: FastifyInstance, server: Server, options: ClassifyRouteOptions): void {
  const maxFiles = options.maxFiles ?? 64;
  void app.register(multipart, {
    limits: { fileSize: options.maxBodyBytes, files: maxFiles, fields: 16, parts: maxFiles + 16 },
    throwFileSizeLimit: true,
  });
  for (const path of options.modelPaths('/classify')) {
    app.post<{ Params: ModelParams }>(path, { onRequest: options.admission }, async (request, reply) => {
      const images = await imagesOf(request, options, maxFiles);
      const { model, version, results, unreadable, timings } = await server.classify(
        request.params.model,
        images.map((image) => image.data),
        { version: request.params.version, topK: topKOf(request) },
        // The front end's own context (its access log reads the OOD counts the model writes into it), told a form's rows are a list.
        Object.assign(options.contextOf(request, reply), { rowsArePartsOfList: request.isMultipart() }),
      );
      const timing = timingAnswer(timings);
      return answerOf(request, model, version, results, unreadable, images, timing);
    });
  }
  for (const path of options.modelPaths('/detect')) {
    app.post<{ Params: ModelParams }>(path, { onRequest: options.admission }, async (request, reply) => {
      const images = await imagesOf(request, options, maxFiles);
      const { model, version, results, unreadable, timings } = await server.detect(
        request.params.model,
        images.map((image) => image.data),
        { version: request.params.version, query: request.query },
        // As for /classify: a form's files are a list, its rows named by their place in it.
        Object.assign(options.contextOf(request, reply), { rowsArePartsOfList: request.isMultipart() }),
      );
      return answerOf(request, model, version, results, unreadable, images, timingAnswer(timings));
    });
  }
}

/** One image's result beside the model's name, or, for a multipart form, each file's under `results` (its error where it could not be read). */
function answerOf(request: FastifyRequest, model: string, version: string, results: object[], unreadable: UnreadableFile[] | undefined, images: { file?: string }[], timing: object) {
  if (!request.isMultipart()) return { model_name: model, model_version: version, ...results[0], timing };
  const readable = results.values();
  return {
    model_name: model,
    model_version: version,
    results: images.map((image, index) => {
      const error = unreadable?.find((file) => file.index === index)?.error;
      return error !== undefined ? { file: image.file, error } : { file: image.file, ...readable.next().value };
    }),
    timing,
  };
}
