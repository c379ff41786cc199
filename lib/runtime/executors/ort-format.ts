/**
 * onnxruntime's own model format (`.ort`, a flatbuffer): a session can run from the caller's bytes in place, its
 * initializers included, instead of parsing protobuf into fresh memory and copying every weight. Loading an ONNX
 * model touches about 3× its size in fresh memory (the bytes, the parsed graph, the session's copy of the weights);
 * an ORT-format one touches its size once. In a Firecracker VM (Lambda) first touches dominate a cold start.
 */
import type Ort from 'onnxruntime-node';

/** The flatbuffer file identifier of an ORT-format model, at byte 4. */
const ORT_FILE_IDENTIFIER = 'ORTM';

/** Whether these bytes are an ORT-format model. */
export function isOrtFormat(bytes: Uint8Array): boolean {
  if (bytes.length < 8) return false;
  for (let i = 0; i < ORT_FILE_IDENTIFIER.length; i++) {
    if (bytes[4 + i] !== ORT_FILE_IDENTIFIER.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Session config entries that make onnxruntime use an ORT-format model's bytes where they are. The bytes must then
 * outlive the session and never change: the executor holds them.
 */
export const ORT_BYTES_IN_PLACE: Readonly<Record<string, string>> = {
  'session.use_ort_model_bytes_directly': '1',
  'session.use_ort_model_bytes_for_initializers': '1',
};

/**
 * Converts an ONNX model file to ORT format with the onnxruntime-node that will run it (the format is tied to the
 * onnxruntime version). `extended` optimizations are saved: portable across CPUs (the layout transforms `all` adds
 * are specific to the converting machine's instruction set, so they are left to the runtime).
 */
export async function convertToOrtFormat(onnxPath: string, ortPath: string): Promise<void> {
  const module = (await import('onnxruntime-node')) as typeof Ort & { default?: typeof Ort };
  const ort = module.default ?? module;
  const session = await ort.InferenceSession.create(onnxPath, {
    graphOptimizationLevel: 'extended',
    optimizedModelFilePath: ortPath,
    extra: { session: { save_model_format: 'ORT' } },
  });
  await session.release();
}
