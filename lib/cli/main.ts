/**
 * The arclight CLI. Every command has --help; errors are one line (the stack with --verbose).
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { reportError } from './fail.js';
import { init, INIT_TEMPLATES, type InitTemplate } from './init.js';
import { DEFAULTS, MODEL_FORMATS } from '../contract.js';
import { packageFile } from '../package-files.js';
import { LOG_LEVELS, type LogLevel } from '../runtime/telemetry/logger.js';
import { guardProcess } from '../runtime/transports/process-guard.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function nonNegative(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a non-negative number');
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number, 0 to 65535');
  return n;
}

// Each command's module loads when that command runs: --help, --version and init start without onnxruntime,
// esbuild or the AWS SDK.
const SERVE_DEFAULTS = {
  port: DEFAULTS.port,
  host: DEFAULTS.host,
  maxBodyBytes: DEFAULTS.maxBodyBytes,
  timeoutMs: DEFAULTS.requestTimeoutMs,
} as const;
const DEV_DEFAULTS = { port: DEFAULTS.port, host: DEFAULTS.host } as const;

const { version } = JSON.parse(readFileSync(packageFile('package.json'), 'utf8')) as { version: string };

const program = new Command('arclight')
  .description('Serve ML models as HTTP APIs: locally, on Lambda, SageMaker or ECS.')
  .version(version, '-V, --version', 'print the version')
  .option('--verbose', 'print stacks with errors')
  .showHelpAfterError();

program
  .command('init')
  .summary('create a new CDK app with one inference API')
  .description('create a new CDK app with one inference API (a predictor and a starter model) that runs at once')
  .argument('[dir]', 'where to create it', '.')
  .addOption(
    new Option('--template <name>', 'the starter model: onnx, or torch (TorchScript; needs Python with torch)')
      .choices(INIT_TEMPLATES)
      .default('onnx'),
  )
  .option('--force', 'write into a directory that is not empty (files of the same name are replaced)')
  .action((dir: string, options: Record<string, unknown>) => {
    const result = init({ dir, template: options['template'] as InitTemplate, force: options['force'] === true });
    const cd = relative(process.cwd(), result.dir);
    process.stdout.write(
      [
        `Created ${result.dir} (${result.files.length} files). Next:`,
        ...(cd === '' ? [] : [`  cd ${cd}`]),
        '  npm install',
        '  npm start      # serves the API locally: POST http://127.0.0.1:8080/digits/',
        '  npm test       # type-checks and synthesizes the stack',
        '',
      ].join('\n'),
    );
  });

program
  .command('serve')
  .summary('serve one model locally, with an optional predictor')
  .description('serve one model (and optionally a predictor) at the root of a local port')
  .requiredOption(
    '--model <path|s3://bucket/key>',
    'the model (ONNX, TorchScript .pt or Lightning .ckpt): a local file or an S3 object',
  )
  .addOption(
    new Option('--format <format>', 'the model format (default: read from the file)').choices([...MODEL_FORMATS]),
  )
  .option('--module <file.py>', 'Lightning checkpoints: the Python file defining the model class')
  .option('--class <name>', 'Lightning checkpoints: the model class in --module')
  .option('--inputs <json>', 'torch models: declared inputs, \'[{"name","datatype","shape"}]\' (default: from forward)')
  .option('--outputs <json>', 'torch models: output names and metadata, in the order forward returns them')
  .option(
    '--predictor <file.ts>',
    'predictor module (TypeScript runs without a build step); default: Open Inference Protocol',
  )
  .option('--name <api>', 'API name, also the OIP model name (default: the model file name)')
  .option('--port <port>', 'port to listen on', port, SERVE_DEFAULTS.port)
  .option('--host <host>', 'address to bind', SERVE_DEFAULTS.host)
  .option('--config <json|@file>', 'JSON object handed to init() and predict() as config')
  .option('--sha256 <hex>', 'refuse a model whose sha256 differs')
  .option('--threads <n>', 'onnxruntime intra-op threads, or torch threads (default: one per core)', positiveInt)
  .option(
    '--workers <n>',
    'inference worker threads, as the container server runs them; 0: in the server thread (default: one per core, up to 4)',
    nonNegativeInt,
  )
  .option('--max-body-bytes <n>', 'largest request body; above it 413', positiveInt, SERVE_DEFAULTS.maxBodyBytes)
  .option('--timeout-ms <n>', 'per-request timeout; past it 504', positiveInt, SERVE_DEFAULTS.timeoutMs)
  .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('INFO'))
  .option(
    '--embedded-s3',
    'upload the local model to an S3 server on loopback and load it from there, as a deployed function does',
  )
  .action(async (options: Record<string, unknown>) => {
    const { serve } = await import('./serve.js');
    const handle = await serve({
      model: options['model'] as string,
      predictor: options['predictor'] as string | undefined,
      name: options['name'] as string | undefined,
      port: options['port'] as number,
      host: options['host'] as string,
      config: options['config'] as string | undefined,
      sha256: options['sha256'] as string | undefined,
      threads: options['threads'] as number | undefined,
      workers: options['workers'] as number | undefined,
      maxBodyBytes: options['maxBodyBytes'] as number,
      timeoutMs: options['timeoutMs'] as number,
      logLevel: options['logLevel'] as LogLevel,
      embeddedS3: options['embeddedS3'] === true,
      format: options['format'] as string | undefined,
      module: options['module'] as string | undefined,
      className: options['class'] as string | undefined,
      inputs: options['inputs'] as string | undefined,
      outputs: options['outputs'] as string | undefined,
    });
    const stop = (signal: string): void => {
      process.stderr.write(`arclight: ${signal}, stopping\n`);
      void handle.close().then(() => process.exit(0));
    };
    // Handlers first: whoever reads the line below may signal at once.
    guardProcess(handle.runtime.log);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    process.stderr.write(`arclight: serving '${handle.runtime.apiName}' on ${handle.url}/ (ready)\n`);
  });

program
  .command('dev')
  .summary('serve every API of this CDK app locally')
  .description('run every Arclight API of the CDK app locally, from what synth builds: http://HOST:PORT/<apiName>/...')
  .option('--app <command>', 'the CDK app command (default: "app" in cdk.json)')
  .option('--assembly <dir>', 'serve an already synthesized cloud assembly (cdk.out) instead of synthesizing')
  .option('--port <port>', 'port to listen on (0 picks a free one)', port, DEV_DEFAULTS.port)
  .option('--host <host>', 'address to bind', DEV_DEFAULTS.host)
  .action(async (options: Record<string, unknown>) => {
    const { DevClosedError, DevServer } = await import('./dev.js');
    const server = new DevServer({
      app: options['app'] as string | undefined,
      assembly: options['assembly'] as string | undefined,
      port: options['port'] as number,
      host: options['host'] as string,
      verbose: program.opts<{ verbose?: boolean }>().verbose === true,
    });
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`arclight: ${signal}, stopping\n`);
      void server.close().then(() => process.exit(0));
    };
    // Handlers first: a signal during start-up must stop the API hosts already running too. `on`, not `once`: a
    // terminal's Ctrl-C under `npm start` arrives twice (from the terminal and forwarded by npm), and a second
    // signal must not cut the cleanup short.
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    try {
      await server.start();
    } catch (error) {
      if (stopping && error instanceof DevClosedError) return;
      await server.close();
      throw error;
    }
  });

const bench = program.command('bench').description('benchmark a model as it would be served');
bench
  .command('formats')
  .summary('compare ONNX, TorchScript and checkpoint: outputs and speed')
  .description(
    'serve the same model as ONNX, TorchScript and a Lightning checkpoint through the real front: check that their outputs agree and print latency and throughput per format',
  )
  .option('--onnx <file>', 'the ONNX export')
  .option('--torchscript <file>', 'the TorchScript export (.pt); also timed in Python directly, for the overhead')
  .option('--checkpoint <file>', 'the Lightning checkpoint (.ckpt); needs --module and --class')
  .option('--module <file.py>', "the checkpoint's Python file defining the model class")
  .option('--class <name>', 'the model class in --module')
  .requiredOption('--input <json|@file>', 'an Open Inference Protocol request, sent to every format')
  .option('--requests <n>', 'timed requests per format', positiveInt, 200)
  .option('--concurrency <n>', 'requests in flight at once', positiveInt, 1)
  .option('--tolerance <x>', 'largest max abs diff that counts as agreement', nonNegative, 1e-4)
  .option('--threads <n>', "intra-op threads of every format (default: the engines' own choice)", positiveInt)
  .action(async (options: Record<string, unknown>) => {
    const { benchFormats, formatReport } = await import('./bench-formats.js');
    const tolerance = options['tolerance'] as number;
    const result = await benchFormats({
      onnx: options['onnx'] as string | undefined,
      torchscript: options['torchscript'] as string | undefined,
      checkpoint: options['checkpoint'] as string | undefined,
      module: options['module'] as string | undefined,
      className: options['class'] as string | undefined,
      input: options['input'] as string,
      requests: options['requests'] as number,
      concurrency: options['concurrency'] as number,
      tolerance,
      threads: options['threads'] as number | undefined,
    });
    process.stdout.write(`${formatReport(result, tolerance)}\n`);
    if (!result.agree) process.exitCode = 1;
  });

program
  .command('predict')
  .summary('POST a payload to an API and print the response')
  .description('POST a payload to an API and print the response; exits 1 on an HTTP error')
  .argument('<url>', 'the API URL, e.g. http://127.0.0.1:8080/')
  .option('--data <json>', 'JSON body')
  .option('--file <path>', 'body from a file (.json is sent as JSON, anything else as bytes)')
  .option('--content-type <type>', 'override the Content-Type')
  .option('--timeout-ms <n>', 'give up after this long', positiveInt, 30_000)
  .action(async (url: string, options: Record<string, unknown>) => {
    const { failureLine, predict } = await import('./predict.js');
    const outcome = await predict(url, {
      data: options['data'] as string | undefined,
      file: options['file'] as string | undefined,
      contentType: options['contentType'] as string | undefined,
      timeoutMs: options['timeoutMs'] as number,
    });
    process.stdout.write(`${outcome.body}\n`);
    if (outcome.status >= 400) {
      process.stderr.write(`${failureLine(outcome)}\n`);
      process.exitCode = 1;
    }
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  reportError(error, program.opts<{ verbose?: boolean }>().verbose === true);
  process.exitCode = 1;
}
