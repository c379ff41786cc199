declare module 'dynalite' {
  import type { Server } from 'node:http';

  interface DynaliteOptions {
    /** Where LevelDB keeps the tables; in memory when absent. */
    path?: string;
    /** How long a new table stays CREATING. */
    createTableMs?: number;
    deleteTableMs?: number;
    updateTableMs?: number;
  }

  /** An HTTP server speaking DynamoDB's API. */
  export default function dynalite(options?: DynaliteOptions): Server;
}
