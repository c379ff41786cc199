import { ERROR_STATUS, type ErrorCode } from '../../contract.js';
import { HttpError } from '../../predictor.js';

/** An HttpError whose status comes from the contract's table for its code. */
export function httpError(code: ErrorCode, message: string, headers?: Record<string, string>): HttpError {
  return new HttpError(ERROR_STATUS[code], code, message, headers);
}

export function invalidInput(message: string): HttpError {
  return httpError('invalid_input', message);
}
