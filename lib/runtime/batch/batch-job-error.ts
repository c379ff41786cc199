import { StartupError } from '../startup-error.js';

/** A batch job that cannot run as asked (a bad location, an output holding another job): one line and a hint. */
export class BatchJobError extends StartupError {}
