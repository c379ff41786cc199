/**
 * The API's OpenAPI 3.1 document (`GET /openapi.json`): the routes this runtime serves, the Open Inference Protocol's
 * request and response schemas specialized to this model's inputs and outputs (names, datatypes, shapes), the error
 * body, and for a custom predictor the JSON Schema of its declared request and response with its example.
 */
import { ERROR_STATUS, ROUTES } from '../../contract.js';
import type { DeclaredSchema, DefinedPredictor, JsonValue, Model, TensorInfo } from '../../predictor.js';
import { tensorSignature } from '../executors/model.js';

export interface OpenApiOptions {
  readonly model: Model;
  /** The custom predictor behind `POST /`; the Open Inference Protocol when absent. */
  readonly predictor?: DefinedPredictor<unknown>;
  /** Whether `GET /docs` (the playground) is served. */
  readonly playground: boolean;
}

type Schema = Record<string, unknown>;
type Operation = Record<string, unknown>;

/** Examples of tensors above this many elements are left out: a MobileNet's zeros would be megabytes of JSON. */
const MAX_EXAMPLE_ELEMENTS = 4096;

const OIP_SPEC = 'https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md';

export function openApiDocument(options: OpenApiOptions): Record<string, unknown> {
  const { model, predictor } = options;
  const modelPath = `${ROUTES.modelPrefix}${encodeURIComponent(model.name)}`;
  const paths: Record<string, Record<string, Operation>> = {
    [ROUTES.predict]: {
      get: operation('metadata', 'The API: its name, model format, inputs and outputs', jsonResponse('ApiMetadata')),
      post: predictor
        ? customPredictOperation(predictor)
        : inferOperation('predict', 'Inference (the default predictor)'),
    },
    '/v2': {
      get: operation('serverMetadata', 'Open Inference Protocol server metadata', jsonResponse('ServerMetadata')),
    },
    [ROUTES.live]: { get: operation('live', 'Liveness', jsonResponse('Live')) },
    [ROUTES.ready]: {
      get: operation('ready', 'Readiness: 200 once the model is loaded', jsonResponse('Ready'), [503]),
    },
    [modelPath]: {
      get: operation('modelMetadata', `Metadata of model '${model.name}'`, jsonResponse('ModelMetadata'), [404, 503]),
    },
    [`${modelPath}/ready`]: {
      get: operation('modelReady', `Readiness of model '${model.name}'`, jsonResponse('ModelReady'), [404, 503]),
    },
    [`${modelPath}/infer`]: { post: inferOperation('infer', `Inference on model '${model.name}'`) },
    [`${modelPath}/stats`]: {
      get: operation(
        'modelStatistics',
        `Statistics of model '${model.name}' (the statistics extension, in Triton's form)`,
        jsonResponse('ModelStatistics'),
        [404, 503],
      ),
    },
    [ROUTES.openapi]: {
      get: operation('openapi', 'This document', {
        description: 'The OpenAPI 3.1 document',
        content: { 'application/json': { schema: { type: 'object' } } },
      }),
    },
    ...(options.playground
      ? {
          [ROUTES.docs]: {
            get: operation('playground', 'The playground page: send a request from a browser', {
              description: 'An HTML page',
              content: { 'text/html': { schema: { type: 'string' } } },
            }),
          },
        }
      : {}),
  };
  return {
    openapi: '3.1.0',
    info: {
      title: model.name,
      version: '1',
      description:
        `Inference API '${model.name}' (${model.format} model), served by Arclight. Open Inference Protocol v2 routes ` +
        `(${OIP_SPEC}) with tensors as JSON or in the binary extension. Errors are {"error": message, "code", "requestId"}.`,
    },
    // Relative: the document is served at the API's root, whatever prefix (a stage, `arclight dev`'s /<api>) is ahead.
    servers: [{ url: '.', description: 'where this document is served from' }],
    paths,
    components: {
      schemas: { ...commonSchemas(model), ...tensorSchemas(model) },
      responses: errorResponses(),
      parameters: {
        InferenceHeaderContentLength: {
          name: 'Inference-Header-Content-Length',
          in: 'header',
          required: false,
          description:
            'Binary tensor extension: the length in bytes of the JSON header at the start of the body; the tensors ' +
            'follow as raw little-endian bytes (binary_data_size per tensor)',
          schema: { type: 'integer', minimum: 0 },
        },
      },
    },
  };
}

function operation(id: string, summary: string, ok: Schema, errors: readonly number[] = [], extra: Operation = {}) {
  return {
    operationId: id,
    summary,
    ...extra,
    responses: {
      '200': ok,
      ...Object.fromEntries([...new Set([...errors, 405, 500])].sort().map((s) => [String(s), ref(s)])),
    },
  };
}

function ref(status: number): Schema {
  return { $ref: `#/components/responses/Error${status}` };
}

function jsonResponse(schema: string): Schema {
  return { description: 'OK', content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } } };
}

const INFER_ERRORS = [400, 404, 413, 415, 503, 504];

function inferOperation(id: string, summary: string): Operation {
  return operation(
    id,
    summary,
    {
      description: 'The outputs',
      content: {
        'application/json': { schema: { $ref: '#/components/schemas/InferResponse' } },
        'application/octet-stream': {
          schema: binarySchema(
            'Binary tensor extension (when asked for with binary_data_output or binary_data): the JSON header, then ' +
              'the outputs raw; the Inference-Header-Content-Length response header gives the header length',
          ),
        },
      },
    },
    INFER_ERRORS,
    {
      parameters: [{ $ref: '#/components/parameters/InferenceHeaderContentLength' }],
      requestBody: {
        required: true,
        content: {
          'application/json': { schema: { $ref: '#/components/schemas/InferRequest' } },
          'application/octet-stream': {
            schema: binarySchema(
              'Binary tensor extension: the JSON header (its length in Inference-Header-Content-Length), then the tensors raw',
            ),
          },
        },
      },
    },
  );
}

function binarySchema(description: string): Schema {
  return { type: 'string', contentMediaType: 'application/octet-stream', description };
}

function customPredictOperation(predictor: DefinedPredictor<unknown>): Operation {
  const request = jsonSchemaOf(predictor.request);
  const response = jsonSchemaOf(predictor.response);
  const example = predictor.example as JsonValue | undefined;
  const requestBody = request
    ? {
        required: true,
        description: "The predictor's declared request",
        content: {
          'application/json': { schema: request, ...(example === undefined ? {} : { example }) },
        },
      }
    : {
        description: 'JSON (parsed), text/* (a string) or any other bytes: the predictor decides',
        content: {
          'application/json': { schema: {}, ...(example === undefined ? {} : { example }) },
          'text/plain': { schema: { type: 'string' } },
          'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } },
        },
      };
  return operation(
    'predict',
    'The predictor',
    {
      description: response ? "The predictor's declared response" : "The predictor's answer",
      content: { 'application/json': { schema: response ?? {} } },
    },
    [400, 413, 415, 503, 504],
    { requestBody },
  );
}

/** A declared schema as JSON Schema (draft 2020-12, OpenAPI 3.1's dialect); undefined when none is declared. */
export function jsonSchemaOf(schema: DeclaredSchema | undefined): Schema | undefined {
  if (schema === undefined) return undefined;
  const convert = schema['~standard'].jsonSchema;
  if (!convert) return { description: 'declared with a schema library that does not convert to JSON Schema' };
  try {
    // What clients send and receive is the schema's input side (before any transform).
    const json = convert.input({ target: 'draft-2020-12' });
    delete json['$schema'];
    return json;
  } catch (error) {
    return { description: `the declared schema has no JSON Schema form: ${(error as Error).message}` };
  }
}

function errorResponses(): Record<string, Schema> {
  const reasons: Record<number, string> = {
    400: 'Bad input',
    404: 'Unknown route or model',
    405: 'Wrong method (the Allow header lists the right ones)',
    413: 'Body too large',
    415: 'Unsupported content type',
    500: 'The predictor failed (the logs carry the details under the request id)',
    503: 'Loading or overloaded (with Retry-After)',
    504: 'The request did not finish in time',
  };
  return Object.fromEntries(
    Object.entries(reasons).map(([status, description]) => [
      `Error${status}`,
      {
        description,
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      },
    ]),
  );
}

function commonSchemas(model: Model): Record<string, Schema> {
  const tensorMetadata = {
    type: 'object',
    required: ['name', 'datatype', 'shape'],
    properties: {
      name: { type: 'string' },
      datatype: { type: 'string' },
      shape: { type: 'array', items: { type: 'integer' }, description: '-1 for a dynamic dimension' },
    },
  };
  return {
    Error: {
      type: 'object',
      description: "The Open Inference Protocol's error body, with Arclight's code and request id beside the message",
      required: ['error', 'code', 'requestId'],
      properties: {
        error: { type: 'string', description: 'What went wrong, for a person' },
        code: { type: 'string', enum: Object.keys(ERROR_STATUS), description: 'What went wrong, for a program' },
        requestId: { type: 'string', description: 'Also in the x-request-id header; the logs carry it' },
      },
    },
    ApiMetadata: {
      type: 'object',
      required: ['name', 'format', 'ready', 'predictor', 'inputs', 'outputs'],
      properties: {
        name: { type: 'string', const: model.name },
        format: { type: ['string', 'null'] },
        ready: { type: 'boolean' },
        predictor: { type: 'string', enum: ['custom', 'default'] },
        inputs: { type: 'array', items: tensorMetadata },
        outputs: { type: 'array', items: tensorMetadata },
      },
    },
    ServerMetadata: {
      type: 'object',
      required: ['name', 'version', 'extensions'],
      properties: {
        name: { type: 'string' },
        version: { type: 'string' },
        extensions: { type: 'array', items: { type: 'string' } },
      },
    },
    ModelStatistics: modelStatisticsSchema(),
    Live: { type: 'object', required: ['live'], properties: { live: { type: 'boolean', const: true } } },
    Ready: { type: 'object', required: ['ready'], properties: { ready: { type: 'boolean', const: true } } },
    ModelReady: {
      type: 'object',
      required: ['name', 'ready'],
      properties: { name: { type: 'string', const: model.name }, ready: { type: 'boolean' } },
    },
    ModelMetadata: {
      type: 'object',
      required: ['name', 'platform', 'inputs', 'outputs'],
      properties: {
        name: { type: 'string', const: model.name },
        platform: { type: 'string' },
        inputs: { type: 'array', items: tensorMetadata },
        outputs: { type: 'array', items: tensorMetadata },
      },
      example: {
        name: model.name,
        inputs: model.inputs.map(tensorSignature),
        outputs: model.outputs.map(tensorSignature),
      },
    },
  };
}

/** InferRequest and InferResponse with one schema per input and output of this model. */
function tensorSchemas(model: Model): Record<string, Schema> {
  const schemas: Record<string, Schema> = {};
  const inputRefs = model.inputs.map((info) => {
    const key = `Input${model.inputs.indexOf(info)}_${schemaKey(info.name)}`;
    schemas[key] = tensorSchema(info, 'input');
    return { $ref: `#/components/schemas/${key}` };
  });
  const outputRefs = model.outputs.map((info) => {
    const key = `Output${model.outputs.indexOf(info)}_${schemaKey(info.name)}`;
    schemas[key] = tensorSchema(info, 'output');
    return { $ref: `#/components/schemas/${key}` };
  });
  const parameters = { type: 'object', additionalProperties: true };
  const example = inferExample(model.inputs);
  schemas['InferRequest'] = {
    type: 'object',
    required: ['inputs'],
    properties: {
      id: { type: 'string' },
      parameters: { ...parameters, description: 'binary_data_output: true asks for every output in binary form' },
      inputs: {
        type: 'array',
        description: `One per input of the model: ${model.inputs.map((i) => i.name).join(', ')}`,
        items: inputRefs.length === 1 ? inputRefs[0] : { oneOf: inputRefs },
        minItems: model.inputs.length,
        maxItems: model.inputs.length,
      },
      outputs: {
        type: 'array',
        description: 'The outputs wanted (all when absent), each optionally with parameters.binary_data',
        items: {
          type: 'object',
          required: ['name'],
          properties: { name: { type: 'string', enum: model.outputs.map((o) => o.name) }, parameters },
        },
      },
    },
    ...(example ? { example } : {}),
  };
  schemas['InferResponse'] = {
    type: 'object',
    required: ['model_name', 'outputs'],
    properties: {
      model_name: { type: 'string', const: model.name },
      model_version: { type: 'string' },
      id: { type: 'string' },
      parameters,
      outputs: { type: 'array', items: outputRefs.length === 1 ? outputRefs[0] : { oneOf: outputRefs } },
    },
  };
  for (const datatype of new Set([...model.inputs, ...model.outputs].map((t) => t.datatype))) {
    schemas[`Data_${datatype}`] = {
      type: 'array',
      description: `${datatype} elements, flat in row-major order or nested as the shape`,
      items: { anyOf: [elementSchema(datatype), { $ref: `#/components/schemas/Data_${datatype}` }] },
    };
  }
  return schemas;
}

function tensorSchema(info: TensorInfo, side: 'input' | 'output'): Schema {
  const shapeText = info.asSent ? 'as sent' : `[${info.shape.join(', ')}]`;
  return {
    type: 'object',
    description: `${side} '${info.name}': ${info.asSent ? 'any datatype and shape' : `${info.datatype} ${shapeText}`}`,
    required: side === 'input' ? ['name', 'datatype', 'shape'] : ['name', 'datatype', 'shape'],
    properties: {
      name: { type: 'string', const: info.name },
      datatype: info.asSent ? { type: 'string' } : { type: 'string', const: info.datatype },
      shape: info.asSent ? { type: 'array', items: { type: 'integer', minimum: 0 } } : shapeSchema(info.shape),
      data: info.asSent ? { type: 'array' } : { $ref: `#/components/schemas/Data_${info.datatype}` },
      parameters: { type: 'object', additionalProperties: true },
    },
  };
}

/** Fixed dimensions as constants, dynamic ones (-1) as any size. */
function shapeSchema(shape: readonly number[]): Schema {
  return {
    type: 'array',
    prefixItems: shape.map((d) => (d < 0 ? { type: 'integer', minimum: 0 } : { type: 'integer', const: d })),
    items: false,
    minItems: shape.length,
  };
}

function elementSchema(datatype: string): Schema {
  switch (datatype) {
    case 'BOOL':
      return { type: 'boolean' };
    case 'UINT8':
      return { type: 'integer', minimum: 0, maximum: 255 };
    case 'INT8':
      return { type: 'integer', minimum: -128, maximum: 127 };
    case 'INT16':
      return { type: 'integer', minimum: -32768, maximum: 32767 };
    case 'INT32':
      return { type: 'integer', minimum: -2147483648, maximum: 2147483647 };
    case 'INT64':
      return { type: 'integer' };
    case 'BYTES':
      return { type: 'string' };
    default:
      return { type: 'number' };
  }
}

/** Zeros for each input with dynamic dimensions as 1; none when a tensor is too large to show or its type unknown. */
export function inferExample(inputs: readonly TensorInfo[]): Record<string, unknown> | undefined {
  const tensors = [];
  for (const info of inputs) {
    if (info.asSent) return undefined;
    const shape = info.shape.map((d) => (d < 0 ? 1 : d));
    const count = shape.reduce((a, b) => a * b, 1);
    if (count > MAX_EXAMPLE_ELEMENTS) return undefined;
    const datatype: string = info.datatype;
    const zero = datatype === 'BOOL' ? false : datatype === 'BYTES' ? '' : 0;
    tensors.push({ name: info.name, datatype: info.datatype, shape, data: new Array(count).fill(zero) });
  }
  return { inputs: tensors };
}

function schemaKey(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** `GET /v2/models/{name}/stats`: Triton's statistics extension, durations as `{count, ns}`. */
function modelStatisticsSchema(): Schema {
  const duration = {
    type: 'object',
    required: ['count', 'ns'],
    properties: { count: { type: 'integer', minimum: 0 }, ns: { type: 'integer', minimum: 0 } },
  };
  const phases = [
    'success',
    'fail',
    'queue',
    'compute_input',
    'compute_infer',
    'compute_output',
    'cache_hit',
    'cache_miss',
  ];
  const batchPhases = ['compute_input', 'compute_infer', 'compute_output'];
  return {
    type: 'object',
    required: ['model_stats'],
    properties: {
      model_stats: {
        type: 'array',
        items: {
          type: 'object',
          required: ['name', 'version', 'last_inference', 'inference_count', 'execution_count', 'inference_stats'],
          properties: {
            name: { type: 'string' },
            version: { type: 'string' },
            last_inference: { type: 'integer', description: 'milliseconds since the epoch; 0 before the first' },
            inference_count: { type: 'integer', minimum: 0 },
            execution_count: { type: 'integer', minimum: 0 },
            inference_stats: {
              type: 'object',
              required: phases,
              properties: Object.fromEntries(phases.map((phase) => [phase, duration])),
            },
            batch_stats: {
              type: 'array',
              items: {
                type: 'object',
                required: ['batch_size', ...batchPhases],
                properties: {
                  batch_size: { type: 'integer', minimum: 1 },
                  ...Object.fromEntries(batchPhases.map((phase) => [phase, duration])),
                },
              },
            },
          },
        },
      },
    },
  };
}
