import { Command } from 'commander';
import { versionWeights } from './arguments.js';
import { serverClient, serverConnectionOptions } from './command-support.js';

/** `nereid promote`. */
export function addPromoteCommand(program: Command): void {
  const promote = program
    .command('promote')
    .description("shift a running server's traffic between a model's versions (its canary weights), without a reload; needs --model-control-mode explicit or on_demand on the server")
    .requiredOption('--model <name>', 'model whose traffic to shift')
    .requiredOption('--weights <pairs>', 'VERSION=WEIGHT pairs, e.g. 1=50,2=50 or 2=100 to send everything to version 2', versionWeights)
    .option('--url <url>', 'the server', 'http://127.0.0.1:8000');
  serverConnectionOptions(promote, 'management').action(async (flags) => {
    const client = await serverClient(flags, 'management');
    const { ClientError } = await import('../client/http-client.js');
    try {
      console.log(JSON.stringify(await client.setTraffic(flags.model, flags.weights)));
    } catch (error) {
      // The server's refusal is the command's answer, printed as it prints a success; a server out of reach is an error.
      if (!(error instanceof ClientError)) throw error;
      console.log(JSON.stringify({ error: error.message }));
      process.exitCode = 1;
    }
  });
}
