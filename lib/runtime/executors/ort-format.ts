/**
 * onnxruntime's own model format (`.ort`, a flatbuffer): a session can run from the caller's bytes in place, its
 * initializers included, instead of parsing protobuf into fresh memory and copying every weight. Loading an ONNX
 * model touches about 3× its size in fresh memory (the bytes, the parsed graph, the session's copy of the weights);
 * an ORT-format one touches its size once. In a Firecracker VM (Lambda) first touches dominate a cold start.
 */
/** Whether bytes are an ORT-format model (lib/ort-conversion.ts: the constructs check files with it too). */
export { isOrtFormat } from '../../ort-conversion.js';

/**
 * Session config entries that make onnxruntime use an ORT-format model's bytes where they are. The bytes must then
 * outlive the session and never change: the executor holds them.
 */
export const ORT_BYTES_IN_PLACE: Readonly<Record<string, string>> = {
  'session.use_ort_model_bytes_directly': '1',
  'session.use_ort_model_bytes_for_initializers': '1',
};

/** Converts an ONNX model file to ORT format in this process (lib/ort-conversion.ts: also used at synth). */
export { convertToOrtFormat } from '../../ort-conversion.js';
