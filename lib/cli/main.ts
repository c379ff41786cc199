/**
 * The arclight CLI. Every command has --help; errors are one line (the stack with --verbose).
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { Command, InvalidArgumentError, Option, type Argument } from 'commander';
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

function numberList(value: string): number[] {
  const numbers = value.split(',').map((part) => Number(part.trim()));
  if (numbers.length === 0 || numbers.some((n) => !Number.isFinite(n))) {
    throw new InvalidArgumentError('must be numbers separated by commas, e.g. 0.485,0.456,0.406');
  }
  return numbers;
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

/** `<name>`, `[name]`, `[name...]`, as commander writes an argument. */
function argumentTerm(argument: Argument): string {
  const name = `${argument.name()}${argument.variadic ? '...' : ''}`;
  return argument.required ? `<${name}>` : `[${name}]`;
}

const { version } = JSON.parse(readFileSync(packageFile('package.json'), 'utf8')) as { version: string };

const program = new Command('arclight')
  .description('Serve ML models as HTTP APIs: locally, on Lambda, SageMaker or ECS.')
  .version(version, '-V, --version', 'print the version')
  .option('--verbose', 'print stacks with errors')
  // Commands listed without "[options]" (each has some; `<command> --help` lists them), so each fits on its line.
  .configureHelp({
    subcommandTerm: (cmd) =>
      [[cmd.name(), ...cmd.aliases()].join('|'), ...cmd.registeredArguments.map(argumentTerm)].join(' '),
  })
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
  .option('--yaml', 'the API as an arclight.yaml, a predictor and a model: no infrastructure code')
  .action((dir: string, options: Record<string, unknown>) => {
    const yaml = options['yaml'] === true;
    const result = init({ dir, template: options['template'] as InitTemplate, force: options['force'] === true, yaml });
    const cd = relative(process.cwd(), result.dir);
    process.stdout.write(
      [
        `Created ${result.dir} (${result.files.length} files). Next:`,
        ...(cd === '' ? [] : [`  cd ${cd}`]),
        '  npm install',
        '  npm start      # serves the API locally: POST http://127.0.0.1:8080/digits/',
        yaml
          ? '  npx arclight deploy   # deploys arclight.yaml (needs AWS credentials)'
          : '  npm test       # type-checks and synthesizes the stack',
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
    'the model (ONNX, TorchScript .pt or Lightning .ckpt): a local file or an S3 object; ending in /, a versioned prefix (numbered folders 1/, 2/, …: the highest is served)',
  )
  .option(
    '--poll-interval <seconds>',
    'with a versioned --model prefix: look for a new version this often and swap to it under load (default: off)',
    nonNegative,
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
    const { serve } = await import('./local/serve.js');
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
      pollInterval: options['pollInterval'] as number | undefined,
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
    if (handle.versioned) process.stderr.write(`arclight: model version ${handle.runtime.version ?? '?'}\n`);
  });

program
  .command('dev')
  .summary('serve every API of this CDK app locally')
  .description('run every Arclight API of the CDK app locally, from what synth builds: http://HOST:PORT/<apiName>/...')
  .option('--app <command>', 'the CDK app command (default: "app" in cdk.json)')
  .option('--assembly <dir>', 'serve an already synthesized cloud assembly (cdk.out) instead of synthesizing')
  .option('--port <port>', 'port to listen on (0 picks a free one)', port, DEV_DEFAULTS.port)
  .option('--host <host>', 'address to bind', DEV_DEFAULTS.host)
  .option(
    '--file <arclight.yaml>',
    'the app file (default: arclight.yaml, .yml or .json here, unless cdk.json names an app)',
  )
  .action(async (options: Record<string, unknown>) => {
    const { DevClosedError, DevServer } = await import('./local/dev.js');
    const { appFileCommand } = await import('./local/app-file-dev.js');
    const server = new DevServer({
      app: (options['app'] as string | undefined) ?? appFileCommand(options['file'] as string | undefined, options),
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
  .description(
    "POST a payload to an API (a URL, or the name of an API of this app, deployed) and print the response; exits 1 on an HTTP error. IAM APIs are called with SigV4-signed requests, JWT APIs with --token; an image file becomes the model's input tensor",
  )
  .argument('<url|api>', "the API URL (e.g. http://127.0.0.1:8080/), or the name of one of the app's APIs")
  .option('--data <json>', 'JSON body')
  .option(
    '--file <path>',
    "body from a file: .json is sent as JSON; a PNG or JPEG becomes the model's input tensor (OIP APIs) or is sent as image/* (custom predictors); anything else as bytes",
  )
  .option('--content-type <type>', 'override the Content-Type')
  .option('--timeout-ms <n>', 'give up after this long', positiveInt, 30_000)
  .addOption(
    new Option(
      '--auth <mode>',
      "iam: SigV4-sign (execute-api); jwt: send the bearer token; auto: the API's own auth for a name, else jwt with a token, iam for an execute-api URL, none otherwise",
    )
      .choices(['auto', 'iam', 'jwt', 'none'])
      .default('auto'),
  )
  .option('--token <jwt>', 'the bearer token of a JWT API (default: $ARCLIGHT_TOKEN)')
  .option('--region <region>', 'the AWS region (default: from the URL, the stack, or AWS_REGION)')
  .option('--profile <name>', 'the AWS profile to sign with and look the API up with (default: AWS_PROFILE)')
  .option('--app <command>', 'API names: the CDK app command (default: "app" in cdk.json)')
  .option('--assembly <dir>', 'API names: read an already synthesized cloud assembly (cdk.out)')
  .option('--raw', 'send an image file as it is, not as a tensor')
  .option(
    '--mean <r,g,b>',
    "images: per-channel mean after scaling (default: ImageNet's 0.485,0.456,0.406)",
    numberList,
  )
  .option('--std <r,g,b>', "images: per-channel standard deviation (default: ImageNet's 0.229,0.224,0.225)", numberList)
  .option('--pixel-scale <n>', 'images: pixels (0-255) are divided by this first', nonNegative, 255)
  .option('--size <n>', "images: height and width where the model's shape is dynamic", positiveInt, 224)
  .action(async (target: string, options: Record<string, unknown>) => {
    const { failureLine, predict } = await import('./predict.js');
    const outcome = await predict(target, {
      data: options['data'] as string | undefined,
      file: options['file'] as string | undefined,
      contentType: options['contentType'] as string | undefined,
      timeoutMs: options['timeoutMs'] as number,
      auth: options['auth'] as 'auto' | 'iam' | 'jwt' | 'none',
      token: options['token'] as string | undefined,
      region: options['region'] as string | undefined,
      profile: options['profile'] as string | undefined,
      app: options['app'] as string | undefined,
      assembly: options['assembly'] as string | undefined,
      verbose: program.opts<{ verbose?: boolean }>().verbose === true,
      raw: options['raw'] === true,
      mean: options['mean'] as number[] | undefined,
      std: options['std'] as number[] | undefined,
      scale: options['pixelScale'] as number,
      size: options['size'] as number,
    });
    process.stdout.write(`${outcome.body}\n`);
    if (outcome.status >= 400) {
      process.stderr.write(`${failureLine(outcome)}\n`);
      process.exitCode = 1;
    }
  });

const file = (): Option =>
  new Option(
    '--file <arclight.yaml>',
    'the app file (default: arclight.yaml, .yml or .json here, unless cdk.json names an app)',
  );
const collect = (value: string, previous: string[]): string[] => [...previous, value];

program
  .command('synth')
  .summary("synthesize arclight.yaml (or cdk.json's app)")
  .description('check arclight.yaml (every problem at once) and synthesize the app with the CDK CLI into cdk.out')
  .addOption(file())
  .option('--cdk-arg <arg>', 'pass an argument to cdk synth (repeatable)', collect, [])
  .action(async (options: Record<string, unknown>) => {
    const { synth, synthSummary } = await import('./deploy/synth.js');
    const { assembly } = await synth({
      file: options['file'] as string | undefined,
      extra: options['cdkArg'] as string[],
    });
    process.stdout.write(`${synthSummary(assembly)}\n`);
  });

program
  .command('deploy')
  .summary('deploy the APIs and print their URLs')
  .description('deploy the named APIs (all when none is named) with the CDK CLI, each its own stack; print each URL')
  .argument('[api...]', 'the APIs to deploy')
  .addOption(file())
  .addOption(
    new Option('--require-approval <level>', 'passed to cdk deploy: which changes need approval').choices([
      'never',
      'any-change',
      'broadening',
    ]),
  )
  .action(async (apis: string[], options: Record<string, unknown>) => {
    const { deploy } = await import('./deploy/deploy.js');
    const deployed = await deploy({
      apis,
      file: options['file'] as string | undefined,
      requireApproval: options['requireApproval'] as string | undefined,
    });
    for (const api of deployed) process.stdout.write(`${api.apiName}\t${api.url ?? '(no URL output)'}\n`);
  });

program
  .command('diff')
  .summary('show what a deploy would change')
  .argument('[api...]', 'the APIs to compare (all when none is named)')
  .addOption(file())
  .action(async (apis: string[], options: Record<string, unknown>) => {
    const { diff } = await import('./deploy/diff.js');
    await diff({ apis, file: options['file'] as string | undefined });
  });

program
  .command('destroy')
  .alias('delete')
  .summary('delete deployed APIs (asks first)')
  .description('delete the named APIs (all when none is named): their stacks and every resource in them')
  .argument('[api...]', 'the APIs to delete')
  .addOption(file())
  .option('-y, --yes', 'do not ask for confirmation')
  .action(async (apis: string[], options: Record<string, unknown>) => {
    const { destroy } = await import('./deploy/destroy.js');
    const deleted = await destroy({ apis, file: options['file'] as string | undefined, yes: options['yes'] === true });
    process.stdout.write(deleted.length > 0 ? `deleted ${deleted.join(', ')}\n` : 'nothing deleted\n');
  });

const batch = program
  .command('batch')
  .summary('run a model over every request in a file or prefix')
  .description('batch jobs: every request in a JSON Lines file, folder or S3 prefix');
batch
  .command('run')
  .summary('run a batch job on this machine (--local)')
  .description(
    'run every request of the input through the model and predictor, writing results/, failures.jsonl and summary.json under the output; run again on the same output to retry only the failures. Exits 2 when items failed',
  )
  .requiredOption('--local', 'run on this machine (deployed jobs start with their state machine or CreateTransformJob)')
  .requiredOption('--model <path|s3://bucket/key>', 'the model: a local file or an S3 object')
  .option('--predictor <file.ts>', 'predictor module; default: Open Inference Protocol')
  .requiredOption(
    '--input <file.jsonl|dir|s3://bucket/prefix/>',
    'JSON Lines (one request per line) or objects (one request each)',
  )
  .requiredOption('--output <dir|s3://bucket/prefix/>', 'where results, the failures manifest and the summary go')
  .option('--concurrency <n>', 'items in flight at once (default: one per core)', positiveInt)
  .option('--timeout-ms <n>', 'per-item timeout; past it the item fails with 504', positiveInt, 60_000)
  .option('--config <json|@file>', 'JSON object handed to init() and predict() as config')
  .option('--sha256 <hex>', 'refuse a model whose sha256 differs')
  .option('--threads <n>', 'onnxruntime intra-op threads', positiveInt)
  .option('--restart', 'discard what --output holds and run every item again')
  .action(async (options: Record<string, unknown>) => {
    const { batchRun, reportLines } = await import('./batch/batch.js');
    const { parseConfigOption } = await import('./config-option.js');
    const output = options['output'] as string;
    const configOption = options['config'] as string | undefined;
    const config = configOption === undefined ? undefined : await parseConfigOption(configOption);
    const result = await batchRun({
      model: options['model'] as string,
      predictor: options['predictor'] as string | undefined,
      input: options['input'] as string,
      output,
      concurrency: options['concurrency'] as number | undefined,
      timeoutMs: options['timeoutMs'] as number,
      sha256: options['sha256'] as string | undefined,
      threads: options['threads'] as number | undefined,
      restart: options['restart'] === true,
      ...(config ? { config } : {}),
    });
    process.stderr.write(`${reportLines(result, output).join('\n')}\n`);
    if (result.summary.failed > 0) process.exitCode = 2;
  });
batch
  .command('status')
  .summary('show a deployed batch job')
  .argument('<job>', 'a Step Functions execution ARN, or a SageMaker transform job name or ARN')
  .action(async (job: string) => {
    const { formatStatus, jobStatus } = await import('./batch/batch-jobs.js');
    process.stdout.write(`${formatStatus(await jobStatus(job))}\n`);
  });
batch
  .command('cancel')
  .summary('stop a deployed batch job')
  .argument('<job>', 'a Step Functions execution ARN, or a SageMaker transform job name or ARN')
  .action(async (job: string) => {
    const { cancelJob } = await import('./batch/batch-jobs.js');
    process.stdout.write(`${await cancelJob(job)}\n`);
  });

program
  .command('get')
  .summary("show each deployed API's URL, status and traffic")
  .description(
    "for each API of the app (or one): its backend, URL, stack status, function/endpoint/service state, model version and sha256, and the last hour's request count, error rate and p99 latency from CloudWatch",
  )
  .argument('[api]', 'one API by name (default: all)')
  .option('--region <region>', "the AWS region (default: the stack's, or AWS_REGION)")
  .option('--profile <name>', 'the AWS profile (default: AWS_PROFILE)')
  .option('--app <command>', 'the CDK app command (default: "app" in cdk.json)')
  .option('--assembly <dir>', 'read an already synthesized cloud assembly (cdk.out) instead of synthesizing')
  .option('--json', 'print JSON')
  .action(async (api: string | undefined, options: Record<string, unknown>) => {
    const { formatReports, getApis } = await import('./aws/get.js');
    const reports = await getApis({
      api,
      region: options['region'] as string | undefined,
      profile: options['profile'] as string | undefined,
      app: options['app'] as string | undefined,
      assembly: options['assembly'] as string | undefined,
      verbose: program.opts<{ verbose?: boolean }>().verbose === true,
    });
    process.stdout.write(`${options['json'] === true ? JSON.stringify(reports, null, 2) : formatReports(reports)}\n`);
  });

program
  .command('logs')
  .summary("print an API's logs from CloudWatch")
  .description(
    "print an API's log lines (its function's, endpoint's or containers' log group), our JSON records pretty-printed; colour on a terminal",
  )
  .argument('<api>', 'the API by name')
  .option('--since <when>', 'how far back: 30s, 10m, 2h, 1d, or an ISO 8601 time', '10m')
  .option('--request-id <id>', "only this request's lines")
  .option('-f, --follow', 'keep printing new lines until stopped')
  .option('--region <region>', "the AWS region (default: the stack's, or AWS_REGION)")
  .option('--profile <name>', 'the AWS profile (default: AWS_PROFILE)')
  .option('--app <command>', 'the CDK app command (default: "app" in cdk.json)')
  .option('--assembly <dir>', 'read an already synthesized cloud assembly (cdk.out) instead of synthesizing')
  .action(async (api: string, options: Record<string, unknown>) => {
    const { logs } = await import('./aws/logs.js');
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    process.once('SIGTERM', () => stop.abort());
    await logs(api, {
      since: options['since'] as string,
      requestId: options['requestId'] as string | undefined,
      follow: options['follow'] === true,
      region: options['region'] as string | undefined,
      profile: options['profile'] as string | undefined,
      app: options['app'] as string | undefined,
      assembly: options['assembly'] as string | undefined,
      verbose: program.opts<{ verbose?: boolean }>().verbose === true,
      signal: stop.signal,
    });
  });

program
  .command('plan')
  .summary('estimate cold start and cost per API before deploying')
  .description(
    "per API of the app: the compute and its settings, the model's size, the expected cold start and the cost per million requests and per idle hour, each figure with its source",
  )
  .argument('[api]', 'one API by name (default: all)')
  .option('--prices <file>', "a price table of the shipped shape (default: the package's prices/aws-us-east-1.json)")
  .option('--bench-results <dir>', "where bench results are read from (fetch.json's rates)", 'bench-results')
  .option('--request-ms <n>', 'how long a request runs on Lambda, for its duration cost', positiveInt)
  .option('--app <command>', 'the CDK app command (default: "app" in cdk.json)')
  .option('--assembly <dir>', 'read an already synthesized cloud assembly (cdk.out) instead of synthesizing')
  .option('--json', 'print JSON')
  .action(async (api: string | undefined, options: Record<string, unknown>) => {
    const { formatPlan, plan } = await import('./plan.js');
    const result = await plan({
      api,
      prices: options['prices'] as string | undefined,
      benchResults: options['benchResults'] as string,
      requestMs: options['requestMs'] as number | undefined,
      app: options['app'] as string | undefined,
      assembly: options['assembly'] as string | undefined,
      verbose: program.opts<{ verbose?: boolean }>().verbose === true,
    });
    process.stdout.write(`${options['json'] === true ? JSON.stringify(result, null, 2) : formatPlan(result)}\n`);
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  reportError(error, program.opts<{ verbose?: boolean }>().verbose === true);
  process.exitCode = 1;
}
