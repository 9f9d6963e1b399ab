import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import type { HttpClient } from '../client/http-client.js';
import type { ImageTimings } from '../model/image-classification.js';
import type { Server } from '../server/server.js';
import { integer, oneRepository } from './arguments.js';
import { type ServerConnectionFlags, allowCodeModelsOption, commandLogger, serverClient, serverConnectionOptions } from './command-support.js';

/** What an image command asks of a server in this process for one image: the fields of its line, as the route would answer them. */
type LocalImageCall = (server: Server, image: Buffer) => Promise<object>;

/** The same through a running server: its answer, printed as it is. */
type RemoteImageCall = (client: HttpClient, image: Buffer) => Promise<object>;

/** `nereid classify` and `nereid detect` answer in process as their routes do: the first (only) image's result with its model, version and timing. */
async function routeLine(answer: Promise<{ model: string; version: string; results: object[]; timings: ImageTimings }>): Promise<object> {
  const [{ model, version, results, timings }, { timingAnswer }] = await Promise.all([answer, import('../model/image-classification.js')]);
  return { model_name: model, model_version: version, ...results[0], timing: timingAnswer(timings) };
}

/** The flags of `nereid classify`, `nereid detect` and `nereid ocr` that say where the model runs. */
interface ImageCommandFlags extends ServerConnectionFlags {
  model: string;
  modelVersion?: string;
  modelRepository?: string;
  allowCodeModels: boolean;
}

/**
 * Runs `nereid classify`, `nereid detect` or `nereid ocr` over image files: through a running server
 * (`--url`), or in this process with the model loaded from the repository. One JSON line per file,
 * a bad file reported on its own line; exit code 1 when any failed.
 */
async function runImageCommand(
  files: string[],
  flags: ImageCommandFlags,
  command: Command,
  route: ImageCommandName,
  calls: {
    remote: RemoteImageCall;
    local: LocalImageCall;
    /** Refuses a model the command cannot use, once, before any file is sent (an error ends the command). */
    checkRemote?: (client: HttpClient) => Promise<void>;
    checkLocal?: (server: Server) => Promise<void>;
    print?: (file: string, result: object) => void;
  },
) {
  const { remote, local, print = (file: string, result: object) => console.log(JSON.stringify({ file, ...result })) } = calls;
  // A file that cannot be read is reported on its line like one that is not an image; the others are still answered.
  const images = await Promise.allSettled(
    files.map((file) =>
      readFile(file).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'EISDIR') throw new Error(`${file} is a folder: nereid ${route} takes image files; for a folder of images, nereid batch --model ${flags.model} --input ${file} --output results.jsonl`);
        throw error;
      }),
    ),
  );
  const model = flags.model;
  const started = performance.now();
  let failed = 0;
  const report = (file: string, error: unknown) => {
    failed += 1;
    print(file, { error: (error as Error).message });
  };
  const summarise = () => {
    console.error(`${files.length} image(s), ${failed} failed, in ${(performance.now() - started).toFixed(1)} ms`);
    process.exitCode = failed ? 1 : 0;
  };
  if (flags.url) {
    // The server at --url loads its models with its own settings: these would otherwise be dropped without a word.
    const localOnly = { modelRepository: '--model-repository', allowCodeModels: '--allow-code-models' } as const;
    for (const [key, flag] of Object.entries(localOnly)) {
      // Asked for, not filled in: every command that reads a repository is given the bundled one when none is named.
      if (['cli', 'env'].includes(command.getOptionValueSource(key) ?? '')) console.error(`nereid ${route}: ${flag} is for a run in this process; with --url the server's own settings decide`);
    }
    const [client, { ClientError }] = await Promise.all([serverClient(flags, 'inference'), import('../client/http-client.js')]);
    await calls.checkRemote?.(client);
    for (const [index, file] of files.entries()) {
      const image = images[index];
      if (image.status === 'rejected') {
        report(file, image.reason);
        continue;
      }
      try {
        print(file, await remote(client, image.value));
      } catch (error) {
        // The server's refusal of one image is that image's line; a server that cannot be reached ends the command.
        if (!(error instanceof ClientError)) throw error;
        report(file, error);
      }
    }
    summarise();
    process.exit(); // with process.exitCode: keep-alive sockets to the server would hold the process a few seconds
  }
  const { createCommandServer } = await import('../server/create-server.js');
  const server = await createCommandServer({ modelRepository: flags.modelRepository!, loadModels: [model], allowCodeModels: flags.allowCodeModels, logger: commandLogger() });
  await server.start();
  try {
    // A version named that the model's policy leaves out (a quantized one, say) is loaded on its own, as eval loads it.
    const version = flags.modelVersion;
    if (version !== undefined && !server.modelReady(model, version)) await server.loadVersions(model, [version]);
    await calls.checkLocal?.(server);
    // One call per file, so a bad file is reported on its own line; the batcher still groups them.
    const answers = await Promise.allSettled(images.map((image) => (image.status === 'rejected' ? Promise.reject(image.reason) : local(server, image.value))));
    answers.forEach((answer, index) => {
      if (answer.status === 'rejected') return report(files[index], answer.reason);
      print(files[index], answer.value);
    });
    summarise();
  } finally {
    await server.close();
  }
}

type ImageCommandName = 'classify' | 'detect' | 'ocr';

/** The options `classify`, `detect` and `ocr` share: which model, and where it runs. */
function imageCommand(program: Command, name: ImageCommandName, description: string, defaultModel?: string): Command {
  const command = program.command(name).description(description);
  const modelHelp = `model to ${name === 'ocr' ? 'read text' : name} with`;
  if (defaultModel) command.option('--model <name>', modelHelp, defaultModel);
  else command.requiredOption('--model <name>', modelHelp);
  command
    .option('--model-version <version>', 'model version (default: the latest ready one)')
    .option('--model-repository <dir>', 'model repository to load the model from, in this process (default: the bundled one)', oneRepository)
    .addOption(allowCodeModelsOption())
    .option('--url <url>', `${name} through a running Nereid server instead (e.g. http://127.0.0.1:8000)`);
  return serverConnectionOptions(command, 'inference').argument('<files...>', 'image files (JPEG, PNG, WebP, GIF, TIFF, AVIF)');
}

/** `nereid classify`, `nereid detect` and `nereid ocr`. */
export function addImageCommands(program: Command): void {
  imageCommand(program, 'classify', 'classify image files with a model that declares image pre-processing; prints JSON, one line per file')
    .option('--top-k <n>', 'predictions per image (default: the model\'s top_k)', integer(1))
    .action(async (files: string[], flags, command: Command) => {
      await runImageCommand(
        files,
        flags,
        command,
        'classify',
        {
          remote: (client, image) => client.classify(flags.model, image, { version: flags.modelVersion, topK: flags.topK, contentType: 'application/octet-stream' }),
          local: (server, image) => routeLine(server.classify(flags.model, [image], { version: flags.modelVersion, topK: flags.topK })),
        },
      );
    });

  imageCommand(program, 'detect', 'find objects in image files with a detection model (bundled: object_detection, COCO-80); prints JSON, one line per file: each object\'s label, score and box in the image\'s pixels', 'object_detection')
    .option('--threshold <p>', 'leave out detections scoring below this (default 0.3)')
    .option('--max-detections <n>', 'at most this many detections per image, the best first (default 20)')
    .option('--iou-threshold <p>', 'boxes of one class overlapping more than this are one object (default 0.5)')
    .action(async (files: string[], flags, command: Command) => {
      // Sent as the route's query, and checked here by the schema the route checks it with: the same message either way, before any model loads.
      const options: Record<string, string> = {};
      if (flags.threshold !== undefined) options.threshold = flags.threshold;
      if (flags.maxDetections !== undefined) options.max_detections = flags.maxDetections;
      if (flags.iouThreshold !== undefined) options.iou_threshold = flags.iouThreshold;
      const { parseDetectionOptions } = await import('../processing/object-detection.js');
      const checked = parseDetectionOptions(options);
      if (checked.problem !== undefined) throw new Error(checked.problem);
      const { threshold, max_detections: maxDetections, iou_threshold: iouThreshold } = checked.options;
      await runImageCommand(
        files,
        flags,
        command,
        'detect',
        {
          remote: (client, image) => client.detect(flags.model, image, { version: flags.modelVersion, threshold, maxDetections, iouThreshold, contentType: 'application/octet-stream' }),
          local: (server, image) => routeLine(server.detect(flags.model, [image], { version: flags.modelVersion, query: options })),
        },
      );
    });

  imageCommand(program, 'ocr', 'read the text in image files with an OCR pipeline (bundled: ocr, PaddleOCR); prints JSON, one line per file: each text line with its confidence and box in the image\'s pixels, and the time of each phase', 'ocr')
    .option('--text', 'print the text alone: its lines, each file\'s under a "==> file <==" header when there are several')
    .action(async (files: string[], flags, command: Command) => {
      const { ocrAnswerOf } = await import('../pipelines/ocr/ocr-answer.js');
      const model: string = flags.model;
      // The pipeline's one input is the encoded image; sent under the name its metadata gives, so another OCR pipeline works too.
      let input = '';
      const takeImageInput = ({ inputs, outputs }: { inputs: readonly { name: string; datatype: string }[]; outputs: readonly { name: string }[] }) => {
        if (inputs.length !== 1 || inputs[0].datatype !== 'BYTES') {
          const takes = inputs.map((one) => `${one.name} (${one.datatype})`).join(', ') || 'no input';
          throw new Error(`model '${model}' takes ${takes}: nereid ocr needs an OCR pipeline, whose one input is the encoded image (BYTES; bundled: ocr)`);
        }
        if (!outputs.some((output) => output.name === 'text')) {
          const answers = outputs.map((output) => output.name).join(', ') || 'nothing';
          throw new Error(`model '${model}' answers ${answers}: nereid ocr needs an OCR pipeline, whose answer has a 'text' output (bundled: ocr)`);
        }
        input = inputs[0].name;
      };
      const answerLine = (version: string, answer: ReturnType<typeof ocrAnswerOf>) => ({ model_name: model, model_version: version, ...answer });
      const printText = (file: string, result: object) => {
        if (files.length > 1) console.log(`==> ${file} <==`);
        const { lines, error } = result as { lines?: { text: string }[]; error?: string };
        if (error !== undefined) console.error(`nereid ocr: ${file}: ${error}`);
        for (const line of lines ?? []) console.log(line.text);
      };
      await runImageCommand(files, flags, command, 'ocr', {
        checkRemote: async (client) => takeImageInput(await client.modelMetadata(model, flags.modelVersion)),
        checkLocal: async (server) => takeImageInput(await server.modelMetadata(model, flags.modelVersion)),
        remote: async (client, image) => {
          const answer = await client.infer(model, { [input]: { datatype: 'BYTES', shape: [1], data: [image] } }, { version: flags.modelVersion });
          return answerLine(answer.version, ocrAnswerOf(model, answer.outputs));
        },
        local: async (server, image) => {
          const response = await server.infer({ model, version: flags.modelVersion, inputs: [{ name: input, datatype: 'BYTES', shape: [1], data: [image] }] });
          return answerLine(response.version, ocrAnswerOf(model, Object.fromEntries(response.outputs.map((output) => [output.name, output]))));
        },
        print: flags.text ? printText : undefined,
      });
    });
}
