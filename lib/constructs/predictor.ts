import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/** What a bound predictor gives the compute. */
export interface PredictorConfig {
  /** Absolute path of the predictor module; absent for the default (Open Inference Protocol) predictor. */
  readonly entry?: string;
  readonly problems: readonly string[];
}

/** The code that answers `POST /`: a user's predictor module, or the Open Inference Protocol default. */
export abstract class Predictor {
  /** A module whose default export is made by `definePredictor` (TypeScript or JavaScript). */
  static fromEntry(path: string): Predictor {
    return new EntryPredictor(path);
  }

  /** No user code: the model is served through the Open Inference Protocol v2. */
  static default(): Predictor {
    return new DefaultPredictor();
  }

  abstract bind(): PredictorConfig;
}

class EntryPredictor extends Predictor {
  constructor(private readonly path: string) {
    super();
  }

  bind(): PredictorConfig {
    const entry = resolve(this.path);
    return existsSync(entry)
      ? { entry, problems: [] }
      : { entry, problems: [`predictor entry ${this.path} does not exist`] };
  }
}

class DefaultPredictor extends Predictor {
  bind(): PredictorConfig {
    return { problems: [] };
  }
}
